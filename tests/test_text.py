"""The preprocessor keeps the words that carry intent and maps unknown words to OOV."""
import numpy as np

from intentkit import resources
from intentkit.text import OOV_ID, PAD_ID, TextPreprocessor


def test_keeps_wh_words_negations_and_numbers():
    tokens = TextPreprocessor(lemmatize=False).fit(["x"]).tokenize(
        "What's my 401k? I don't have 2 weeks, how NOT to call!")
    for word in ("what", "401k", "?", "not", "2", "weeks", "how", "call", "!"):
        assert word in tokens
    assert "," not in tokens and "'s" not in tokens


def test_unknown_words_are_oov_not_padding_and_sequences_are_post_padded():
    preprocessor = TextPreprocessor(lemmatize=False, min_length=6).fit(["find a job", "hi"])
    row = preprocessor.transform(["find a zebra job"])[0]
    index = preprocessor.word_index_
    assert list(row) == [index["find"], index["a"], OOV_ID, index["job"], PAD_ID, PAD_ID]


def test_length_is_percentile_of_training_lengths_and_truncates_at_the_end():
    texts = ["a b c d e f g h"] * 19 + ["a"]
    preprocessor = TextPreprocessor(lemmatize=False, length_percentile=95, min_length=2).fit(texts)
    assert preprocessor.max_sequence_length_ == 8
    assert preprocessor.transform(["a b c d e f g h i j"]).shape == (1, 8)


def test_vocabulary_is_deterministic_and_counts_padding_and_oov():
    texts = ["b a", "a c", "c a"]
    first = TextPreprocessor(lemmatize=False).fit(texts)
    assert first.word_index_ == TextPreprocessor(lemmatize=False).fit(texts[::-1]).word_index_
    assert first.word_index_["a"] == 2 and first.vocab_size == 5
    assert np.array_equal(first.transform(texts), first.transform(texts))


def test_lemmatizes_with_wordnet():
    preprocessor = TextPreprocessor().fit(["interviews"])
    assert preprocessor.uses_lemmas_
    assert preprocessor.tokenize("Applying for interviews") == ["apply", "for", "interview"]


def test_training_words_keep_their_lemmas_without_loading_wordnet(monkeypatch):
    preprocessor = TextPreprocessor().fit(["Applying for interviews"])
    monkeypatch.setattr(resources, "_find_wordnet_root", lambda: None)
    resources.wordnet.cache_clear()
    try:
        assert preprocessor.tokenize("interviews applying") == ["interview", "apply"]
        assert preprocessor.tokenize("hiring") == ["hiring"]  # unseen: left as it is
    finally:
        resources.wordnet.cache_clear()
