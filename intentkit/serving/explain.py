"""Why a message got its answer: nearest training patterns, word effects, the fallback's rule.

`Predictor.explain(text)` (and `predict_intent_improved(..., explain=True)`, `intentkit
explain`, POST /explain, the page's "Explain" toggle) adds to the usual result an
"explanation":

- "nearest_patterns": the training patterns whose sentence embeddings (the run's encoder, stored
  in the run: artifacts.TrainingPatterns) are closest to the message's, with their intents and
  cosine similarity; [] for a run published without them;
- "words": each word of the message with its "effect", the answer's probability minus its
  probability with that word removed (occlusion), computed by the very models the answer came
  from, all variants in one forward call: removing a word of effect e moves the answer's
  probability down by exactly e (up, for a negative e);
- "fallback": for a fallback answer, the rule that fired (the result's "fallback_reason"), the
  threshold and margin in force, and the runner-up; None otherwise.

Nothing here runs unless asked: the Predictor imports this module on its first explain() call.
"""
import re
import threading

import numpy as np

from .. import artifacts
from ..errors import PretrainedUnavailable

# A word as a person reads it: letters/digits, with inner apostrophes ("don't", "o'clock").
WORD = re.compile(r"\w+(?:['\u2019]\w+)*")
# Longer messages have only their first words occluded: the forward call grows with each word.
MAX_WORDS = 64


def word_spans(text):
    """(start, end) of each word of `text`, in order, at most MAX_WORDS."""
    return [match.span() for match in WORD.finditer(text)][:MAX_WORDS]


def without(text, span):
    """`text` with the word at `span` removed (what the word's effect is measured on)."""
    start, end = span
    return text[:start] + text[end:]


class Explainer:
    """Explains a Predictor's answers; made by Predictor.explain on its first call."""

    def __init__(self, predictor):
        self.predictor = predictor
        self._lock = threading.Lock()
        self._patterns = self._encoder = None
        self._loaded = False
        self.unavailable = None  # why there are no nearest patterns, if there are none

    def _load_patterns(self):
        """The run's training patterns and the encoder that embedded them (once)."""
        with self._lock:
            if self._loaded:
                return
            patterns = self.predictor.run.read_training_patterns()
            if patterns is None:
                self.unavailable = "the run was published without its training patterns"
            else:
                encoder = self.predictor.run.encoder
                if encoder is None or encoder.sha256 != patterns.encoder_sha256:
                    from ..encoders.minilm import sentence_encoder
                    try:
                        encoder = sentence_encoder()
                    except PretrainedUnavailable as error:
                        encoder, self.unavailable = None, str(error)
                if encoder is not None and encoder.sha256 != patterns.encoder_sha256:
                    encoder, self.unavailable = None, (
                        "the training patterns were embedded by other encoder weights than "
                        "the installed ones")
                if encoder is not None:
                    self._patterns, self._encoder = patterns, encoder
            self._loaded = True

    def nearest(self, embedding, count):
        """The `count` training patterns nearest to a unit-length embedding."""
        similarities = self._patterns.vectors @ embedding
        count = min(count, len(similarities))
        top = np.argpartition(-similarities, count - 1)[:count] if count else []
        top = sorted(top, key=lambda row: -similarities[row])
        labels = self.predictor.labels
        return [{"text": self._patterns.texts[row],
                 "intent": labels[self._patterns.label_ids[row]],
                 "similarity": round(float(similarities[row]), 4)} for row in top]

    def explain(self, text, top_k, threshold, margin, neighbours):
        predictor = self.predictor
        if not isinstance(text, str):
            raise TypeError(f"text is {type(text).__name__}, not a string")
        threshold = predictor.threshold if threshold is None else threshold
        margin = predictor.margin if margin is None else margin
        # The variants are copies of the message: of the part the members read, so a megabyte
        # message costs what a short one does (issue 31) and gets the same answer.
        read = _read_part(predictor, text)
        spans = word_spans(read)
        texts = [read, *(without(read, span) for span in spans)]
        tokenized = predictor._tokenize(texts)
        features = predictor._features(texts, tokenized)
        # One forward call: the message and each of its variants without one word.
        probabilities = predictor._forward(features)
        answer = predictor.answer(text, tokenized[0], probabilities[0])
        result = predictor._result(answer, top_k, threshold, margin)
        best = int(np.argmax(probabilities[0]))
        effects = probabilities[0, best] - probabilities[1:, best]
        words = [{"word": text[start:end], "start": start, "end": end,
                  "effect": float(effect)} for (start, end), effect in zip(spans, effects)]
        result["explanation"] = {
            "answer": predictor.labels[best],
            "words": words,
            "nearest_patterns": self._nearest_patterns(text, features, neighbours),
            "fallback": _fallback(result, predictor, threshold, margin),
        }
        if self.unavailable:
            result["explanation"]["nearest_patterns_unavailable"] = self.unavailable
        return result

    def _nearest_patterns(self, text, features, count):
        self._load_patterns()
        if self._patterns is None:
            return []
        served = features.get(artifacts.SENTENCE_EMBEDDING)
        # The served members' embedding of the message, when made by the same encoder.
        embedding = (served[0] if served is not None and self.predictor.encoder is self._encoder
                     else self._encoder.embed([text])[0])
        return self.nearest(embedding, count)


def _read_part(predictor, text):
    """The start of `text` holding all that any member reads (TextPreprocessor.cut, the sentence
    encoder's tokenizer): answering it answers the whole text."""
    length = len(predictor.preprocessor.cut(text))
    if predictor.encoder is not None:
        length = max(length, predictor.encoder.tokenizer.chars_read)
    return text[:length]


def _fallback(result, predictor, threshold, margin):
    """The rule that sent the answer to the fallback, and the runner-up; None if it did not."""
    if not result["fallback"]:
        return None
    ranked = [{"intent": intent, "confidence": confidence}
              for intent, confidence in list(result["all_probabilities"].items())[:2]]
    return {"reason": result["fallback_reason"], "threshold": threshold, "margin": margin,
            "best_guess": ranked[0] if ranked else None,
            "runner_up": ranked[1] if len(ranked) > 1 else None,
            "language": result.get("language"), "run_language": predictor.language}
