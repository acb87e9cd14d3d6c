"""Serving: a Predictor that loads the artifacts once and answers through a compiled graph.

Imports only the light layers (artifacts, text, models), never training code. Thread-safe:
TensorFlow graph calls are, and the per-path cache is guarded by a lock.
"""
import logging
import os
import threading
from pathlib import Path

import numpy as np
import tensorflow as tf

from . import artifacts

log = logging.getLogger(__name__)

DEFAULT_MODEL_PATH = f"filesTech/{artifacts.MODEL_FILE}"
DEFAULT_PREPROCESSOR_PATH = f"filesTech/{artifacts.PREPROCESSOR_FILE}"
DEFAULT_TOP_K = 3


def _signature(path):
    stat = os.stat(path)
    return stat.st_mtime_ns, stat.st_size


class Predictor:
    """Classifies messages with a trained model (or the ensemble) and a fallback threshold.

    Parameters
    ----------
    model_path, preprocessor_path : str or Path
        The `.h5` model and the pickle written by the same training run (trusted files only).
    use_ensemble : bool
        Average the members in `ensemble_dir` (default: `ensemble_models` beside the model).
    fallback_intent : str
        Returned as the intent when the answer is not confident enough.
    """

    def __init__(self, model_path=DEFAULT_MODEL_PATH, preprocessor_path=DEFAULT_PREPROCESSOR_PATH,
                 use_ensemble=False, ensemble_dir=None,
                 fallback_intent=artifacts.DEFAULT_FALLBACK_INTENT):
        self.model_path = Path(model_path)
        self.preprocessor_path = Path(preprocessor_path)
        self.use_ensemble = use_ensemble
        self.ensemble_dir = Path(ensemble_dir or self.model_path.parent / artifacts.ENSEMBLE_DIR)
        self.fallback_intent = fallback_intent
        self.model_type = "ensemble" if use_ensemble else "single"

        watched = [self.preprocessor_path, self.model_path]
        bundle = artifacts.load_preprocessor(self.preprocessor_path)
        if use_ensemble:
            spec_path = self.ensemble_dir / artifacts.ENSEMBLE_SPEC
            artifacts.check_model_file(bundle, self.preprocessor_path, spec_path,
                                       key="ensemble_sha256")
            spec = artifacts.read_ensemble_spec(self.ensemble_dir)
            members = []
            for member in spec["members"]:
                path = self.ensemble_dir / member["file"]
                artifacts.check_model_file(member, spec_path, path, key="sha256")
                members.append((artifacts.load_model(path), member["weight"]))
                watched.append(path)
        else:
            artifacts.check_model_file(bundle, self.preprocessor_path, self.model_path)
            members = [(artifacts.load_model(self.model_path), 1.0)]
        self.signatures = {path: _signature(path) for path in watched}
        self.preprocessor = bundle["preprocessor"]
        self.labels = [bundle["idx2label"][i] for i in range(len(bundle["idx2label"]))]
        self.threshold = bundle["fallback_thresholds"][self.model_type]

        @tf.function(input_signature=[tf.TensorSpec([None, bundle["max_sequence_length"]],
                                                     tf.int32)], reduce_retracing=True)
        def forward(token_ids):
            return tf.add_n([weight * model(token_ids, training=False)
                             for model, weight in members])

        self._forward = forward
        self._forward(tf.zeros([1, bundle["max_sequence_length"]], tf.int32))  # trace once now

    def is_stale(self):
        """True when any loaded file changed on disk since it was loaded."""
        try:
            return any(_signature(p) != s for p, s in self.signatures.items())
        except OSError:
            return True

    def predict_proba(self, texts):
        token_ids = self.preprocessor.transform(list(texts))
        return self._forward(tf.constant(token_ids)).numpy()

    def predict_batch(self, texts, top_k=DEFAULT_TOP_K, threshold=None):
        """One result dict per text; see `predict`."""
        texts = list(texts)
        for position, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"text {position} is {type(text).__name__}, not a string")
        threshold = self.threshold if threshold is None else threshold
        probabilities = self.predict_proba(texts) if texts else np.zeros((0, len(self.labels)))
        return [self._result(text, row, top_k, threshold)
                for text, row in zip(texts, probabilities)]

    def predict(self, text, top_k=DEFAULT_TOP_K, threshold=None):
        """{"intent", "confidence", "all_probabilities", "model_type", "top_k", "fallback"}.

        Below `threshold` (default: chosen on validation data at training time), or for input
        with no words at all, "intent" is the fallback intent and "top_k" lists the candidates.
        """
        return self.predict_batch([text], top_k, threshold)[0]

    def _result(self, text, probabilities, top_k, threshold):
        ranked = np.argsort(-probabilities)
        has_words = any(token.isalnum() for token in self.preprocessor.tokenize(text))
        best = int(ranked[0])
        confidence = float(probabilities[best])
        fallback = not has_words or confidence < threshold
        return {
            "intent": self.fallback_intent if fallback else self.labels[best],
            "confidence": confidence if has_words else 0.0,
            "all_probabilities": ({self.labels[i]: float(probabilities[i]) for i in ranked}
                                  if has_words else {}),
            "model_type": self.model_type,
            "top_k": ([{"intent": self.labels[i], "confidence": float(probabilities[i])}
                       for i in ranked[:top_k]] if has_words else []),
            "fallback": fallback,
        }


_cache = {}
_cache_lock = threading.Lock()


def get_predictor(model_path=DEFAULT_MODEL_PATH, preprocessor_path=DEFAULT_PREPROCESSOR_PATH,
                  use_ensemble=False):
    """The cached Predictor for these files, reloaded only when one of them changed on disk."""
    key = (os.path.abspath(model_path), os.path.abspath(preprocessor_path), bool(use_ensemble))
    predictor = _cache.get(key)
    if predictor is None or predictor.is_stale():
        with _cache_lock:
            predictor = _cache.get(key)
            if predictor is None or predictor.is_stale():
                predictor = Predictor(model_path, preprocessor_path, use_ensemble)
                _cache[key] = predictor
    return predictor


def error_result(message):
    return {"intent": "unknown", "confidence": 0.0, "all_probabilities": {},
            "model_type": "error", "error": message}


def predict_intent_improved(text, model_path=DEFAULT_MODEL_PATH,
                            preprocessor_path=DEFAULT_PREPROCESSOR_PATH, use_ensemble=False,
                            top_k=DEFAULT_TOP_K, threshold=None, strict=False):
    """Classify one message. Errors are logged and returned as model_type "error" with an
    "error" message (the seed's contract), or raised when strict=True."""
    try:
        if not isinstance(text, str):
            raise TypeError(f"text must be a string, not {type(text).__name__}")
        predictor = get_predictor(model_path, preprocessor_path, use_ensemble)
        return predictor.predict(text, top_k=top_k, threshold=threshold)
    except (artifacts.ArtifactError, TypeError, ValueError, OSError) as error:
        if strict:
            raise
        log.error("prediction failed: %s", error)
        return error_result(str(error))
