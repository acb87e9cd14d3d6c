"""The preprocessor keeps the words that carry intent and maps unknown words to OOV."""
import subprocess
import sys

import numpy as np
from conftest import ROOT

from intentkit.text import _NOT_WORD, OOV_ID, PAD_ID, TextPreprocessor, wordnet


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
    monkeypatch.setattr(wordnet, "_find_wordnet_root", lambda: None)
    wordnet.wordnet.cache_clear()
    try:
        assert preprocessor.tokenize("interviews applying") == ["interview", "apply"]
        assert preprocessor.tokenize("hiring") == ["hiring"]  # unseen: left as it is
    finally:
        wordnet.wordnet.cache_clear()


TRICKY = [
    "", "   ", "?!", "...", "Hello.", "Hello...", "U.S.A. and e.g. Mr. Smith's dog.",
    "I can't, won't and shouldn't; DON'T I'M WE'VE THEY'LL SHE'D",
    "gonna gimme lemme gotta wanna go, wanna. cannot d'ye more'n 'tis 'twas",
    "whaddya whatcha y'all o'clock rock 'n' roll", "'quoted' and ''doubled'' and ``ticks''",
    'He said "no." then "yes".', 'She said, "(really?)" [twice] {maybe} <tag>',
    "“curly” ‘single’ «chevrons» „low” it’s don’t", "$3.88 (roughly 3,36 euros) 50% of 401k",
    "email me@example.com #hashtag @user a&b a;b *stars* 1:2 a:b, a,b",
    "dashes -- — – ‒ ― and-hyphens", "tab\tnew\nline\r\nand \x1c separators\x1f",
    "café naïve nai\u0308ve ½ ² ௰ 東京 emoji 🙂 ZWJ a\u200db", "trailing period and spaces .   ",
    "a" + " " * 3000 + ".", "x" * 10_000, "end with quote.'", "end with bracket.)", "don't'",
    "'s 'm 'd 'll 're 've n't", "Ça va? ¿Qué tal? ¡Hola!", "what's 2+2=4 > 3 < 5 | pipes ^ ~",
]


def test_tokens_are_nltk_word_tokenize_s_without_importing_nltk():
    """intentkit.text.tokenizer copies NLTK's tokenizer: the same tokens, on tricky text, on every
    pattern of the shipped data and on what the preprocessor hands it (normalized text)."""
    from nltk.tokenize import word_tokenize as nltk_word_tokenize

    from intentkit.data.intents import load_intents
    from intentkit.text.tokenizer import word_tokenize
    texts = TRICKY + load_intents(ROOT / "filesTech" / "final.json").texts
    for text in texts + [_NOT_WORD.sub(" ", text.casefold()) for text in texts]:
        assert word_tokenize(text) == nltk_word_tokenize(text, preserve_line=True), text


def test_importing_the_predictor_imports_no_nltk_scipy_or_sklearn():
    """They took about 1 s of a serving process's cold start; WordNet imports NLTK when (and
    where) it loads, in a background thread."""
    code = ("import sys, intentkit.serving.predictor; print(sorted({m.split('.')[0] "
            "for m in sys.modules} & {'nltk', 'scipy', 'sklearn', 'tensorflow'}))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=ROOT, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
