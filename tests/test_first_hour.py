"""A chatbot developer's first hour (issue 30): replies, one command-line convention, errors that
answer before anything heavy loads, the fast runtime by default, conflicts that do not stop a
run, and Rasa's parse endpoint."""
import json
import logging
import pickle
import shutil
import socket
import subprocess
import sys

import pytest
from conftest import QUICK_ARGS, ROOT, SMALL_INTENTS, intentkit_command, write_intents

from intentkit import artifacts, cli
from intentkit.artifacts.model_card import render
from intentkit.data.intents import validate_intents
from intentkit.errors import ConfigError, DataError
from intentkit.evaluation.data_checks import check_data
from intentkit.serving import predictor as serving
from intentkit.serving.predictor import (
    Predictor,
    ResponsePicker,
    get_predictor,
    predict_intent_improved,
)
from intentkit.training.config import TrainConfig

SUBCOMMANDS = ("train", "evaluate", "predict", "serve", "import", "check", "cv", "review",
               "export")


def intents_document(intents, **extra):
    return {"intents": [{"tag": tag, "patterns": patterns, "responses": [f"about {tag}"]}
                        for tag, patterns in intents.items()], **extra}


def run_in_fresh_python(code, cwd=ROOT):
    """Run `code` in a new interpreter (this one has TensorFlow imported by conftest)."""
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True,
                          timeout=120)


# --- 1. answers a bot can send ------------------------------------------------------------------

def test_each_answer_carries_one_of_its_intents_responses(trained):
    predictor = Predictor(trained["model"], trained["preprocessor"], response_seed=0)
    result = predictor.predict("how much does a data engineer make")
    assert result["response"] == f"about {result['intent']}"  # the file's one response
    assert predictor.predict("")["response"] is None  # the fallback: the file gave none


def test_responses_random_seeded_or_round_robin():
    responses = {"greeting": ["Hello!", "Hi there!", "Hey!"], "quiet": []}
    seeded = [ResponsePicker(responses, choice="random", seed=7).pick("greeting")
              for _ in range(2)]
    assert seeded[0] == seeded[1]  # the same seed, the same choice
    picker = ResponsePicker(responses, choice="random", seed=7)
    assert {picker.pick("greeting") for _ in range(60)} == set(responses["greeting"])
    turns = ResponsePicker(responses, choice="round-robin")
    assert [turns.pick("greeting") for _ in range(4)] == ["Hello!", "Hi there!", "Hey!", "Hello!"]
    assert turns.pick("quiet") is None and turns.pick("fallback") is None
    with_fallback = ResponsePicker(responses, ["Sorry, say it again?"], "fallback")
    assert with_fallback.pick("fallback") == "Sorry, say it again?"


def test_fallback_responses_come_from_the_file(tmp_path):
    document = intents_document(SMALL_INTENTS, fallback_responses=["Could you rephrase?"])
    data = validate_intents(document, tmp_path / "bot.json")
    assert data.fallback_responses == ("Could you rephrase?",)
    with pytest.raises(DataError, match="fallback_responses"):
        validate_intents(intents_document(SMALL_INTENTS, fallback_responses="no"), "bot.json")


def _republished_without_responses(out, directory):
    """A copy of the run whose pickle lacks the keys written since (as a run published before
    them), re-sealed so that it verifies."""
    shutil.copytree(out, directory, symlinks=False)
    pickle_path = directory / artifacts.PREPROCESSOR_FILE
    bundle = pickle.loads(pickle_path.read_bytes())
    for key in ("responses", "fallback_responses", "examples"):
        bundle.pop(key)
    pickle_path.write_bytes(pickle.dumps(bundle))
    manifest_path = directory / artifacts.MANIFEST_FILE
    manifest = json.loads(manifest_path.read_text())
    manifest.pop("manifest_sha256")
    manifest["files"][artifacts.PREPROCESSOR_FILE] = artifacts.sha256(pickle_path)
    manifest["sizes"][artifacts.PREPROCESSOR_FILE] = pickle_path.stat().st_size
    manifest_path.write_text(json.dumps(artifacts.sealed(manifest)))
    return directory


