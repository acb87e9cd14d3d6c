"""The command line: subcommands, the error contract, and the module layering."""
import logging
import subprocess
from pathlib import Path

import pytest
from conftest import ROOT, intentkit_command, run_script

from intentkit import cli
from intentkit.errors import DataError

SUBCOMMANDS = ("train", "evaluate", "predict", "serve", "import", "check", "cv", "review",
               "export")


def test_help_lists_every_subcommand_and_the_scripts_are_the_same_commands():
    listed = subprocess.run([intentkit_command(), "--help"], capture_output=True, text=True,
                            cwd="/")
    assert listed.returncode == 0
    for name in SUBCOMMANDS:
        assert f"\n    {name} " in listed.stdout
    assert "--augmentation-factor" in run_script(ROOT / "jobs.py", "--help").stdout
    assert "usage: jobs.py evaluate" in run_script(ROOT / "jobs.py", "evaluate", "--help").stdout
    assert "--runtime" in run_script(ROOT / "predict.py", "--help").stdout
    assert "--max-batch" in run_script("-m", "intentkit.serve", "--help").stdout


@pytest.fixture
def failing_train(monkeypatch):
    def fail_with(error):
        def train(config):
            raise error
        monkeypatch.setattr("intentkit.training.pipeline.train", train)
    return fail_with


@pytest.fixture
def data_file(tmp_path):
    from conftest import write_intents
    return str(write_intents(tmp_path / "intents.json"))


def test_a_user_error_is_one_line_and_exit_2(failing_train, data_file, caplog):
    failing_train(DataError("data.json: intents[3] has no tag; add one"))
    with caplog.at_level(logging.ERROR, logger="intentkit"):
        assert cli.main(["train", "--data", data_file, "--quick"]) == 2
    assert caplog.messages == ["error: data.json: intents[3] has no tag; add one"]


def test_a_bug_is_exit_1_with_a_hint_to_rerun_with_verbose(failing_train, data_file, caplog):
    failing_train(ValueError("shapes (3,4) and (5,) not aligned"))  # as a Keras bug would
    with caplog.at_level(logging.ERROR, logger="intentkit"):
        assert cli.main(["train", "--data", data_file, "--quick"]) == 1
    assert len(caplog.messages) == 1 and "rerun with --verbose" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="intentkit"):
        assert cli.main(["train", "--data", data_file, "--quick", "--verbose"]) == 1
    assert "Traceback" in caplog.text


def test_train_runs_from_another_directory(trained):
    # The session's model was trained by the installed command, started outside the project.
    assert Path(trained["out"], "manifest.json").is_file()
    assert "intentkit" in Path(intentkit_command()).name
