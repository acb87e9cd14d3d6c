"""The text preprocessor that is pickled with the model: normalize, tokenize, index, pad.

Unlike the seed, it keeps stopwords (wh-words, negations and "can" carry intent), keeps numbers
("401k", "2 weeks"), maps unknown words to an OOV id instead of padding, and needs no NLTK
download: tokenization is NLTK's Treebank-style `word_tokenize` with `preserve_line=True`, which
needs no data (intentkit.text.tokenizer: the same tokens without importing NLTK), and lemmatization
uses WordNet only when `wordnet.wordnet()` finds it.
"""
import functools
import re
import unicodedata
from collections import Counter

import numpy as np

from . import wordnet
from .tokenizer import word_tokenize

PAD_ID, OOV_ID = 0, 1
OOV_TOKEN = "<oov>"

# Clitics the tokenizer splits off, spelled out so that "don't" and "do not" agree.
CLITICS = {"n't": "not", "'m": "am", "'re": "are", "'ve": "have", "'ll": "will", "'d": "would",
           "'s": None}
KEPT_PUNCTUATION = {"?", "!"}
_NOT_WORD = re.compile(r"[^\w\s'?!$%]")
# Lemmatizing very short words does more harm than good ("was" -> "wa", "has" -> "ha").
MIN_LEMMATIZED_LENGTH = 4
# A token the model reads takes at least one character and, with its separator, far fewer than
# this many in any message a person writes (the longest English words are ~30): the first
# max_sequence_length_ * CHARS_PER_TOKEN characters hold every token the model reads, so a
# megabyte message costs what a short one does (issue 31).
CHARS_PER_TOKEN = 32


@functools.lru_cache(maxsize=100_000)
def lemmatize(token):
    """Noun lemma, else verb lemma, of a token ("interviews" -> "interview", "applying" ->
    "apply")."""
    if len(token) < MIN_LEMMATIZED_LENGTH or not token.isalpha():
        return token  # without waiting for WordNet, which may still be loading
    reader = wordnet.wordnet()
    if reader is None:
        return token
    noun = reader.morphy(token, "n")
    if noun and noun != token:
        return noun
    return reader.morphy(token, "v") or noun or token


class TextPreprocessor:
    """Turns raw messages into fixed-length rows of token ids; fitted on training text only.

    Parameters
    ----------
    lemmatize : bool
        Lemmatize with WordNet when it is installed.
    length_percentile : float
        Sequences are cut at this percentile of training token counts (post-truncation)...
    min_length : int
        ...but never shorter than this.
    """

    def __init__(self, lemmatize=True, length_percentile=95, min_length=5):
        self.lemmatize = lemmatize
        self.length_percentile = length_percentile
        self.min_length = min_length

    def _words(self, text):
        """Normalized tokens before lemmatization."""
        text = unicodedata.normalize("NFKC", text).casefold().replace("\u2019", "'")
        text = _NOT_WORD.sub(" ", text)
        words = []
        for token in word_tokenize(text):
            token = CLITICS.get(token, token)
            if token is not None and (token in KEPT_PUNCTUATION
                                      or any(c.isalnum() for c in token)):
                words.append(token)
        return words

    def tokenize(self, text):
        words = self._words(text)
        if not self.uses_lemmas_:
            return words
        # Words seen in training need no WordNet at prediction time (it takes seconds to load).
        return [self.lemmas_.get(word) or lemmatize(word) for word in words]

    def fit(self, texts):
        self.uses_lemmas_ = self.lemmatize and wordnet.wordnet() is not None
        self.lemmas_ = {}
        if self.uses_lemmas_:
            self.lemmas_ = {word: lemmatize(word)
                            for word in {w for text in texts for w in self._words(text)}}
        tokenized = [self.tokenize(text) for text in texts]
        counts = Counter(token for tokens in tokenized for token in tokens)
        # Most frequent first, ties alphabetical, so the vocabulary is reproducible.
        ordered = sorted(counts, key=lambda token: (-counts[token], token))
        self.word_index_ = {token: index for index, token in enumerate(ordered, start=2)}
        lengths = [len(tokens) for tokens in tokenized] or [0]
        longest_kept = int(np.ceil(np.percentile(lengths, self.length_percentile)))
        self.max_sequence_length_ = max(self.min_length, longest_kept)
        return self

    @property
    def vocab_size(self):
        """Number of embedding rows: the vocabulary plus padding and OOV."""
        return len(self.word_index_) + 2

    def words(self):
        """The vocabulary in id order: "" for padding (0) and OOV (1), then each word."""
        words = [""] * self.vocab_size
        for word, index in self.word_index_.items():
            words[index] = word
        return words

    def cut(self, text):
        """The start of `text` that holds every token the fitted model reads: what to tokenize
        at prediction time, whatever the message's length."""
        return text[:self.max_sequence_length_ * CHARS_PER_TOKEN]

    def transform(self, texts):
        return self.encode([self.tokenize(text) for text in texts])

    def encode(self, tokenized):
        """Rows of token ids from already tokenized texts (lists of tokens)."""
        rows = np.zeros((len(tokenized), self.max_sequence_length_), dtype=np.int32)
        for row, tokens in enumerate(tokenized):
            ids = [self.word_index_.get(token, OOV_ID) for token in tokens]
            ids = ids[:self.max_sequence_length_]  # post-truncation
            rows[row, :len(ids)] = ids  # post-padding
        return rows
