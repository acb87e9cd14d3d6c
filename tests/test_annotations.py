"""Entity annotations in patterns, the "entities" and "rules" sections, and their importers."""
import json
import time

import pytest

from intentkit.data.annotations import (
    Span,
    annotate,
    parse_pattern,
    spans_from_rows,
    validate_entities,
    validate_rules,
)
from intentkit.data.intents import load_annotated_examples, load_intents, split_data
from intentkit.errors import DataError


def test_inline_annotations_become_plain_text_and_spans():
    parsed = parse_pattern("find [python](skill) jobs in [new york](location)!")
    assert parsed.text == "find python jobs in new york!"
    assert parsed.spans == (Span(5, 11, "skill", "python"), Span(20, 28, "location", "new york"))
    for span in parsed.spans:
        assert parsed.text[span.start:span.end] == span.value


def test_canonical_values_json_and_rasa_short_form():
    parsed = parse_pattern('  jobs in [NYC]{"entity": "location", "value": "New York"}, '
                           "or [the bay](location:San Francisco)")
    assert parsed.text == "jobs in NYC, or the bay"
    assert parsed.spans == (Span(8, 11, "location", "New York"),
                            Span(16, 23, "location", "San Francisco"))


def test_offsets_with_unicode_punctuation_and_escapes():
    parsed = parse_pattern("¿Trabajo en [Zürich](location)? 🙂 [C++](skill), \\[not one\\]")
    assert parsed.text == "¿Trabajo en Zürich? 🙂 C++, [not one]"
    assert [parsed.text[s.start:s.end] for s in parsed.spans] == ["Zürich", "C++"]
    assert parse_pattern(annotate(parsed.text, parsed.spans)) == parsed


def test_spaces_inside_brackets_are_not_part_of_the_span():
    parsed = parse_pattern("in [ Berlin ](location) now")
    assert parsed.spans == (Span(4, 10, "location", "Berlin"),)
    assert parsed.text[4:10] == "Berlin"


@pytest.mark.parametrize("pattern, says", [
    ("jobs in [Berlin", "never closes"),
    ("jobs in [Berlin] now", "without a (type)"),
    ("jobs in Berlin](location)", "closes no '['"),
    ("jobs in [](location)", "empty value"),
    ("jobs in [  ](location)", "empty value"),
    ("jobs in [big [Berlin](location)](area)", "nested or overlapping"),
    ('jobs in [NYC]{"entity": location}', "not valid JSON"),
    ('jobs in [NYC]{"entity": "location"', "not valid JSON"),
    ('jobs in [NYC]{"value": "New York"}', 'without "entity"'),
    ('jobs in [NYC]{"entity": "location", "value": ""}', '"value"'),
    ('jobs in [NYC]{"entity": "location", "colour": "red"}', "unknown key"),
    ("jobs in [Berlin](location", "never closes"),
    ("jobs in [Berlin](1st place)", "entity type"),
    ("jobs in [Berlin]()", "entity type"),
    ("jobs in [Berlin](location:)", "empty canonical value"),
])
def test_every_malformed_annotation_names_file_intent_pattern_and_fix(tmp_path, pattern, says):
    path = tmp_path / "intents.json"
    patterns = [pattern] + [f"sentence number {n}" for n in range(5)]
    path.write_text(json.dumps({"intents": [
        {"tag": "find_job", "patterns": patterns},
        {"tag": "greet", "patterns": [f"hello {n}" for n in range(5)]}]}))
    with pytest.raises(DataError) as error:
        load_intents(path)
    message = str(error.value)
    assert str(path) in message and "find_job" in message and says in message
    assert "jobs in" in message  # the pattern
    assert "\n" not in message


def _intents(tmp_path, extra, patterns=None):
    document = {"intents": [
        {"tag": "find_job", "patterns": patterns or [
            "find [python](skill) jobs in [Berlin](location)", "jobs in [Paris](location)",
            "any [java](skill) work", "[data engineer](job_title) roles", "jobs please"]},
        {"tag": "greet", "patterns": [f"hello {n}" for n in range(5)]}], **extra}
    path = tmp_path / "intents.json"
    path.write_text(json.dumps(document))
    return path