def test_responses_are_published_verified_and_older_runs_still_open(trained, tmp_path):
    run = artifacts.open_published(trained["out"])
    assert run.responses == {tag: [f"about {tag}"] for tag in SMALL_INTENTS}
    assert set(run.examples) == set(SMALL_INTENTS) and all(
        text in SMALL_INTENTS[tag] for tag, texts in run.examples.items() for text in texts)
    older = _republished_without_responses(trained["out"], tmp_path / "older")
    predictor = Predictor(older / artifacts.MODEL_FILE, older / artifacts.PREPROCESSOR_FILE)
    assert predictor.predict("hello there")["response"] is None
    assert predictor.examples == {}


# --- 2. one command-line convention -------------------------------------------------------------

def test_bare_intentkit_prints_the_help_and_exits_0_and_version(capsys):
    assert cli.main([]) == 0
    assert "usage: intentkit" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exited:
        cli.main(["--version"])
    assert exited.value.code == 0 and capsys.readouterr().out.startswith("intentkit ")


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_every_help_has_examples_and_shows_its_defaults(command, capsys):
    with pytest.raises(SystemExit):
        cli.main([command, "--help"])
    text = capsys.readouterr().out
    assert "\nexamples:\n" in text and f"intentkit {command}" in text.split("examples:")[1]
    assert "(default: )" not in text
    assert "-v, --verbose" in text and "-q, --quiet" in text


def test_the_convention_names_in_every_command(capsys):
    for command, options in {"train": ("--data", "-o DIR, --out DIR", "--feedback-in"),
                             "cv": ("--data", "-o DIR, --out DIR"),
                             "evaluate": ("--data", "-m DIR, --model-dir DIR", "-o DIR"),
                             "predict": ("-m DIR, --model-dir DIR", "--feedback-out", "-o FILE"),
                             "serve": ("-m DIR, --model-dir DIR", "--feedback-out"),
                             "review": ("--feedback-out",),
                             "import": ("--data", "-o FILE, --out FILE"),
                             "check": ("--data",),
                             "export": ("-m DIR, --model-dir DIR", "-o DIR, --out DIR",
                                        "--data")}.items():
        with pytest.raises(SystemExit):
            cli.main([command, "--help"])
        text = capsys.readouterr().out
        for option in options:
            assert option in text, (command, option)
        for old in ("--feedback-file", "--preprocessor", "--report", "--feedback "):
            assert old not in text, (command, old)  # deprecated: hidden


@pytest.mark.parametrize("option", ["--balance", "--transformer", "--word-vectors",
                                    "--ensemble-weights", "--on-conflict"])
def test_enumerations_are_choices(option, capsys):
    with pytest.raises(SystemExit) as exited:
        cli.main(["train", "--data", "x.json", option, "bogus"])
    assert exited.value.code == 2 and "invalid choice: 'bogus'" in capsys.readouterr().err


def test_old_spellings_still_work_with_a_deprecation_note(trained, tmp_path, capsys):
    feedback = tmp_path / "feedback.jsonl"
    assert cli.main(["predict", "--model", str(trained["model"]), "--preprocessor",
                     str(trained["preprocessor"]), "hello there", "--correct", "greeting",
                     "--feedback-file", str(feedback)]) == 0
    assert json.loads(feedback.read_text())["correct"] == "greeting"
    err = capsys.readouterr().err
    assert "--feedback-file is deprecated; use --feedback-out" in err
    assert "--model is deprecated" in err
    args = cli.parser().parse_args(["train", "--data", "d.json", "--feedback", "f.jsonl"])
    assert args.feedback == "f.jsonl"
    args = cli.parser().parse_args(["evaluate", "--data", "d.json", "--report", "r"])
    assert args.out == "r"
    args = cli.parser().parse_args(["serve", "--feedback", "f.jsonl"])
    assert args.feedback_out == "f.jsonl"


def test_import_takes_data_and_out_and_still_the_positionals(tmp_path, caplog):
    source = tmp_path / "faq.csv"
    source.write_text("text,intent\n" + "".join(f"{text},{tag}\n" for tag, texts in
                                                  SMALL_INTENTS.items() for text in texts))
    assert cli.main(["import", "--data", str(source), "-o", str(tmp_path / "a.json")]) == 0
    assert cli.main(["import", str(source), str(tmp_path / "b.json")]) == 0
    assert "deprecated" in caplog.text
    assert (tmp_path / "a.json").read_text() == (tmp_path / "b.json").read_text()


