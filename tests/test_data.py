"""Every kind of bad training data gets a message naming the file, the entry and the fix."""
import json

import pytest
from conftest import SMALL_INTENTS, write_intents

from intentkit.data.intents import MIN_PATTERNS_PER_INTENT, load_intents, split_data
from intentkit.errors import DataError

GOOD = {"tag": "extra", "patterns": ["one", "two", "three", "four", "five"], "responses": ["x"]}


def intents_with(*entries):
    base = [{"tag": t, "patterns": p, "responses": ["r"]} for t, p in SMALL_INTENTS.items()]
    return {"intents": base + list(entries)}


@pytest.mark.parametrize("content, expected", [
    ('{"intents": [', "invalid JSON at line 1, column 14"),
    ("[1, 2]", 'must be an object with an "intents" list'),
    ('{"data": []}', 'must be an object with an "intents" list'),
    (intents_with({"patterns": ["a"]}), 'intents[4] has no "tag"'),
    (intents_with({"tag": "x"}), "intents[4] (tag 'x'): \"patterns\" is missing"),
    (intents_with({"tag": "x", "patterns": []}), '"patterns" is empty'),
    (intents_with({"tag": "x", "patterns": ["ok", 5]}), "patterns[1] is a int (5)"),
    (intents_with({"tag": "x", "patterns": ["ok", "   "]}), "patterns[1] is empty"),
    (intents_with({"tag": "x", "patterns": ["a" * 20_000]}), "20,000 characters long"),
    (intents_with({"tag": "x", "patterns": ["word " * 200_000]}), "1,000,000 characters long"),
    (intents_with({**GOOD, "tag": "greeting"}), "intents[4] repeats tag 'greeting' of intents[0]"),
    (intents_with({**GOOD, "patterns": ["a", "b", "c"]}),
     f"has 3 distinct pattern(s); at least {MIN_PATTERNS_PER_INTENT}"),
    (intents_with({**GOOD, "patterns": ["a b", "A b!", "a  B", "c", "d", "e"]}),
     "has 4 distinct pattern(s)"),
    ({"intents": [{"tag": "only", "patterns": GOOD["patterns"]}]}, "at least 2 intents"),
    (intents_with("not an object"), "intents[4] is a str"),
    (intents_with({**GOOD, "responses": "hello"}), '"responses" must be a list of strings'),
])
def test_bad_data_is_reported_with_file_and_entry(tmp_path, content, expected):
    path = tmp_path / "bad.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    with pytest.raises(DataError) as error:
        load_intents(path)
    assert str(path) in str(error.value)
    assert expected in str(error.value)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        load_intents(tmp_path / "nope.json")


def test_not_utf8(tmp_path):
    path = tmp_path / "latin1.json"
    path.write_bytes('{"intents": [{"tag": "caf\u00e9"}]}'.encode("latin-1"))
    with pytest.raises(DataError, match="not UTF-8"):
        load_intents(path)


def test_byte_order_mark_and_emoji_are_accepted(tmp_path):
    intents = {**SMALL_INTENTS, "emoji": ["😀 yo", "こんにちは", "привет мир", "🎉🎉", "olá"]}
    path = write_intents(tmp_path / "bom.json", intents)
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    data = load_intents(path)
    assert "emoji" in data.tags and "こんにちは" in data.texts


def test_duplicates_keep_first_occurrence_and_warn(tmp_path, caplog):
    intents = {**SMALL_INTENTS, "goodbye": SMALL_INTENTS["goodbye"] + ["Hello there!", "bye!"]}
    path = write_intents(tmp_path / "dup.json", intents)
    # A text of two intents (--on-conflict keep-first: in the first only); a repeat in one
    # intent is dropped whatever --on-conflict says.
    data = load_intents(path, on_conflict="keep-first")
    assert data.texts.count("hello there") == 1
    assert data.labels[data.texts.index("hello there")] == "greeting"
    assert data.texts.count("bye") == 1
    assert "'hello there' (greeting, goodbye)" in caplog.text and "kept in the first" in caplog.text
    assert "dropped 1 repeated pattern(s), keeping the first of each: 'bye!' (goodbye)" in (
        caplog.text)


def test_split_is_stratified_disjoint_and_seeded():
    data = {tag: patterns for tag, patterns in SMALL_INTENTS.items()}
    texts = [p for patterns in data.values() for p in patterns]
    labels = [t for t, patterns in data.items() for _ in patterns]
    split = split_data(texts, labels, 0.25, 0.25, seed=3)
    assert split == split_data(texts, labels, 0.25, 0.25, seed=3)
    assert split != split_data(texts, labels, 0.25, 0.25, seed=4)
    parts = [set(split.train_texts), set(split.val_texts), set(split.test_texts)]
    assert sum(map(len, parts)) == len(texts) == len(set().union(*parts))
    assert set(split.test_labels) == set(split.val_labels) == set(labels)


def test_split_too_small_says_what_to_do():
    texts = [f"t{i}" for i in range(10)]
    labels = ["a", "b"] * 5
    with pytest.raises(DataError, match="Add patterns or change --val-size/--test-size"):
        split_data(texts, labels, 0.05, 0.05)


def test_a_hundred_thousand_patterns_load_and_split(tmp_path):
    intents = {f"intent_{i}": [f"message {j} about topic {i}" for j in range(1000)]
               for i in range(100)}
    data = load_intents(write_intents(tmp_path / "big.json", intents))
    split = split_data(data.texts, data.labels)
    assert len(data.texts) == 100_000
    assert len(split.train_texts) + len(split.val_texts) + len(split.test_texts) == 100_000
