"""`--config FILE`: options from YAML/JSON, validated, with defaults < --quick < file < flags."""
import json
import logging

import pytest
from conftest import write_intents

from intentkit import cli
from intentkit.errors import ConfigError
from intentkit.training.config import QUICK, TrainConfig
from intentkit.training.config_file import read_config_file


def test_yaml_and_json_give_the_same_options_and_accept_dashes(tmp_path):
    yaml_file = tmp_path / "train.yaml"
    yaml_file.write_text("epochs: 12\nval-size: 0.2\nensemble: false\ntensorboard: logs\n")
    json_file = tmp_path / "train.json"
    json_file.write_text(json.dumps({"epochs": 12, "val_size": 0.2, "ensemble": False,
                                     "tensorboard": "logs"}))
    expected = {"epochs": 12, "val_size": 0.2, "ensemble": False, "tensorboard": "logs"}
    assert read_config_file(yaml_file) == expected
    assert read_config_file(json_file) == expected


def test_an_int_is_a_fine_float(tmp_path):
    path = tmp_path / "c.yml"
    path.write_text("fallback_margin: 0\n")
    value = read_config_file(path)["fallback_margin"]
    assert value == 0.0 and isinstance(value, float)


@pytest.mark.parametrize("text, message", [
    ("epoch: 5\n", "unknown option 'epoch'. Did you mean epochs"),
    ("tuning_patience: many\n", "'tuning_patience' must be int (like 5), not str 'many'"),
    ("epochs: true\n", "'epochs' must be int"),
    ("ensemble: 1\n", "'ensemble' must be bool"),
    ("- epochs\n", "must be a mapping of option names to values"),
    ("epochs: [1\n", "invalid YAML at line 2"),
])
def test_bad_files_name_the_file_and_the_problem(tmp_path, text, message):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match="c.yaml") as error:
        read_config_file(path)
    assert message in str(error.value)


def test_unsupported_suffix_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="must end in .yaml, .yml, .json"):
        read_config_file(tmp_path / "c.toml")
    with pytest.raises(ConfigError, match="config file not found"):
        read_config_file(tmp_path / "missing.json")


@pytest.fixture
def captured_config(monkeypatch):
    """Runs the training command line with a train() that only records its config."""
    seen = []
    monkeypatch.setattr("intentkit.training.pipeline.train", seen.append)
    return seen


def test_precedence_defaults_quick_file_flags(tmp_path, captured_config):
    path = tmp_path / "c.yaml"
    data = write_intents(tmp_path / "intents.json")
    path.write_text(f"epochs: 40\npatience: 7\nseed: 3\ndata: {data}\n")  # --data from the file
    assert cli.main(["train", "--quick", "--config", str(path), "--seed", "5"]) == 0
    config = captured_config[0]
    assert config.epochs == 40 and config.patience == 7, "the file wins over --quick"
    assert config.seed == 5, "an explicit flag wins over the file"
    assert config.tuning_epochs == QUICK["tuning_epochs"], "--quick wins over defaults"
    assert config.batch_size == TrainConfig.batch_size, "defaults fill the rest"


def test_command_line_reports_a_bad_file_with_exit_code_2(tmp_path, captured_config, caplog):
    path = tmp_path / "c.json"
    path.write_text('{"epochz": 3}')
    with caplog.at_level(logging.ERROR, logger="intentkit"):
        assert cli.main(["train", "--config", str(path)]) == 2
    assert f"{path}: unknown option 'epochz'. Did you mean epochs" in caplog.text
    assert not captured_config