def test_train_needs_data_and_jobs_py_keeps_its_default(tmp_path, caplog):
    with caplog.at_level(logging.ERROR, logger="intentkit"):
        assert cli.main(["train", "-o", str(tmp_path / "m")]) == 2
    assert "--data FILE is required" in caplog.text
    assert TrainConfig().data == ""  # the API has no silent default either
    help_text = subprocess.run([sys.executable, "jobs.py", "--help"], cwd=ROOT,
                               capture_output=True, text=True, timeout=120).stdout
    assert "--data FILE" in help_text


# --- 3. errors in a second -----------------------------------------------------------------------

FRESH_MAIN = """
import sys
from intentkit.cli import main
code = main({argv!r})
print("tensorflow imported:", "tensorflow" in sys.modules)
sys.exit(code)
"""


@pytest.mark.parametrize("argv, expected", [
    (["train", "--data", "intents.jsn", "-o", "model"],
     "--data intents.jsn: no such file (did you mean intents.json?)"),
    (["evaluate", "--data", "intents.json", "-m", "modle"],
     "-m/--model-dir modle: no such directory (did you mean model?)"),
    (["predict", "-m", "modle", "hello"],
     "-m/--model-dir modle: no such directory (did you mean model?)"),
    (["serve", "-m", "nowhere"], "-m/--model-dir nowhere: no such directory"),
    (["train", "--data", "intents.json", "--feedback-in", "fedback.jsonl", "-o", "m"],
     "--feedback-in fedback.jsonl: no such file (did you mean feedback.jsonl?)"),
])
def test_a_wrong_path_answers_before_tensorflow_is_imported(tmp_path, argv, expected):
    write_intents(tmp_path / "intents.json")
    (tmp_path / "feedback.jsonl").write_text("")
    (tmp_path / "model").mkdir()
    result = run_in_fresh_python(FRESH_MAIN.format(argv=argv), cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert expected in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "tensorflow imported: False" in result.stdout
    assert not (tmp_path / "m").exists()


def test_a_missing_extra_is_exit_2_with_the_pip_line(trained, monkeypatch, caplog):
    import importlib.util
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *args: None if name == "uvicorn" else real(name, *args))
    with caplog.at_level(logging.ERROR, logger="intentkit"):
        assert cli.main(["serve", "-m", str(trained["out"])]) == 2
    assert "pip install 'intentkit[serve]'" in caplog.text


def test_a_port_in_use_is_one_line_naming_port_before_the_model_loads(trained, monkeypatch,
                                                                     caplog):
    pytest.importorskip("uvicorn")
    monkeypatch.setattr(serving, "get_predictor", lambda *a, **k: pytest.fail("model loaded"))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with caplog.at_level(logging.ERROR, logger="intentkit"):
            assert cli.main(["serve", "-m", str(trained["out"]), "--port", str(port)]) == 2
    [message] = caplog.messages
    assert message.startswith(f"error: --port {port}: cannot listen on 127.0.0.1:{port}")


def test_a_failed_train_leaves_nothing_it_created(tmp_path):
    tiny = write_intents(tmp_path / "tiny.json", {**SMALL_INTENTS, "goodbye": ["bye", "ciao"]})
    out = tmp_path / "new" / "model"
    assert cli.main(["train", "--data", str(tiny), "-o", str(out), "--quick"]) == 2
    assert not (tmp_path / "new").exists()
    existing = tmp_path / "existing"
    existing.mkdir()
    assert cli.main(["train", "--data", str(tiny), "-o", str(existing), "--quick"]) == 2
    assert existing.is_dir() and not any(existing.iterdir())  # the user's: kept, untouched


def test_messages_name_intentkit_commands_not_checkout_scripts(trained, tmp_path):
    damaged = tmp_path / "damaged"
    shutil.copytree(trained["out"], damaged)
    (damaged / artifacts.MANIFEST_FILE).unlink()
    (damaged / artifacts.MANIFEST_FILE).write_text("{}")
    with pytest.raises(artifacts.ArtifactError) as raised:
        artifacts.open_published(damaged)
    assert "intentkit train" in str(raised.value) and "jobs.py" not in str(raised.value)


# --- 4. the fastest correct runtime by default ---------------------------------------------------

