"""Entity value substitution (issue 24): variants of the labeller's training rows with values
replaced by others of the same type, spans exact, training rows only, deterministic."""
import random

import pytest

from intentkit.data.annotations import Span, learned_synonyms, parse_pattern, validate_entities
from intentkit.data.intents import duplicate_key
from intentkit.training.entities import EntityRows, with_substituted_values
from intentkit.training.entity_substitution import EntitySubstituter, substituted, type_values

PATTERNS = [
    "salary for a [data engineer](job_title) in [Berlin](location), please!",
    "🚀 [rust](skill) jobs in [São Paulo](location)?! (über-remote, [120k](salary_amount))",
    "[NYC]{\"entity\": \"location\", \"value\": \"New York\"}: [c++](skill) or "
    "[Go](skill)...",
    "is [Zürich](location) good for a [nurse](job_title)",
    "hello there",
]


def annotated(patterns=PATTERNS):
    rows = [parse_pattern(p) for p in patterns]
    return [row.text for row in rows], [row.spans for row in rows]


def entity_types():
    return validate_entities({"location": {"lookup": ["Lagos", "Ho Chi Minh City", "東京"],
                                           "synonyms": {"San Francisco": ["the bay"]}},
                              "skill": {"lookup": ["machine learning"]}}, "intents.json")


def substitute(texts, spans, factor=3, max_rows=5000, seed=7, exclude=()):
    types = entity_types()
    synonyms = learned_synonyms(texts, spans)

    def canonical(entity, written):
        return synonyms.get((entity, written.casefold()), types.canonical(entity, written))
    return EntitySubstituter(type_values(texts, spans, types), canonical, factor=factor,
                             max_rows=max_rows, seed=seed).substitute(texts, spans, exclude)


def outside(text, spans):
    """The text around the spans, in order."""
    pieces, position = [], 0
    for span in sorted(spans, key=lambda s: s.start):
        pieces.append(text[position:span.start])
        position = span.end
    return pieces + [text[position:]]


def test_replacing_values_of_other_lengths_moves_every_span_exactly():
    text = "🚀 rust jobs in São Paulo?! (über, 120k)"
    spans = (Span(15, 24, "location", "São Paulo"), Span(2, 6, "skill", "rust"),
             Span(34, 38, "salary_amount", "120k"))  # not in order
    assert [text[s.start:s.end] for s in spans] == ["São Paulo", "rust", "120k"]
    new_text, new_spans = substituted(
        text, spans, [("Ho Chi Minh City", "Ho Chi Minh City"), ("c", "c"), None])
    assert new_text == "🚀 c jobs in Ho Chi Minh City?! (über, 120k)"
    assert [(new_text[s.start:s.end], s.entity, s.value) for s in new_spans] == [
        ("c", "skill", "c"), ("Ho Chi Minh City", "location", "Ho Chi Minh City"),
        ("120k", "salary_amount", "120k")]


def test_every_variant_has_exact_spans_same_type_values_and_the_same_words_around():
    texts, spans = annotated()
    values = type_values(texts, spans, entity_types())
    new_texts, new_spans = substitute(texts, spans)
    assert len(new_texts) >= 8, new_texts
    assert any("東京" in text or "Ho Chi Minh City" in text for text in new_texts)
    originals = {tuple(outside(t, s)): (t, sorted(s, key=lambda x: x.start))
                 for t, s in zip(texts, spans) if s}
    for text, row in zip(new_texts, new_spans):
        source_text, source = originals[tuple(outside(text, row))]  # the pattern's words around
        assert [s.entity for s in row] == [s.entity for s in source]
        for span in row:
            written = text[span.start:span.end]
            assert written == written.strip() and written in values[span.entity]
        assert [text[s.start:s.end] for s in row] != \
            [source_text[s.start:s.end] for s in source], "a variant changes a value"


def test_values_come_from_their_own_type_only():
    texts, spans = annotated(["find [python](skill) jobs", "jobs in [Berlin](location)",
                              "[java](skill) in [Paris](location)"])
    new_texts, new_spans = substitute(texts, spans, factor=5)
    skills = {"python", "java", "machine learning"}
    locations = {"Berlin", "Paris", "Lagos", "Ho Chi Minh City", "東京", "San Francisco"}
    seen = {"skill": set(), "location": set()}
    for text, row in zip(new_texts, new_spans):
        for span in row:
            seen[span.entity].add(text[span.start:span.end])
    assert seen["skill"] <= skills and seen["location"] <= locations
    assert seen["skill"] - {"python", "java"} and seen["location"] - {"Berlin", "Paris"}


