"""Which language a message is in, offline: the language guard's detector.

Lingua (`lingua-language-detector`, the optional `language` extra) in its low-accuracy mode,
restricted to LANGUAGES (plus the run's own language): its models ship inside the wheel, load
in about a second, and answer a short message in well under a millisecond (see
benchmarks/language_guard.py). A run records the language it was trained in (detected from its
training patterns, or given with `--language`); a message that Lingua gives confidently to
another language is sent to the fallback (`fallback_reason` "language", docs/explain.md).

Without the extra nothing fails: training records no language unless one is given, and a
Predictor answers without the guard, saying once in the log how to turn it on.
"""
import logging
import re
import threading
from collections import Counter
from functools import lru_cache

from ..errors import ConfigError

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'intentkit[language]' (lingua-language-detector)"
# The languages a message is told apart from, as ISO 639-1 codes: the most used on the web and
# in chat, in Latin, Cyrillic, Greek, Arabic, Hebrew, Devanagari and CJK scripts. Fewer
# languages load faster; a message in a language not listed usually goes to its nearest
# relative here, which is foreign all the same.
LANGUAGES = ("en", "fr", "de", "es", "it", "pt", "nl", "sv", "da", "nb", "fi", "pl", "cs",
             "ru", "uk", "tr", "ar", "he", "fa", "hi", "zh", "ja", "ko", "vi", "id", "ro",
             "hu", "el")
# A message counts as foreign when Lingua gives another language at least this confidence and
# it has at least MIN_WORDS words, fewer than half of them in the model's vocabulary. Chosen on
# the guard's benchmark: short English ("ok thanks", "bye") is where a detector errs, and a
# message mostly of words the model knows is the model's to answer.
FOREIGN_CONFIDENCE = 0.9
MIN_WORDS = 3
MAX_KNOWN_SHARE = 0.5
TRAINING_SAMPLE = 2000  # training patterns a run's language is detected from


def available():
    try:
        import lingua  # noqa: F401
    except ImportError:
        return False
    return True


_lock = threading.Lock()


@lru_cache(maxsize=8)
def _detector(codes):
    from lingua import IsoCode639_1, Language, LanguageDetectorBuilder
    languages = [Language.from_iso_code_639_1(getattr(IsoCode639_1, code.upper()))
                 for code in codes]
    return LanguageDetectorBuilder.from_languages(*languages).with_low_accuracy_mode() \
        .with_preloaded_language_models().build()


def _codes(extra=None):
    return tuple(sorted({*LANGUAGES, *([extra] if extra else [])}))


def check_code(code):
    """`code` lower-cased if it is an ISO 639-1 code (one Lingua knows, where it is installed),
    else ConfigError."""
    known = re.fullmatch(r"[A-Za-z]{2}", code or "") is not None
    if known and available():
        from lingua import IsoCode639_1
        known = hasattr(IsoCode639_1, code.upper())
    if not known:
        raise ConfigError(f"--language {code!r}: give an ISO 639-1 code such as en, fr or de")
    return code.lower()


class Detector:
    """Lingua restricted to LANGUAGES and `language` (thread-safe after construction)."""

    def __init__(self, language=None):
        if not available():
            raise ConfigError(f"language detection needs the language extra: {INSTALL_HINT}")
        with _lock:
            self._lingua = _detector(_codes(language))

    def detect(self, text):
        """(ISO 639-1 code, confidence 0-1) of the most likely language, or (None, 0.0)."""
        # Lingua takes UTF-8: a lone surrogate (valid in a Python str, not in UTF-8) becomes
        # "?" instead of an error that would take the answer down.
        text = text.encode("utf-8", "replace").decode("utf-8")
        values = self._lingua.compute_language_confidence_values(text)
        if not values or values[0].value <= 0:
            return None, 0.0
        best = values[0]
        return best.language.iso_code_639_1.name.lower(), float(best.value)

    def majority(self, texts):
        """The language most of `texts` are detected in (None if none is detected)."""
        counts = Counter(code for code, _ in map(self.detect, texts) if code)
        return counts.most_common(1)[0][0] if counts else None


def is_foreign(detected, confidence, language, words, known_words):
    """Whether a message of `words` words, `known_words` of them in the vocabulary, detected as
    `detected` with `confidence`, is confidently in another language than `language`."""
    return (language is not None and detected is not None and detected != language
            and confidence >= FOREIGN_CONFIDENCE and words >= MIN_WORDS
            and known_words < MAX_KNOWN_SHARE * words)


def training_language(texts, given=None, seed=0):
    """The run's language: `given` (checked), else detected from up to TRAINING_SAMPLE of the
    training patterns, else None (without the extra, with a warning)."""
    if given:
        return check_code(given)
    if not available():
        log.warning("the training language is not recorded, so the language guard stays off: "
                    "%s, or give --language", INSTALL_HINT)
        return None
    import random
    texts = list(texts)
    sample = random.Random(seed).sample(texts, min(len(texts), TRAINING_SAMPLE))
    detected = Detector().majority(sample)
    log.info("training language: %s (detected from %d patterns)", detected, len(sample))
    return detected