def test_the_default_runtime_is_numpy_and_never_imports_tensorflow(trained):
    code = f"""
import json, sys
from intentkit.cli import main
from predict import predict_intent_improved
result = predict_intent_improved("hello there", {str(trained['model'])!r},
                                 {str(trained['preprocessor'])!r}, strict=True)
assert result["intent"] == "greeting", result
code = main(["predict", "-m", {str(trained['out'])!r}, "good morning"])
print("tensorflow imported:", "tensorflow" in sys.modules)
sys.exit(code)
"""
    result = run_in_fresh_python(code)
    assert result.returncode == 0, result.stderr
    assert "tensorflow imported: False" in result.stdout
    assert json.loads(result.stdout.splitlines()[0])["intent"] == "greeting"


def test_keras_on_request_gives_the_same_answers(trained):
    numpy_predictor = get_predictor(trained["model"], trained["preprocessor"])
    keras_predictor = get_predictor(trained["model"], trained["preprocessor"], runtime="keras")
    assert (numpy_predictor.runtime, keras_predictor.runtime) == ("numpy", "keras")
    for text in ("hello there", "what does an analyst earn", "fix my cv"):
        assert numpy_predictor.predict(text)["confidence"] == pytest.approx(
            keras_predictor.predict(text)["confidence"], abs=1e-5)
    assert predict_intent_improved("bye", trained["model"], trained["preprocessor"],
                                   runtime="keras")["intent"] == "goodbye"


# --- 6. conflicts that do not stop a user --------------------------------------------------------

CONFLICTING = {**SMALL_INTENTS,
               "greeting": [*SMALL_INTENTS["greeting"], "see you around"],
               "goodbye": [*SMALL_INTENTS["goodbye"], "See you around!"]}


def test_a_text_of_two_intents_is_dropped_from_both_with_a_warning(tmp_path, caplog):
    document = intents_document(CONFLICTING)
    with caplog.at_level(logging.WARNING):
        data = validate_intents(document, "bot.json")
    assert "see you around" not in [text.lower().strip("!") for text in data.texts]
    assert data.conflicts == ({"text": "see you around", "intents": ["greeting", "goodbye"]},)
    assert "'see you around' (greeting, goodbye)" in caplog.text and "dropped" in caplog.text
    kept = validate_intents(document, "bot.json", "keep-first")
    assert [label for text, label in zip(kept.texts, kept.labels)
            if text == "see you around"] == ["greeting"]
    with pytest.raises(DataError, match="'see you around' is a pattern of greeting, goodbye"):
        validate_intents(document, "bot.json", "error")
    with pytest.raises(ConfigError, match="on-conflict"):
        TrainConfig(data="x.json", on_conflict="ignore")


def test_the_model_card_counts_what_was_dropped(trained):
    details = json.loads((trained["out"] / artifacts.MANIFEST_FILE).read_text())
    assert details["data"]["conflicts"]["texts"] == 0
    assert "Conflicts:" not in render(details)
    details["data"]["conflicts"] = {"on_conflict": "drop", "texts": 1, "examples": [
        {"text": "see you around", "intents": ["greeting", "goodbye"]}]}
    assert ("Conflicts: 1 text(s) were patterns of several intents, dropped from all their "
            "intents (`on_conflict: drop`): `see you around` (greeting, goodbye)."
            in render(details))


@pytest.mark.slow  # trains a model
def test_training_goes_on_past_a_conflict_and_the_card_says_so(tmp_path):
    data = write_intents(tmp_path / "conflicting.json", CONFLICTING)
    result = subprocess.run([intentkit_command(), "train", "--data", str(data), "-o", "model",
                             *QUICK_ARGS, "--no-ensemble", "--epochs", "3", "--tuning-epochs",
                             "1"], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "'see you around' (greeting, goodbye)" in result.stderr
    card = (tmp_path / "model" / artifacts.MODEL_CARD_FILE).read_text()
    assert "Conflicts: 1 text(s) were patterns of several intents, dropped" in card


def test_check_reports_every_finding_before_it_exits(tmp_path, capsys):
    path = write_intents(tmp_path / "bot.json", {**CONFLICTING, "thanks": ["thanks", "ty", "thx"],
                                                 "resume": SMALL_INTENTS["resume"][:7]})
    report = check_data(path, embedding_checks=False)
    codes = [finding.code for finding in report.findings]
    assert "invalid-intent" in codes  # 'thanks' has 3 patterns: training refuses it...
    assert "duplicate-across-intents" in codes  # ...which no longer hides the other findings
    assert "too-few-patterns" in codes
    assert report.exit_code == 2
    assert "'thanks'" in report.format_text() and "'see you around'" in report.format_text()
