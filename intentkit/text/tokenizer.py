"""NLTK's word tokenizer without importing NLTK: `word_tokenize(text)` is
`nltk.word_tokenize(text, preserve_line=True)`, token for token.

Importing any part of NLTK (even `nltk.tokenize.destructive` alone) runs its package `__init__`,
which imports nearly all of NLTK, and with it scipy.stats and scikit-learn: over a second, most
of a serving process's cold start. The
tokenizer is 30 regular expressions, so they are copied here from nltk 3.10.4
(nltk/tokenize/destructive.py, `NLTKWordTokenizer.tokenize` without its options; Apache License
2.0, Copyright (C) 2001-2026 NLTK Project), compiled with the same engines: the `regex` module,
as nltk.redos does, and `re` for the contractions, as NLTK does. `word_tokenize` with
`preserve_line=True` splits no sentences, so Punkt is not needed. tests/test_text.py holds the
two to the same tokens on tricky sentences and on every pattern of the shipped data.
"""
import re

import regex

_U = regex.UNICODE

# Starting quotes.
_STARTING_QUOTES = [
    (regex.compile("([«“‘„]|[`]+)", _U), r" \1 "),
    (regex.compile(r"^\""), r"``"),
    (regex.compile(r"(``)"), r" \1 "),
    (regex.compile(r"([ \(\[{<])(\"|\'{2})"), r"\1 `` "),
    (regex.compile(r"(?i)(?<!\w)(\')(?!(?:re|ve|ll|m|t|s|d|n)\b)(?=\w)", _U), r"\1 "),
]

# Ending quotes.
_ENDING_QUOTES = [
    (regex.compile("([»”’])", _U), r" \1 "),
    (regex.compile(r"''"), " '' "),
    (regex.compile(r'"'), " '' "),
    (regex.compile(r"\s+"), " "),
    (regex.compile(r"([^' ])('[sS]|'[mM]|'[dD]|') "), r"\1 \2 "),
    (regex.compile(r"([^' ])('ll|'LL|'re|'RE|'ve|'VE|n't|N'T) "), r"\1 \2 "),
]

_PUNCTUATION = [
    (regex.compile(r'([^\.])(\.)([\]\)}>"\'' "»”’ " r"]*+)\s*$", _U), r"\1 \2 \3 "),
    (regex.compile(r"([:,])([^\d])"), r" \1 \2"),
    (regex.compile(r"([:,])$"), r" \1 "),
    (regex.compile(r"\.{2,}", _U), r" \g<0> "),
    (regex.compile(r"[;@#$%&]"), r" \g<0> "),
    (regex.compile(r"[\u2012-\u2015]", _U), r" \g<0> "),
    (regex.compile(r'([^\.])(\.)([\]\)}>"\']*)\s*$'), r"\1 \2\3 "),
    (regex.compile(r"[?!]"), r" \g<0> "),
    (regex.compile(r"([^'])' "), r"\1 ' "),
    (regex.compile(r"[*]", _U), r" \g<0> "),
]

_PARENS_BRACKETS = (regex.compile(r"[\]\[\(\)\{\}\<\>]"), r" \g<0> ")
_DOUBLE_DASHES = (regex.compile(r"--"), r" -- ")

# Contractions adapted from Robert MacIntyre's tokenizer (NLTK compiles these with `re`).
_CONTRACTIONS = [re.compile(pattern) for pattern in (
    r"(?i)\b(can)(?#X)(not)\b",
    r"(?i)\b(d)(?#X)('ye)\b",
    r"(?i)\b(gim)(?#X)(me)\b",
    r"(?i)\b(gon)(?#X)(na)\b",
    r"(?i)\b(got)(?#X)(ta)\b",
    r"(?i)\b(lem)(?#X)(me)\b",
    r"(?i)\b(more)(?#X)('n)\b",
    r"(?i)\b(wan)(?#X)(na)(?=\s)",
    r"(?i) ('t)(?#X)(is)\b",
    r"(?i) ('t)(?#X)(was)\b",
)]


def word_tokenize(text):
    """The tokens of `text`, as `nltk.word_tokenize(text, preserve_line=True)` gives them."""
    for pattern, substitution in _STARTING_QUOTES + _PUNCTUATION:
        text = pattern.sub(substitution, text)
    for pattern, substitution in (_PARENS_BRACKETS, _DOUBLE_DASHES):
        text = pattern.sub(substitution, text)
    text = " " + text + " "
    for pattern, substitution in _ENDING_QUOTES:
        text = pattern.sub(substitution, text)
    for pattern in _CONTRACTIONS:
        text = pattern.sub(r" \1 \2 ", text)
    return text.split()
