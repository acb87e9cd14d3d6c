"""Feedback: recording corrections, reading them back, folding them into the training split."""
import json
import subprocess
import sys
import threading

import pytest
from conftest import SMALL_INTENTS

from intentkit.cli import main
from intentkit.data.feedback import (
    FeedbackFileFull,
    fold_into_training,
    load_feedback,
    read_feedback,
    record_feedback,
)
from intentkit.data.intents import Split, split_data
from intentkit.errors import DataError

try:
    import fcntl
except ImportError:
    fcntl = None

LABELS = sorted(SMALL_INTENTS)


def test_record_appends_one_json_line_per_correction(tmp_path):
    path = tmp_path / "feedback.jsonl"
    first = record_feedback(path, "hey you", "fallback", "greeting", LABELS, "run-1")
    record_feedback(path, "pay for nurses?", "resume", "salary", confirmed=False)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert rows[0] == first
    assert {k: rows[0][k] for k in ("text", "predicted", "correct", "confirmed", "model")} == {
        "text": "hey you", "predicted": "fallback", "correct": "greeting", "confirmed": True,
        "model": "run-1"}
    assert rows[0]["time"].endswith("+00:00")
    assert rows[1]["confirmed"] is False
    assert [r["text"] for r in load_feedback(path)] == ["hey you"], "only confirmed rows"


@pytest.mark.parametrize("text, correct, message", [
    ("", "greeting", "text is empty"),
    ("   ", "greeting", "text is empty"),
    ("x" * 10_001, "greeting", "10,001 characters"),
    ("hello", "jokes", "'jokes' is not one of the model's intents: goodbye, greeting"),
    ("hello", "", "correct must be a non-empty intent name"),
])
def test_record_rejects_bad_rows_and_writes_nothing(tmp_path, text, correct, message):
    path = tmp_path / "feedback.jsonl"
    with pytest.raises(ValueError, match=message):
        record_feedback(path, text, "fallback", correct, LABELS)
    assert not path.exists()


def test_record_refuses_to_grow_the_file_past_its_cap(tmp_path):
    path = tmp_path / "feedback.jsonl"
    record_feedback(path, "hey you", "fallback", "greeting", confirmed=False)
    one_row = path.stat().st_size
    record_feedback(path, "hey you", "fallback", "greeting", confirmed=False,
                    max_file_bytes=2 * one_row)  # exactly at the cap: written
    with pytest.raises(FeedbackFileFull, match=f"holds {2 * one_row:,} bytes"):
        record_feedback(path, "hey you", "fallback", "greeting", confirmed=False,
                        max_file_bytes=3 * one_row - 1)
    assert path.stat().st_size == 2 * one_row


def test_concurrent_writers_never_interleave_lines(tmp_path):
    path = tmp_path / "feedback.jsonl"

    def write(worker):
        for number in range(50):
            record_feedback(path, f"message {worker}-{number} " + "y" * 3000, "a", "b")
    threads = [threading.Thread(target=write, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(read_feedback(path)) == 400


@pytest.mark.skipif(fcntl is None, reason="POSIX file locks")
def test_a_row_waits_while_another_process_holds_the_file_lock(tmp_path):
    """The lock is an flock on the file itself: another process (here another open file
    description, which flock treats the same) holding it delays the row, which then follows."""
    path = tmp_path / "feedback.jsonl"
    with open(path, "ab") as holder:
        fcntl.flock(holder, fcntl.LOCK_EX)
        writer = threading.Thread(target=record_feedback, args=(path, "hey", "a", "b"))
        writer.start()
        writer.join(timeout=0.5)
        assert writer.is_alive() and path.read_bytes() == b"", "written under another's lock"
    writer.join(timeout=10)
    assert [row["text"] for row in read_feedback(path)] == ["hey"]


WRITER = """
import json, sys
from intentkit.data.feedback import FeedbackFileFull, record_feedback
written = 0
for number in range(100):
    try:
        record_feedback(sys.argv[1], f"message {sys.argv[2]}-{number} " + "y" * 500, "a", "b",
                        max_file_bytes=int(sys.argv[3]))
        written += 1
    except FeedbackFileFull:
        pass
print(written)
"""


def test_processes_writing_at_once_keep_lines_whole_and_the_cap(tmp_path):
    """Service workers are processes: together they never mix lines nor pass the cap."""
    path = tmp_path / "feedback.jsonl"
    cap = 150 * 600  # about half of the 300 rows offered
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(n), str(cap)],
                                stdout=subprocess.PIPE, text=True) for n in range(3)]
    written = [int(writer.communicate(timeout=120)[0]) for writer in writers]
    rows = read_feedback(path)
    assert len(rows) == sum(written) and 100 < len(rows) < 300
    assert path.stat().st_size <= cap
    assert len({row["text"] for row in rows}) == len(rows)


