"""`intentkit check` (exit codes, text and JSON), and training refusing a text labelled with
two intents before anything is fitted when asked to (--on-conflict error; the default drops it)."""
import json

from conftest import ROOT, SMALL_INTENTS, run_script, write_intents

from intentkit.cli import main
from intentkit.evaluation.data_checks import EXIT_CLEAN, EXIT_ERRORS

CONTRADICTORY = {**SMALL_INTENTS, "goodbye": SMALL_INTENTS["goodbye"] + ["Hello there!"]}


def test_check_prints_json_with_the_error_and_exits_2(tmp_path, capsys):
    path = write_intents(tmp_path / "bad.json", CONTRADICTORY)
    assert main(["check", "--data", str(path), "--json"]) == EXIT_ERRORS
    report = json.loads(capsys.readouterr().out)
    assert report["exit_code"] == EXIT_ERRORS
    [error] = report["errors"]
    assert error["code"] == "duplicate-across-intents"
    assert error["details"]["intents"] == {"greeting": "hello there", "goodbye": "Hello there!"}


def test_check_text_report_exits_0_with_warnings_only(tmp_path, capsys):
    path = write_intents(tmp_path / "few.json", {**SMALL_INTENTS,
                                                 "goodbye": SMALL_INTENTS["goodbye"][:6]})
    assert main(["check", "--data", str(path), "--near-duplicate-threshold", "0.99"]) == EXIT_CLEAN
    text = capsys.readouterr().out
    assert "Warnings:" in text and "Errors:" not in text
    assert "'goodbye' has 6 distinct patterns" in text


def test_jobs_py_check_reports_an_invalid_file_in_one_line(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{"intents": 3}')
    result = run_script(ROOT / "jobs.py", "check", "--data", path)
    assert result.returncode == 2
    assert result.stdout == ""
    assert f"error: {path}: the top level must be" in result.stderr


def test_training_refuses_contradictory_labels_before_fitting(tmp_path, caplog):
    path = write_intents(tmp_path / "bad.json", CONTRADICTORY)
    out = tmp_path / "model"
    assert main(["train", "--data", str(path), "--out", str(out), "--quick",
                 "--on-conflict", "error"]) == 2
    [error] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("error:")]
    assert str(path) in error
    assert "'hello there' is a pattern of greeting, goodbye" in error
    assert "vocabulary" not in caplog.text  # stopped before featurizing
    assert not out.exists() or not any(out.iterdir())


def test_training_logs_the_cheap_warnings(tmp_path, caplog):
    from intentkit.training.config import TrainConfig
    from intentkit.training.pipeline import load_checked
    path = write_intents(tmp_path / "few.json", {**SMALL_INTENTS,
                                                 "goodbye": SMALL_INTENTS["goodbye"][:6]})
    assert load_checked(TrainConfig(data=str(path)).data).tags == sorted(SMALL_INTENTS)
    assert "too-few-patterns: 'goodbye' has 6 distinct patterns" in caplog.text
    assert "near-duplicate" not in caplog.text and "embedding" not in caplog.text
