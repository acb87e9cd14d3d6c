"""Hostile files: YAML alias bombs and deep nesting are refused with one line naming the file."""
import json

import pytest

from intentkit.data.feedback import read_feedback
from intentkit.data.intents import load_intents
from intentkit.errors import ConfigError, DataError
from intentkit.training.config_file import read_config_file

ALIAS_BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]\n" for i in range(8))


def test_a_yaml_alias_bomb_is_refused_at_once_with_a_short_message(tmp_path):
    for reader, suffix, error in ((read_config_file, ".yaml", ConfigError),
                                  (load_intents, ".yml", DataError)):
        path = tmp_path / f"bomb{suffix}"
        path.write_text(ALIAS_BOMB)
        with pytest.raises(error, match="aliases") as raised:
            reader(path)
        assert str(path) in str(raised.value) and len(str(raised.value)) < 300


def test_an_unbounded_value_is_not_repeated_in_the_message(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"epochs": "9" * 1_000_000}))
    with pytest.raises(ConfigError) as raised:
        read_config_file(path)
    assert "'epochs' must be int" in str(raised.value) and len(str(raised.value)) < 300


DEEP = 5000


@pytest.mark.parametrize("name, text, reader, error", [
    ("data.json", "[" * DEEP + "]" * DEEP, load_intents, DataError),
    ("nlu.yml", "nlu: " + "[" * DEEP + "]" * DEEP, load_intents, DataError),
    ("c.json", "[" * DEEP + "]" * DEEP, read_config_file, ConfigError),
    ("feedback.jsonl", '{"a": ' + "[" * DEEP + "]" * DEEP + "}\n", read_feedback, DataError),
    # Deep, but below Python's recursion limit: refused all the same.
    ("shallow.json", '{"intents": ' + "[" * 500 + "]" * 500 + "}", load_intents, DataError),
])
def test_deep_nesting_is_refused_with_one_line(tmp_path, name, text, reader, error):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(error, match="nested more than 100 levels deep") as raised:
        reader(path)
    assert str(path) in str(raised.value)