@pytest.mark.parametrize("content, message", [
    ('{"text": "hi", "correct": "greeting", "confirmed": true}\n{"text": "hi"\n',
     r"feedback.jsonl: line 2: invalid JSON"),
    ('\n["hi", "greeting"]\n', r"line 2: expected an object"),
    ('{"text": "hi", "confirmed": true}\n', r'line 1: "correct" must be a non-empty intent'),
    ('{"text": "", "correct": "greeting"}\n', r"line 1: text is empty"),
    ('{"text": "hi", "correct": "greeting", "confirmed": "yes"}\n', r'"confirmed" must be'),
])
def test_malformed_file_names_file_and_line(tmp_path, content, message):
    path = tmp_path / "feedback.jsonl"
    path.write_text(content)
    with pytest.raises(DataError, match=message):
        load_feedback(path)


def test_fold_adds_confirmed_rows_to_training_split_only(tmp_path):
    texts = [t for patterns in SMALL_INTENTS.values() for t in patterns]
    labels = [tag for tag, patterns in SMALL_INTENTS.items() for _ in patterns]
    split = split_data(texts, labels)
    path = tmp_path / "feedback.jsonl"
    for text, correct, confirmed in [
            ("what is the salary of a nurse", "salary", True),   # added
            ("What is the salary of a NURSE!", "salary", True),  # repeats the row above
            (split.test_texts[0], "greeting", True),             # a test pattern
            (split.val_texts[0].upper(), "greeting", True),      # a validation pattern
            (split.train_texts[0], split.train_labels[0], True),  # already in training
            (split.train_texts[1], "greeting" if split.train_labels[1] != "greeting"
             else "salary", True),                                # training pattern, other intent
            ("tell me a joke", "jokes", True),                   # unknown intent
            ("bye for now friend", "goodbye", False)]:           # not confirmed
        record_feedback(path, text, "fallback", correct, confirmed=confirmed)
    folded, report = fold_into_training(split, path, LABELS)
    assert isinstance(folded, Split)
    assert folded.train_texts == split.train_texts + ["what is the salary of a nurse"]
    assert folded.train_labels == split.train_labels + ["salary"]
    assert (folded.val_texts, folded.test_texts) == (split.val_texts, split.test_texts)
    assert report == {"file": str(path), "rows": 8, "added": 1, "skipped": {
        "unconfirmed": 1, "unknown_intent": 1, "in_val_or_test": 2, "in_training": 1,
        "conflicts_with_training": 1, "repeated": 1}}


def test_training_run_folds_feedback_and_reports_it(trained):
    manifest = json.loads((trained["out"] / "manifest.json").read_text())
    assert manifest["feedback"] == {"file": trained["feedback"].name, "rows": 4, "added": 1,
                                    "skipped": {"unconfirmed": 1, "unknown_intent": 1,
                                                "in_val_or_test": 1}}
    texts = [t for patterns in SMALL_INTENTS.values() for t in patterns]
    labels = [tag for tag, patterns in SMALL_INTENTS.items() for _ in patterns]
    split = split_data(texts, labels)
    assert manifest["splits"]["train"] == len(split.train_texts) + 1
    assert manifest["splits"]["test"] == len(split.test_texts)
    assert trained["feedback_test_text"] in split.test_texts
    assert ("feedback: 1 added to the training split, 3 skipped; 1 not confirmed; 1 intent not "
            "in the training data; 1 text is a validation or test pattern") in trained["log"]


def test_training_with_missing_feedback_file_stops_with_one_line(trained, tmp_path, caplog):
    code = main(["train", "--data", str(trained["data"]), "--out", str(tmp_path / "out"),
                       "--feedback", str(tmp_path / "nope.jsonl")])
    assert code == 2
    assert "--feedback-in" in caplog.text and "nope.jsonl: no such file" in caplog.text
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_predict_cli_records_a_correction(trained, tmp_path, capsys, caplog):
    path = tmp_path / "feedback.jsonl"
    args = ["--model", str(trained["model"]), "--preprocessor", str(trained["preprocessor"]),
            "--feedback-file", str(path)]
    assert main(["predict", *args, "--correct", "salary", "what do plumbers make"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert read_feedback(path) == [row]
    assert row["correct"] == "salary" and row["predicted"] in LABELS + ["fallback"]
    assert row["model"] == trained["preprocessor"].resolve().parent.name

    assert main(["predict", *args, "--correct", "jokes", "tell me a joke"]) == 2
    assert "'jokes' is not one of the model's intents" in caplog.text
    assert len(read_feedback(path)) == 1
    # --feedback-file without --correct
    assert main(["predict", *args, "what do plumbers make"]) == 2
    assert "--correct INTENT and --feedback-out FILE go together" in caplog.text
