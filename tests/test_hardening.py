"""Issue 31: inputs of any size cost what the models read; no character splits a JSON-lines row;
settings and options are checked once, up front; what a user can fix is one line and exit 2."""
import errno
import json
import logging
import math

import pytest
from conftest import SMALL_INTENTS, write_intents

from intentkit import cli
from intentkit.data.feedback import read_feedback, record_feedback
from intentkit.data.intents import load_intents
from intentkit.encoders.minilm import MAX_TOKENS, WordPieceTokenizer, model_dir
from intentkit.errors import ArtifactError, ConfigError
from intentkit.models.numpy_runtime import load_numpy_model
from intentkit.serving import review
from intentkit.serving.predictor import Predictor
from intentkit.text import CHARS_PER_TOKEN
from intentkit.training.config import TrainConfig

LINE_BREAKERS = ["\u2028", "\u2029", "\u0085"]


# --- texts cut to what the models read -----------------------------------------------------------

@pytest.fixture(scope="module")
def predictor(trained):
    return Predictor(trained["model"], trained["preprocessor"], cache_size=0)


def test_a_long_message_is_tokenized_only_as_far_as_the_model_reads(predictor, monkeypatch):
    preprocessor = predictor.preprocessor
    seen = []
    tokenize = type(preprocessor).tokenize
    monkeypatch.setattr(type(preprocessor), "tokenize",
                        lambda self, text: seen.append(len(text)) or tokenize(self, text))
    head = "what does a data scientist earn "
    long_text = head + "and more words " * 70_000  # ~1 MB
    answer = predictor.predict(long_text)
    bound = preprocessor.max_sequence_length_ * CHARS_PER_TOKEN
    assert seen and max(seen) <= bound
    assert "intent" in answer
    # Nothing the model reads is lost: more of the text gives the same token ids.
    assert (preprocessor.transform([long_text[:bound]])
            == preprocessor.transform([long_text[:3 * bound]])).all()


def test_the_encoder_tokenizes_only_what_it_reads(monkeypatch):
    tokenizer = WordPieceTokenizer(model_dir() / "vocab.txt")
    seen = []
    basic = tokenizer._basic_tokens
    monkeypatch.setattr(tokenizer, "_basic_tokens", lambda text: seen.append(len(text))
                        or basic(text))
    text = "the salary of a data engineer in berlin " * 30_000  # 1.2 MB
    ids = tokenizer.encode(text)
    assert len(ids) == MAX_TOKENS and max(seen) < 20 * MAX_TOKENS
    assert ids == tokenizer.encode(text[:5000])  # the same pieces as the start alone


