"""The review queue: opt-in, only uncertain answers, no text unless asked, bounded and rotated,
whole lines from many writers; `intentkit review` ranks it and writes confirmed feedback."""
import json
import multiprocessing
import threading

import pytest

from intentkit.cli import main
from intentkit.data.feedback import load_feedback
from intentkit.serving import review

LOW_MARGIN = {"fallback": False, "model_type": "ensemble",
              "top_k": [{"intent": "salary", "confidence": 0.48},
                        {"intent": "resume", "confidence": 0.45}]}
SURE = {"fallback": False, "model_type": "ensemble",
        "top_k": [{"intent": "salary", "confidence": 0.9},
                  {"intent": "resume", "confidence": 0.05}]}
FALLBACK = {"fallback": True, "model_type": "single",
            "top_k": [{"intent": "greeting", "confidence": 0.3},
                      {"intent": "goodbye", "confidence": 0.1}]}


def test_off_unless_the_environment_names_a_file(tmp_path, monkeypatch):
    monkeypatch.delenv(review.ENV_LOG, raising=False)
    assert review.Settings.from_environment() is None
    review.record_uncertain(["pay?"], [LOW_MARGIN])  # no error, nothing written anywhere
    monkeypatch.setenv(review.ENV_LOG, str(tmp_path / "queue.jsonl"))
    assert review.Settings.from_environment() == review.Settings(tmp_path / "queue.jsonl")


def test_only_fallbacks_and_low_margins_are_queued_without_text_by_default(tmp_path):
    path = tmp_path / "queue.jsonl"
    review.record_uncertain(["pay?", "what is the salary", "hmm"], [LOW_MARGIN, SURE, FALLBACK],
                            review.Settings(path))
    rows = review.read_queue(path)
    assert [(r["nearest"], r["fallback"]) for r in rows] == [("salary", False),
                                                           ("greeting", True)]
    assert rows[0]["margin"] == pytest.approx(0.03)
    assert all("text" not in r for r in rows) and "pay?" not in path.read_text()
    assert oct(path.stat().st_mode & 0o777) == "0o600"


def test_the_queue_is_rotated_at_its_size_cap(tmp_path):
    path = tmp_path / "queue.jsonl"
    settings = review.Settings(path, store_text=True, max_bytes=1000)
    for number in range(30):
        review.record_uncertain([f"message {number}"], [LOW_MARGIN], settings)
    assert path.stat().st_size <= 1000 and (tmp_path / "queue.jsonl.1").stat().st_size <= 1000
    texts = [row["text"] for row in review.read_queue(path)]
    assert texts == [f"message {n}" for n in range(30 - len(texts), 30)]  # the newest kept


def _write_many(path, writer):
    settings = review.Settings(path, store_text=True)
    for number in range(50):
        review.record_uncertain([f"{writer} {number} " + "x" * 300], [LOW_MARGIN], settings)


def test_threads_and_processes_write_whole_lines(tmp_path):
    path = tmp_path / "queue.jsonl"
    workers = [threading.Thread(target=_write_many, args=(path, f"t{n}")) for n in range(4)]
    workers += [multiprocessing.get_context("spawn").Process(target=_write_many,
                                                             args=(path, f"p{n}"))
                for n in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    lines = path.read_text().splitlines()
    assert len(lines) == 6 * 50
    assert all(json.loads(line)["nearest"] == "salary" for line in lines)


def test_review_lists_by_uncertainty_and_writes_confirmed_labels(tmp_path, capsys,
                                                                 monkeypatch):
    path, feedback = tmp_path / "queue.jsonl", tmp_path / "feedback.jsonl"
    settings = review.Settings(path, store_text=True)
    wider = {**LOW_MARGIN, "top_k": [{"intent": "salary", "confidence": 0.5},
                                     {"intent": "resume", "confidence": 0.44}]}
    review.record_uncertain(["cv pay", "money?", "money?", "hmm"],
                            [wider, LOW_MARGIN, LOW_MARGIN, FALLBACK], settings)
    answers = iter(["resume", "", "q"])
    monkeypatch.setattr("builtins.input", lambda prompt: next(answers))
    assert main(["review", "--queue", str(path), "--label", "--feedback", str(feedback)]) == 0
    listing = capsys.readouterr().out.splitlines()
    assert listing[0] == "salary: 3 message(s), 2 distinct"
    assert "x2  'money?'" in listing[1] and "'cv pay'" in listing[2]  # smallest margin first
    assert listing[3] == "greeting: 1 message(s), 1 distinct"
    rows = load_feedback(feedback)
    assert [(r["text"], r["correct"], r["predicted"]) for r in rows] == [
        ("money?", "resume", "salary"), ("cv pay", "salary", "salary")]
    # Labelled ones are not listed again.
    assert main(["review", "--queue", str(path), "--feedback", str(feedback)]) == 0
    assert "money?" not in capsys.readouterr().out


def test_label_without_a_feedback_file_is_a_user_error(tmp_path):
    assert main(["review", "--queue", str(tmp_path / "q.jsonl"), "--label"]) == 2


def test_predictions_feed_the_queue_when_it_is_on(trained, tmp_path, monkeypatch):
    from intentkit.serving.predictor import predict_intent_improved
    path = tmp_path / "queue.jsonl"
    monkeypatch.setenv(review.ENV_LOG, str(path))
    monkeypatch.setenv(review.ENV_MARGIN, "0")
    paths = {"model_path": str(trained["model"]), "preprocessor_path": str(trained["preprocessor"])}
    assert not predict_intent_improved("hello there", **paths, threshold=0.0)["fallback"]
    assert review.read_queue(path) == []  # a sure answer is not queued
    result = predict_intent_improved("what does a data scientist earn", **paths, threshold=1.01)
    assert result["fallback"]
    [row] = review.read_queue(path)
    assert row["fallback"] and "text" not in row
    assert row["nearest"] == result["top_k"][0]["intent"]