def test_a_substituted_written_form_carries_its_canonical_value():
    texts, spans = annotated(["jobs in [the bay](location)", "jobs in [Lagos](location)",
                              "a [NYC]{\"entity\": \"location\", \"value\": \"New York\"} job"])
    new_texts, new_spans = substitute(texts, spans, factor=6)
    pairs = {(text[s.start:s.end], s.value) for text, row in zip(new_texts, new_spans)
             for s in row}
    assert ("the bay", "San Francisco") in pairs and ("NYC", "New York") in pairs
    assert all(value in {"San Francisco", "New York"} or value == written
               for written, value in pairs)


def test_factor_and_cap_bound_the_variants_and_zero_turns_it_off():
    texts, spans = annotated()
    new_texts, _ = substitute(texts, spans, factor=1)
    assert len(new_texts) == 4  # one per annotated pattern, none for "hello there"
    assert len(substitute(texts, spans, factor=3, max_rows=5)[0]) == 5
    assert substitute(texts, spans, factor=0) == ([], [])
    keys = [duplicate_key(t) for t in new_texts + texts]
    assert len(set(keys)) == len(keys), "no variant repeats a pattern or another variant"


def test_the_same_seed_gives_the_same_variants_and_another_seed_others():
    texts, spans = annotated()
    first = substitute(texts, spans, seed=3)
    assert substitute(texts, spans, seed=3) == first
    assert substitute(texts, spans, seed=4) != first


def test_only_training_rows_are_varied_and_no_variant_is_a_validation_or_test_row():
    texts, spans = annotated(["jobs in [Berlin](location)", "jobs in [Paris](location)"])
    val = annotated(["jobs in [Rome](location)"])
    test = annotated(["jobs in [Lagos](location)", "jobs in [東京](location)"])
    rows = EntityRows(texts, spans, *val, *test)
    out = with_substituted_values(rows, entity_types(), {}, factor=5, max_rows=100, seed=1)
    assert (out.val_texts, out.val_spans, out.test_texts, out.test_spans) == (*val, *test)
    assert out.train_texts[:2] == texts and out.train_spans[:2] == spans
    made = out.train_texts[2:]
    # Lagos and 東京 are lookup values but test rows with this context: never written; Rome is
    # only in validation, so no training value.
    assert set(made) == {"jobs in Ho Chi Minh City", "jobs in San Francisco"}, made
    assert not any("Rome" in text for text in made)


@pytest.mark.parametrize("seed", range(5))
def test_random_patterns_keep_exact_spans(seed):
    rng = random.Random(seed)
    words = ["in", "at", "é", "🚀", "(", ")", ",", "!", "naïve", "x"]
    values = {"a": ["ß", "long value with spaces", "c++", "日本"], "b": ["1", "two words"]}
    patterns = []
    for _ in range(20):
        parts = []
        for _ in range(rng.randint(1, 4)):
            entity = rng.choice("ab")
            parts += [rng.choice(words), f"[{rng.choice(values[entity])}]({entity})"]
        patterns.append(" ".join(parts + [rng.choice(words)]))
    texts, spans = annotated(patterns)
    new_texts, new_spans = substitute(texts, spans, factor=2, seed=seed)
    assert new_texts
    for text, row in zip(new_texts, new_spans):
        ordered = sorted(row, key=lambda s: s.start)
        assert all(left.end <= right.start for left, right in zip(ordered, ordered[1:]))
        for span in row:
            assert text[span.start:span.end] in values[span.entity]
            assert span.value == text[span.start:span.end]


def test_a_value_is_never_replaced_by_itself_in_another_case():
    texts, spans = annotated(["[BERLIN](location) [python](skill) jobs",
                              "[berlin](location) [rust](skill) jobs"])
    types = validate_entities({"location": {"lookup": ["Berlin", "Paris"]},
                               "skill": {"lookup": ["java", "go", "c"]}}, "intents.json")
    values = type_values(texts, spans, types)
    assert values["location"] == ["BERLIN", "Berlin", "Paris", "berlin"]
    substituter = EntitySubstituter(values, types.canonical, factor=3, seed=0)
    new_texts, new_spans = substituter.substitute(texts, spans)
    assert len(new_texts) >= 4  # Paris with each skill: 5 texts at most
    assert {text[row[0].start:row[0].end] for text, row in zip(new_texts, new_spans)} == \
        {"Paris"}, new_texts


def test_draws_spread_over_a_large_lookup():
    lookup = [f"town{number}" for number in range(200_000)]
    texts, spans = annotated([f"jobs in [town{n}](location) for [me](who)" for n in range(300)])
    types = validate_entities({"location": {"lookup": lookup}}, "intents.json")
    new_texts, new_spans = EntitySubstituter(type_values(texts, spans, types), types.canonical,
                                             factor=2, seed=5).substitute(texts, spans)
    assert len(new_texts) == 600
    drawn = {text[row[0].start:row[0].end] for text, row in zip(new_texts, new_spans)}
    assert len(drawn) > 550 and drawn <= set(lookup)
    assert all(text[row[1].start:row[1].end] == "me" for text, row in zip(new_texts, new_spans))