def test_predict_file_reads_at_most_a_message_of_a_very_long_line(trained, tmp_path, capsys,
                                                                  monkeypatch):
    from intentkit.cli import predict as predict_command
    lengths = []
    stream = Predictor.predict_stream

    def recording(self, texts, *args, **kwargs):
        texts = list(texts)
        lengths.extend(map(len, texts))
        return stream(self, texts, *args, **kwargs)
    monkeypatch.setattr(Predictor, "predict_stream", recording)
    messages = tmp_path / "messages.txt"
    messages.write_text("hello there\n" + "salary " * 3_000_000 + "\ncheck my resume\n",
                        encoding="utf-8")  # a 21 MB line between two short ones
    assert cli.main(["predict", "--file", str(messages), "--model-dir", str(trained["out"]),
                     "--cache-size", "0"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 3 and lengths[0] == len("hello there")
    assert lengths[1] == predict_command.MAX_LINE_CHARS and lengths[2] == len("check my resume")


@pytest.mark.parametrize("content", [
    "hello there\nwhat is the pay\n".encode("utf-16"),
    "hello there\n".encode("utf-16-le"),  # no byte-order mark: NUL bytes between letters
    bytes(range(256)) * 4,
])
def test_predict_file_of_utf16_or_binary_data_is_one_line_and_exit_2(trained, tmp_path,
                                                                     content, caplog):
    messages = tmp_path / "messages.txt"
    messages.write_bytes(content)
    with caplog.at_level(logging.ERROR):
        code = cli.main(["predict", "--file", str(messages), "--model-dir",
                         str(trained["out"])])
    assert code == 2
    [line] = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert str(messages) in line and "UTF-8" in line and "\n" not in line


# --- JSON lines: no character splits a row ------------------------------------------------------

@pytest.mark.parametrize("breaker", LINE_BREAKERS)
def test_a_feedback_row_holding_a_line_separator_stays_one_row(tmp_path, breaker):
    path = tmp_path / "feedback.jsonl"
    text = f"what does a tester{breaker}earn"
    record_feedback(path, text, "greeting", "salary", confirmed=True)
    record_feedback(path, "hi there", "goodbye", "greeting", confirmed=True)
    assert [row["text"] for row in read_feedback(path)] == [text, "hi there"]
    assert len(path.read_bytes().split(b"\n")) == 3  # two lines and the final newline


def test_the_feedback_file_is_private(tmp_path):
    path = tmp_path / "feedback.jsonl"
    record_feedback(path, "what does a tester earn", "greeting", "salary")
    assert oct(path.stat().st_mode & 0o777) == "0o600"


LOW_MARGIN = {"fallback": False, "model_type": "ensemble",
              "top_k": [{"intent": "salary", "confidence": 0.48},
                        {"intent": "resume", "confidence": 0.45}]}


@pytest.mark.parametrize("text", [f"pay{c}day" for c in LINE_BREAKERS] + ["lone \ud800 half"])
def test_the_review_queue_keeps_rows_with_separators_and_lone_surrogates(tmp_path, text):
    path = tmp_path / "queue.jsonl"
    settings = review.Settings(path, store_text=True)
    review.record_uncertain([text, "second"], [LOW_MARGIN, LOW_MARGIN], settings)
    rows = review.read_queue(path)
    assert [row["text"] for row in rows] == [text, "second"]


def test_a_lone_surrogate_is_answered_with_the_review_queue_on(trained, tmp_path, monkeypatch):
    monkeypatch.setenv(review.ENV_LOG, str(tmp_path / "queue.jsonl"))
    monkeypatch.setenv(review.ENV_TEXT, "1")
    monkeypatch.setenv(review.ENV_MARGIN, "1")  # every answer is queued
    predictor = Predictor(trained["model"], trained["preprocessor"], cache_size=0)
    result = predictor.predict("salary \ud800 please")
    assert "intent" in result
    assert review.read_queue(tmp_path / "queue.jsonl")[0]["text"] == "salary \ud800 please"


# --- settings parsed once, options in range -----------------------------------------------------

@pytest.mark.parametrize("name, value", [(review.ENV_MAX_BYTES, "1MB"),
                                         (review.ENV_MARGIN, "lots"), (review.ENV_MARGIN, "nan"),
                                         (review.ENV_MAX_BYTES, "0")])
def test_a_bad_review_setting_stops_the_load_not_each_answer(trained, tmp_path, monkeypatch,
                                                            name, value):
    monkeypatch.setenv(review.ENV_LOG, str(tmp_path / "queue.jsonl"))
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=name) as error:
        Predictor(trained["model"], trained["preprocessor"])
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("option, value", [
    ("fallback_coverage", math.nan), ("fallback_coverage", 7.0), ("fallback_coverage", 0.0),
    ("label_smoothing", -3.0), ("label_smoothing", 1.0), ("fallback_margin", math.inf),
    ("fallback_margin", -0.1), ("augmentation_factor", -2), ("encoder_time_budget", -5),
    ("seed", -1), ("val_size", math.nan), ("tuning_patience", 0), ("epochs", -1),
    ("entity_substitution", -1), ("entity_substitution_max_rows", -5),
])
def test_every_numeric_option_is_range_checked(option, value):
    with pytest.raises(ConfigError, match=f"--{option.replace('_', '-')}"):
        TrainConfig(**{option: value})


def test_a_negative_seed_on_the_command_line_is_exit_2(tmp_path, caplog):
    data = write_intents(tmp_path / "intents.json")
    with caplog.at_level(logging.ERROR):
        code = cli.main(["train", "--data", str(data), "--out", str(tmp_path / "m"),
                         "--seed", "-1"])
    assert code == 2 and "--seed" in caplog.text
    assert not (tmp_path / "m").exists()


def test_a_config_file_value_out_of_range_is_exit_2(tmp_path, caplog):
    data = write_intents(tmp_path / "intents.json")
    config = tmp_path / "config.yaml"
    config.write_text("fallback_coverage: 7\n")
    with caplog.at_level(logging.ERROR):
        code = cli.main(["train", "--data", str(data), "--out", str(tmp_path / "m"),
                         "--config", str(config)])
    assert code == 2 and "--fallback-coverage" in caplog.text


# --- importers ----------------------------------------------------------------------------------

def test_a_quoted_multi_line_csv_cell_keeps_its_line_break(tmp_path):
    rows = [(text, tag) for tag, patterns in SMALL_INTENTS.items() for text in patterns]
    body = "".join(f"{text},{tag}\n" for text, tag in rows)
    path = tmp_path / "intents.csv"
    path.write_text('text,intent\n"hi\nthere",greeting\n"pay\u2028day",salary\n' + body,
                    encoding="utf-8", newline="")
    data = load_intents(path)
    assert "hi\nthere" in data.texts and "pay\u2028day" in data.texts
    assert "hithere" not in data.texts


def test_rasa_intent_names_that_yaml_1_1_reads_as_booleans_or_numbers_stay_names(tmp_path):
    examples = "".join(f"    - {text}\n" for text in SMALL_INTENTS["greeting"])
    others = "".join(f"    - {text}\n" for text in SMALL_INTENTS["goodbye"])
    path = tmp_path / "nlu.yml"
    path.write_text(f'version: "3.1"\nnlu:\n- intent: yes\n  examples: |\n{examples}'
                    f"- intent: 404\n  examples: |\n{others}", encoding="utf-8")
    assert set(load_intents(path).tags) == {"yes", "404"}


@pytest.mark.parametrize("destination", ["missing/intents.json", "folder.json"])
def test_import_to_a_missing_directory_or_a_directory_is_exit_2(tmp_path, destination, caplog):
    source = write_intents(tmp_path / "intents.json")
    (tmp_path / "folder.json").mkdir()
    with caplog.at_level(logging.ERROR):
        code = cli.main(["import", str(source), str(tmp_path / destination)])
    assert code == 2 and destination.split("/")[0] in caplog.text


# --- user-fixable failures of models and runs ---------------------------------------------------

def test_a_model_the_numpy_runtime_cannot_run_is_an_artifact_error(tmp_path):
    import h5py
    path = tmp_path / "weights_only.h5"
    with h5py.File(path, "w") as h5:
        h5["x"] = [1, 2, 3]
    with pytest.raises(ArtifactError, match="--runtime keras"):
        load_numpy_model(path)


def test_a_full_disk_while_the_run_is_written_is_exit_2_and_keeps_the_old_model(
        tmp_path, monkeypatch, caplog):
    from intentkit import artifacts

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(artifacts, "write_manifest", full)
    data = write_intents(tmp_path / "intents.json")
    out = tmp_path / "model"
    with caplog.at_level(logging.ERROR):
        code = cli.main(["train", "--data", str(data), "--out", str(out), "--quick",
                         "--no-ensemble", "--tuning-epochs", "1", "--epochs", "1",
                         "--augmentation-factor", "0"])
    assert code == 2 and "No space left on device" in caplog.text
    assert not (out / artifacts.MODEL_FILE).exists()
    assert not list(out.glob(f"{artifacts.STAGING_PREFIX}*"))


def test_serve_without_its_extra_is_exit_2_with_the_install_line(tmp_path):
    from conftest import run_script
    script = ("import sys; sys.modules['uvicorn'] = None; sys.modules['fastapi'] = None\n"
              "from intentkit.cli import main; sys.exit(main(['serve']))")
    result = run_script("-c", script)
    assert result.returncode == 2, result.stderr
    assert "pip install 'intentkit[serve]'" in result.stderr
    assert "Traceback" not in result.stderr


def test_predict_messages_helper_is_lazy(tmp_path):
    """The line reader takes a line at a time (a file of any size is never read whole)."""
    from intentkit.cli.predict import _messages
    stream = open(tmp_path / "x.txt", "w+", encoding="utf-8")  # noqa: SIM115
    stream.write("a\n\n  \nb\r\n")
    stream.seek(0)
    assert list(_messages(stream, "x.txt")) == ["a", "b"]
    stream.close()
