"""Entity labellers: tokens and BIO tags, the CRF baseline, the MiniLM token head (NumPy forward
against Keras), saving, the extractor's lookup/synonym merge, and the entity scores."""
import random

import numpy as np
import pytest

from intentkit.data.annotations import Span, learned_synonyms, parse_pattern, validate_entities
from intentkit.evaluation.entities import entity_scores, micro_f1, whole_message_accuracy
from intentkit.models.entity_tagger import CrfTagger, TokenHeadTagger, bio_tags, decode, tokenize
from intentkit.serving.entities import EntityExtractor

CITIES = ["Berlin", "Paris", "London", "Madrid", "Rome", "Vienna", "Oslo", "Lisbon", "Prague",
          "Dublin", "Zürich", "São Paulo", "New York", "Tel Aviv"]
SKILLS = ["python", "java", "rust", "go", "c++", "sql", "kotlin", "scala", "react", "spark"]
TEMPLATES = ["find [{skill}](skill) jobs in [{city}](location)",
             "any [{skill}](skill) work around [{city}](location)?",
             "I want a job in [{city}](location), please!",
             "[{skill}](skill) developer roles",
             "what pays best in [{city}](location) for [{skill}](skill) people",
             "hello there"]


def _annotated(count, seed, cities=CITIES, skills=SKILLS):
    rng = random.Random(seed)
    parsed = [parse_pattern(rng.choice(TEMPLATES).format(city=rng.choice(cities),
                                                         skill=rng.choice(skills)))
              for _ in range(count)]
    return [p.text for p in parsed], [p.spans for p in parsed]


def test_bio_tags_decode_back_to_the_same_spans_with_punctuation_and_unicode():
    parsed = parse_pattern("¿[C++](skill) in [São Paulo](location)? [don't](x)… yes")
    tokens = tokenize(parsed.text)
    tags = bio_tags(tokens, parsed.spans)
    assert tags[:5] == ["O", "B-skill", "I-skill", "I-skill", "O"]
    entities = decode(parsed.text, tokens, tags, [1.0] * len(tags), "test")
    assert [(e["start"], e["end"], e["entity"], e["value"]) for e in entities] == \
        [(s.start, s.end, s.entity, parsed.text[s.start:s.end]) for s in parsed.spans]


def test_decode_starts_an_entity_at_a_stray_inside_tag():
    tokens = tokenize("in new york now")
    entities = decode("in new york now", tokens, ["O", "I-city", "I-city", "O"], [0.5] * 4, "t")
    assert [(e["value"], e["start"], e["end"]) for e in entities] == [("new york", 3, 11)]


def test_entity_scores_exact_span_and_type():
    true = [(Span(0, 4, "a", "x"), Span(5, 9, "b", "y")), (Span(0, 3, "a", "z"),)]
    predicted = [[{"start": 0, "end": 4, "entity": "a"}, {"start": 5, "end": 8, "entity": "b"}],
                 [{"start": 0, "end": 3, "entity": "b"}]]
    scores = entity_scores(true, predicted)
    assert scores["micro"] == {"precision": 0.3333, "recall": 0.3333, "f1": 0.3333, "support": 3}
    assert scores["per_type"]["a"] == {"precision": 1.0, "recall": 0.5, "f1": 0.6667,
                                       "support": 2}
    assert whole_message_accuracy(["i", "j"], ["i", "j"], true, [true[0], []]) == 0.5
    with pytest.raises(ValueError):
        entity_scores(true, predicted[:1])


def test_crf_finds_entities_it_was_not_shown():
    texts, spans = _annotated(150, seed=1)
    held_out_texts, held_out_spans = _annotated(40, seed=2, cities=["Hamburg", "Kyoto"],
                                                skills=["haskell", "elixir"])
    crf = CrfTagger().fit(texts, spans)
    assert entity_scores(held_out_spans, crf.predict(held_out_texts))["micro"]["f1"] > 0.8
    (found,) = crf.predict(["find rust jobs in Berlin"])
    assert [(e["entity"], e["value"], e["extractor"]) for e in found] == [
        ("skill", "rust", "crf"), ("location", "Berlin", "crf")]
    assert all(0 < e["confidence"] <= 1 for e in found)


@pytest.fixture(scope="module")
def head():
    """A token head trained on 120 synthetic rows (a minute or more on a busy 2-core CPU)."""
    from intentkit.encoders.minilm import SentenceEncoder
    texts, spans = _annotated(120, seed=3)
    val_texts, val_spans = _annotated(20, seed=4)
    return TokenHeadTagger(SentenceEncoder(backend="numpy"), epochs=12, patience=12,
                           units=16, word_dim=8).fit(texts, spans, val_texts, val_spans,
                                                     val_score=micro_f1)


@pytest.mark.slow
def test_token_head_learns_and_numpy_matches_keras(head):
    texts, spans = _annotated(30, seed=5, cities=["Hamburg", "Kyoto"], skills=["elixir"])
    assert entity_scores(spans, head.predict(texts))["micro"]["f1"] > 0.8
    rows = head._inputs(texts[:3])
    for row in rows:
        expected = head.keras_model.predict([row[1][None], row[2][None], row[3][None]],
                                            verbose=0)[0]
        got = head._network()(row[1][None], row[2][None], row[3][None])[0]
        np.testing.assert_allclose(got, expected, atol=1e-5)


@pytest.mark.slow
def test_token_head_saved_and_loaded_without_keras(head, tmp_path):
    head.save(tmp_path)
    loaded = TokenHeadTagger.load(tmp_path, head.encoder)
    texts = ["find rust jobs in Oslo", "", "hello there"]
    assert loaded.predict(texts) == head.predict(texts)
    assert loaded.predict([""]) == [[]]


def test_extractor_adds_lookup_matches_and_canonical_values():
    types = validate_entities({"company": {"lookup": ["Acme Corp", "Globex"]},
                               "location": {"synonyms": {"Berlin, DE": ["berlin"]}}}, "f.json")
    texts, spans = _annotated(150, seed=1)
    extra = parse_pattern('jobs in [the big apple]{"entity": "location", "value": "New York"}')
    synonyms = learned_synonyms(texts + [extra.text], spans + [extra.spans])
    extractor = EntityExtractor(CrfTagger(types).fit(texts, spans), types, synonyms)
    (found,) = extractor.extract(["find python jobs at globex in Berlin"])
    assert [(e["entity"], e["value"], e["extractor"]) for e in found] == [
        ("skill", "python", "crf"), ("company", "globex", "lookup"),
        ("location", "Berlin, DE", "crf")]
    assert synonyms == {("location", "the big apple"): "New York"}
    learned = EntityExtractor(extractor.tagger, types, {("location", "berlin"): "Berlin (DE)"})
    assert learned.extract(["find python jobs in Berlin"])[0][-1]["value"] == "Berlin (DE)"
    assert EntityExtractor().extract(["anything"]) == [[]]


@pytest.mark.slow
def test_long_and_hostile_messages_keep_valid_offsets(head):
    # Past the encoder's 256 word pieces the message is encoded in further windows.
    long_message = "find rust jobs in Oslo. " * 120
    crf = CrfTagger().fit(*_annotated(60, seed=6))
    hostile = "a" * 100_000
    for tagger in (head, crf):
        (found,) = tagger.predict([long_message])
        assert len(found) > 200  # of 240: the words past the first 256 pieces too
        assert all(long_message[e["start"]:e["end"]] == e["value"] for e in found)
        (found,) = tagger.predict([hostile])
        assert all((e["start"], e["end"], e["value"]) == (0, 100_000, hostile) for e in found)
