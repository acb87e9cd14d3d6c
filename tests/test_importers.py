"""CSV/TSV and Rasa NLU YAML data: same data and the same checks as an intents JSON file."""
import json
import logging

import pytest
from conftest import SMALL_INTENTS, write_intents

from intentkit import cli
from intentkit.data.intents import load_examples, load_intents
from intentkit.errors import DataError

RASA = """\
version: "3.1"
nlu:
- intent: greeting
  examples: |
    - hello [Anna](name)
    - hi [there]{"entity": "place"}
    - good morning
    - howdy
    - hey you
- synonym: savings
  examples: |
    - pink pig
- intent: goodbye
  examples: |
    - bye
    - see you later
    - good night
    - catch you later
    - farewell
"""


def write_table(path, rows, delimiter=",", header=("text", "intent")):
    lines = [delimiter.join(header)] + [delimiter.join(row) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def small_rows():
    return [(text, tag) for tag, patterns in SMALL_INTENTS.items() for text in patterns]


@pytest.mark.parametrize("suffix, delimiter", [(".csv", ","), (".tsv", "\t")])
def test_table_loads_like_the_json_file(tmp_path, suffix, delimiter):
    table = write_table(tmp_path / f"data{suffix}", small_rows(), delimiter)
    expected = load_intents(write_intents(tmp_path / "data.json"))
    loaded = load_intents(table)
    assert (loaded.texts, loaded.labels, loaded.tags) == (expected.texts, expected.labels,
                                                          expected.tags)


def test_csv_quotes_and_extra_columns(tmp_path):
    path = tmp_path / "data.csv"
    rows = [f'"{text}, please",{tag},x' for text, tag in small_rows()]
    path.write_text("text,intent,source\n" + "\n".join(rows))
    assert load_intents(path).texts[0] == "hello there, please"


@pytest.mark.parametrize("content, message", [
    ("words,label\nhi,greeting\n", "line 1 must be the header naming the columns text and intent"),
    ("text,intent\nhi,greeting\nhello\n", "line 3 has 1 field(s) where the header has 2"),
    ("text,intent\nhi,greeting\n  ,greeting\n", "line 3: the text is empty"),
    ("text,intent\nhi,greeting\nhello,\n", "line 3: the intent is empty"),
])
def test_malformed_csv_names_the_file_and_line(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(DataError, match=str(path).replace("\\", "\\\\")) as error:
        load_intents(path)
    assert message in str(error.value)


def test_same_validation_messages_as_json(tmp_path):
    too_few = {"greeting": ["hi", "hello", "hey"], "goodbye": SMALL_INTENTS["goodbye"]}
    json_error = pytest.raises(DataError, load_intents, write_intents(tmp_path / "d.json",
                                                                      too_few))
    rows = [(text, tag) for tag, patterns in too_few.items() for text in patterns]
    csv_error = pytest.raises(DataError, load_intents, write_table(tmp_path / "d.csv", rows))
    expected = "intents[0] (tag 'greeting') has 3 distinct pattern(s); at least 5 are needed"
    assert expected in str(json_error.value) and expected in str(csv_error.value)
    assert str(csv_error.value).replace("d.csv", "d.json") == str(json_error.value)


def test_rasa_yaml_keeps_entities_and_skips_untyped_synonyms(tmp_path, caplog):
    path = tmp_path / "nlu.yml"
    path.write_text(RASA)
    with caplog.at_level(logging.INFO):
        data = load_intents(path)
    assert data.tags == ["goodbye", "greeting"]
    assert data.texts[:2] == ["hello Anna", "hi there"]
    assert len(data.texts) == 10
    assert [span.entity for row in data.spans[:2] for span in row] == ["name", "place"]
    assert "nlu[1]: synonym 'savings' skipped: no annotation gives it" in caplog.text


@pytest.mark.parametrize("content, message", [
    ("intents: []\n", "expected Rasa NLU data: a top-level `nlu:` list"),
    ("nlu:\n- examples: |\n    - hi\n", "nlu[0] has no `intent:` name"),
    ("nlu:\n- intent: greet\n", "nlu[0] (intent 'greet'): `examples:` is missing"),
    ("nlu:\n- intent: greet\n  examples: |\n    - hi\n    hello\n",
     "examples line 2 ('hello') must start with '- '"),
    ("nlu: [\n", "invalid YAML at line 2"),
])
def test_bad_rasa_files_name_the_file_and_item(tmp_path, content, message):
    path = tmp_path / "nlu.yaml"
    path.write_text(content)
    with pytest.raises(DataError) as error:
        load_intents(path)
    assert str(error.value).startswith(f"{path}: ") and message in str(error.value)


def test_evaluation_data_can_be_a_csv(tmp_path):
    texts, labels = load_examples(write_table(tmp_path / "eval.csv", small_rows()))
    assert list(zip(texts, labels)) == small_rows()


def test_import_command_writes_intents_json(tmp_path):
    source = tmp_path / "nlu.yml"
    source.write_text(RASA)
    destination = tmp_path / "intents.json"
    assert cli.main(["import", str(source), str(destination)]) == 0
    document = json.loads(destination.read_text())
    assert [i["tag"] for i in document["intents"]] == ["greeting", "goodbye"]
    assert document["intents"][0]["patterns"][0] == "hello Anna"
    assert load_intents(destination).texts == load_intents(source).texts


def test_import_of_bad_data_exits_2_and_keeps_the_destination(tmp_path, caplog):
    source = write_table(tmp_path / "bad.csv", [("hi", "greeting"), ("", "greeting")])
    destination = tmp_path / "intents.json"
    destination.write_text("previous")
    with caplog.at_level(logging.ERROR, logger="intentkit"):
        assert cli.main(["import", str(source), str(destination)]) == 2
    assert f"{source}: line 3: the text is empty" in caplog.text
    assert destination.read_text() == "previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.csv", "intents.json"]