def test_intents_file_keeps_spans_and_the_split_keeps_them_aligned(tmp_path):
    data = load_intents(_intents(tmp_path, {}))
    assert data.has_entities
    assert data.texts[0] == "find python jobs in Berlin"
    assert data.spans[0] == (Span(5, 11, "skill", "python"), Span(20, 26, "location", "Berlin"))
    texts, labels, spans = data.texts * 4, data.labels * 4, data.spans * 4
    split = split_data(texts, labels, 0.2, 0.2, seed=3, spans=spans)
    plain = split_data(texts, labels, 0.2, 0.2, seed=3)
    assert split.train_texts == plain.train_texts and split.test_labels == plain.test_labels
    for part_texts, part_spans in ((split.train_texts, split.train_spans),
                                   (split.val_texts, split.val_spans),
                                   (split.test_texts, split.test_spans)):
        for text, row_spans in zip(part_texts, part_spans):
            assert row_spans == spans[texts.index(text)]


def test_entities_section_lookup_list_file_regex_synonyms(tmp_path):
    (tmp_path / "cities.txt").write_text("# cities\nBerlin\nNew York\n\nSan Francisco\n")
    section = {"location": {"lookup": "cities.txt", "synonyms": {"New York": ["NYC", "nyc"]}},
               "skill": {"lookup": ["python", "c++", "machine learning"]},
               "salary": {"regex": [r"\d+k"]}}
    data = load_intents(_intents(tmp_path, {"entities": section}))
    types = data.entity_types
    assert types.types["location"].lookup == ("Berlin", "New York", "San Francisco")
    found = types.find("Machine learning or C++ jobs in new york, 90k, not Berlinale; NYC")
    assert [(e["entity"], e["value"], e["start"], e["end"], e["extractor"]) for e in found] == [
        ("skill", "Machine learning", 0, 16, "lookup"), ("skill", "C++", 20, 23, "lookup"),
        ("location", "new york", 32, 40, "lookup"), ("salary", "90k", 42, 45, "regex")]
    assert types.canonical("location", "nyc") == "New York"
    assert types.__class__.from_json(types.to_json()).find("NYC in Berlin")[0]["value"] \
        == "Berlin"


def test_a_lookup_file_in_a_subfolder_is_read_beside_the_data_file_whatever_the_cwd(
        tmp_path, monkeypatch):
    """A lookup path is relative to the intents file, not to the working directory; and a long
    list works (its matcher is built from escaped values, beyond the length limit of a user's
    regex)."""
    data_dir, elsewhere = tmp_path / "data", tmp_path / "elsewhere"
    (data_dir / "lookups").mkdir(parents=True)
    elsewhere.mkdir()
    cities = [f"Town{number}" for number in range(3000)] + ["Berlin", "New York"]
    (data_dir / "lookups" / "cities.txt").write_text("\n".join(cities) + "\n")
    path = _intents(data_dir, {"entities": {"location": {"lookup": "lookups/cities.txt"}}})
    monkeypatch.chdir(elsewhere)
    types = load_intents(path).entity_types
    assert len(types.types["location"].lookup) == 3002
    found = types.find("from town2999 to new york, not Town30000")
    assert [(e["value"], e["start"], e["end"]) for e in found] == [("town2999", 5, 13),
                                                                  ("new york", 17, 25)]


@pytest.mark.parametrize("section, says", [
    ({"location": {"lookup": "missing.txt"}}, "cannot be read"),
    ({"location": {"lookup": "binary.txt"}}, "not text"),
    ({"location": {"lookup": [""]}}, "non-empty strings"),
    ({"location": {"regex": ["(unclosed"]}}, "does not compile"),
    ({"location": {"regex": [r"(a)\1"]}}, "does not compile"),
    ({"location": {"synonyms": {"New York": "NYC"}}}, "synonyms must map"),
    ({"location": {"synonyms": {"A": ["x"], "B": ["X"]}}}, "synonym of both"),
    ({"location": {"colour": "red"}}, "unknown key"),
    ({"bad name!": {}}, "entity type"),
    (["location"], "must be an object"),
])
def test_bad_entities_section(tmp_path, section, says):
    (tmp_path / "binary.txt").write_bytes(b"Berlin\x00\x01")
    path = _intents(tmp_path, {"entities": section})
    with pytest.raises(DataError, match=says) as error:
        load_intents(path)
    assert str(path) in str(error.value)


def test_rules_override_by_regex_or_phrase(tmp_path):
    data = load_intents(_intents(tmp_path, {"rules": [
        {"regex": r"^(hi|hello)\b", "intent": "greet"},
        {"phrase": "find me a job", "intent": "find_job"}]}))
    assert data.rules.match("hello there") == "greet"
    assert data.rules.match("Please FIND me   a job now") == "find_job"
    assert data.rules.match("find me a jobs") is None
    assert data.rules.match("oh hello") is None


@pytest.mark.parametrize("rules, says", [
    ([{"regex": "(", "intent": "greet"}], "does not compile"),
    ([{"regex": "hi", "intent": "nope"}], "not a tag"),
    ([{"regex": "hi", "phrase": "hi", "intent": "greet"}], "one of regex / phrase"),
    ([{"phrase": " ", "intent": "greet"}], "non-empty"),
    ({"hi": "greet"}, "must be a list"),
])
def test_bad_rules(tmp_path, rules, says):
    with pytest.raises(DataError, match=says):
        load_intents(_intents(tmp_path, {"rules": rules}))


def test_regexes_are_linear_time_on_a_hostile_message():
    # (a+)+$ backtracks exponentially in Python's re; RE2 answers at once.
    types = validate_entities({"x": {"regex": ["(a+)+$"]}}, "f.json")
    rules = validate_rules([{"regex": "(a|aa)+b", "intent": "greet"}], "f.json", {"greet"})
    message = "a" * 100_000 + "!"
    started = time.perf_counter()
    assert types.find(message) == [] or types.find(message)[0]["start"] >= 0
    assert rules.match(message) is None
    assert time.perf_counter() - started < 5  # a backtracking engine would never finish


def test_list_rows_with_entities(tmp_path):
    path = tmp_path / "test.json"
    path.write_text(json.dumps([{"text": "jobs in Berlin", "intent": "find_job", "entities": [
        {"start": 8, "end": 14, "value": "Berlin", "entity": "location"}]},
        {"text": "hi", "intent": "greet"}]))
    texts, labels, spans = load_annotated_examples(path)
    assert (texts, labels) == (["jobs in Berlin", "hi"], ["find_job", "greet"])
    assert spans == [(Span(8, 14, "location", "Berlin"),), ()]
    with pytest.raises(DataError, match="overlap"):
        spans_from_rows("jobs in Berlin", [{"start": 0, "end": 4, "entity": "a"},
                                           {"start": 2, "end": 6, "entity": "b"}], "f")
    with pytest.raises(DataError, match="not inside the text"):
        spans_from_rows("jobs", [{"start": 0, "end": 9, "entity": "a"}], "f")


def test_rasa_yaml_keeps_annotations_lookups_regexes_and_synonyms(tmp_path):
    path = tmp_path / "nlu.yml"
    path.write_text("""
nlu:
- intent: find_job
  examples: |
    - find [python](skill) jobs in [Berlin](location)
    - jobs in [NYC]{"entity": "location", "value": "New York"}
    - [java](skill) work in [the big apple](location:New York)
    - any jobs
    - jobs please
- intent: greet
  examples: |
    - hi
    - hello
    - hey
    - good morning
    - good evening
- lookup: location
  examples: |
    - Paris
    - London
- regex: salary
  examples: |
    - \\d+k
- synonym: New York
  examples: |
    - nyc
    - new york city
""")
    data = load_intents(path)
    assert data.texts[:2] == ["find python jobs in Berlin", "jobs in NYC"]
    assert data.spans[1] == (Span(8, 11, "location", "New York"),)
    assert data.spans[2][1] == Span(13, 26, "location", "New York")
    types = data.entity_types.types
    assert types["location"].lookup == ("Paris", "London")
    assert types["salary"].regexes == (r"\d+k",)
    assert data.entity_types.canonical("location", "New York City") == "New York"


def test_csv_keeps_inline_annotations(tmp_path):
    path = tmp_path / "intents.csv"
    rows = ["text,intent", '"jobs in [Berlin](location), please",find_job'] + \
        [f"find job {n},find_job" for n in range(4)] + [f"hello {n},greet" for n in range(5)]
    path.write_text("\n".join(rows) + "\n")
    data = load_intents(path)
    assert data.texts[0] == "jobs in Berlin, please"
    assert data.spans[0] == (Span(8, 14, "location", "Berlin"),)


def test_unannotated_data_has_no_entities(tmp_path):
    data = load_intents(_intents(tmp_path, {}, patterns=[f"job {n}" for n in range(5)]))
    assert not data.has_entities and data.spans == [()] * 10
