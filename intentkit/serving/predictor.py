"""Serving: a Predictor that loads the artifacts once and answers through a compiled path.

Two runtimes, with the same answers: "keras" (default) runs the models through a `tf.function`;
"numpy" runs them with NumPy alone (intentkit.models.numpy_runtime) and never imports TensorFlow,
for a
cold start of a fraction of a second. Imports only the light layers (artifacts, text, models,
pretrained), never training code. An ensemble member that reads sentence embeddings gets them
from the pretrained encoder (intentkit.encoders.minilm: ONNX Runtime where the `onnx` extra is
installed, else NumPy) in both runtimes. Thread-safe: both forward paths are, and the cache is
guarded by a lock.
"""
import logging
import os
import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np

from .. import artifacts
from ..errors import ArtifactError, ArtifactMismatch
from ..text import wordnet
from . import review

log = logging.getLogger(__name__)

DEFAULT_MODEL_PATH = f"{artifacts.DEFAULT_DIR}/{artifacts.MODEL_FILE}"
DEFAULT_PREPROCESSOR_PATH = f"{artifacts.DEFAULT_DIR}/{artifacts.PREPROCESSOR_FILE}"
DEFAULT_TOP_K = 3
RUNTIMES = ("keras", "numpy")
DEFAULT_CACHE_SIZE = 10_000  # recent messages whose answers are kept (~3 MiB with 30 intents)
# Repeats worth caching are short ("hi", "yes", "thanks"); a long text is rarely sent twice and
# would make the cache's memory depend on message length rather than on its size.
MAX_CACHED_CHARS = 500
STREAM_CHUNK = 1000  # messages answered together by predict_stream
STREAM_WORKERS = min(2, os.cpu_count() or 1)


def model_type_of(use_ensemble):
    """use_ensemble True/False forces the ensemble/the single model (the seed's contract);
    None leaves the choice to the run (its default: the best on validation)."""
    return None if use_ensemble is None else artifacts.ENSEMBLE if use_ensemble else \
        artifacts.SINGLE


class MessageCache:
    """A bounded, thread-safe LRU of answers keyed by the exact message text.

    Each entry is (has_words, probabilities), what an answer is built from, so calls with other
    top_k, threshold or margin share it. A Predictor owns one: a reloaded model is a new
    Predictor, hence an empty cache. `size` 0 turns it off."""

    def __init__(self, size):
        if size < 0:
            raise ValueError(f"cache size must be >= 0, not {size}")
        self.size = size
        self.hits = self.misses = 0
        self._entries = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self):
        return len(self._entries)

    def get_many(self, texts):
        """The cached entry of each text, or None."""
        with self._lock:
            found = [self._entries.get(text) for text in texts]
            for text, entry in zip(texts, found):
                if entry is not None:
                    self._entries.move_to_end(text)
            hits = sum(entry is not None for entry in found)
            self.hits += hits
            self.misses += len(found) - hits
        return found

    def put_many(self, entries):
        """Adds {text: entry}, evicting the least recently used beyond `size`."""
        if not self.size:
            return
        with self._lock:
            for text, entry in entries.items():
                if len(text) <= MAX_CACHED_CHARS:
                    self._entries[text] = entry
                    self._entries.move_to_end(text)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)


class Predictor:
    """Classifies messages with a trained run's model and its fallback threshold.

    Parameters
    ----------
    model_path, preprocessor_path : str or Path
        The `.h5` model and the pickle written by the same training run (verified on load).
    use_ensemble : bool or None
        True: the ensemble in `ensemble_dir` (default: `ensemble_models` beside the model);
        False: the single model; None (default): the one that scored best on validation.
    fallback_intent : str
        Returned as the intent when the answer is not confident enough.
    runtime : "keras" or "numpy"
        How the models run; "numpy" needs no TensorFlow import (same answers, checked in tests).
    cache_size : int
        How many recent messages' answers to keep (MessageCache); 0: none.
    cache_factory : callable or None
        scope -> a cache with MessageCache's interface, for a cache outside this process
        (intentkit.serving.cache_redis); the scope names the model version, so versions never share.
    """

    def __init__(self, model_path: str | os.PathLike = DEFAULT_MODEL_PATH,
                 preprocessor_path: str | os.PathLike = DEFAULT_PREPROCESSOR_PATH,
                 use_ensemble: bool | None = None, ensemble_dir: str | os.PathLike | None = None,
                 fallback_intent: str = artifacts.DEFAULT_FALLBACK_INTENT, runtime: str = "keras",
                 cache_size: int = DEFAULT_CACHE_SIZE,
                 cache_factory: Callable[[str], Any] | None = None) -> None:
        if runtime not in RUNTIMES:
            raise ValueError(f"runtime must be one of {RUNTIMES}, not {runtime!r}")
        # A published run is read through links into `.runs/current`, which a retrain switches
        # in one rename. Resolved once here, every file comes from the same run directory, even
        # when the switch happens while they are read; `is_stale` sees a later switch.
        given = (model_path, preprocessor_path,
                 ensemble_dir or os.path.join(os.path.dirname(model_path), artifacts.ENSEMBLE_DIR))
        resolved = [os.path.realpath(path) for path in given]
        # What each given path led to (a missing ensemble directory is left out).
        self.identities = {path: _identity(real) for path, real in zip(given, resolved)
                           if os.path.exists(real)}
        model_file, preprocessor_file, members_dir = resolved
        run = artifacts.Run.open(model_file, preprocessor_file, members_dir,
                                 model_type_of(use_ensemble))
        self.model_type = (run.default_model if use_ensemble is None
                           else model_type_of(use_ensemble))
        self.fallback_intent = fallback_intent
        self.runtime = runtime
        self.signatures = run.signatures
        self.run_info = run.run_info  # the model's version
        # A member whose fitted weight is 0 cannot change an answer: it is neither loaded nor
        # run, nor is the encoder when no member left reads sentence embeddings.
        counted = [m for m in run.members(self.model_type) if m.weight > 0]
        reads_embeddings = any(m.input == artifacts.SENTENCE_EMBEDDING for m in counted)
        self.encoder = run.encoder if reads_embeddings else None
        self.preprocessor = run.preprocessor
        if self.preprocessor.uses_lemmas_:
            # WordNet (seconds to load) only lemmatizes words unseen in training: load it in the
            # background instead of on the first request that needs it.
            threading.Thread(target=wordnet.wordnet, daemon=True).start()
        self.labels = run.labels
        self.threshold = run.fallback_thresholds[self.model_type]
        self.margin = run.fallback_margin
        load = _numpy_loader() if runtime == "numpy" else artifacts.load_model
        members = [(load(m.path), m.weight, m.input) for m in counted]
        self._forward = (_numpy_forward(members) if runtime == "numpy"
                         else _compiled_forward(members, run.preprocessor.max_sequence_length_))
        self._forward(self._features([""], [[]]))  # warm up now
        self.cache = (MessageCache(cache_size) if cache_factory is None
                      else cache_factory(self.version_scope(run)))

    def version_scope(self, run):
        """What identifies this model's answers: its run and the model type answering."""
        version = self.run_info["run"] or run.manifest["manifest_sha256"][:16]
        return f"{version}:{self.model_type}"

    @classmethod
    def from_dir(cls, model_dir: str | os.PathLike = artifacts.DEFAULT_DIR,
                 version: str | None = None, **options: Any) -> "Predictor":
        """The Predictor of the run published in `model_dir` (what `intentkit train --out` or
        `python jobs.py` wrote), verified on load; `version`: one of its runs by id (default:
        the live one); `options` as for the constructor.

        >>> Predictor.from_dir("filesTech").predict("how much does a data engineer make")"""
        model_dir = Path(model_dir)
        if version is not None:  # a run id of `intentkit runs list`, or "current"
            from ..artifacts import runs
            model_dir = runs.run_directory(model_dir, version)
        if not model_dir.is_dir():
            raise ArtifactError(f"{model_dir}: no such directory; give the directory a run was "
                                "published to (`intentkit train --out DIR`).")
        return cls(model_dir / artifacts.MODEL_FILE, model_dir / artifacts.PREPROCESSOR_FILE,
                   ensemble_dir=model_dir / artifacts.ENSEMBLE_DIR, **options)

    def is_stale(self) -> bool:
        """True when any loaded file changed on disk since it was loaded, or a path given
        now leads to another file (a retrain published another run)."""
        try:
            return (any(_identity(p) != i for p, i in self.identities.items())
                    or any(artifacts.file_signature(p) != s for p, s in self.signatures.items()))
        except OSError:
            return True

    def _features(self, texts, tokenized):
        """Each member's input: token ids, and sentence embeddings if a member reads them."""
        features = {artifacts.TOKEN_IDS: self.preprocessor.encode(tokenized)}
        if self.encoder is not None:
            features[artifacts.SENTENCE_EMBEDDING] = self.encoder.embed(texts)
        return features

    def predict_proba(self, texts: Iterable[str]) -> np.ndarray:
        texts = list(texts)
        return self._forward(self._features(texts, [self.preprocessor.tokenize(t) for t in texts]))

    def predict_batch(self, texts: Iterable[str], top_k: int = DEFAULT_TOP_K,
                      threshold: float | None = None,
                      margin: float | None = None) -> list[dict[str, Any]]:
        """One result dict per text; see `predict`."""
        texts = list(texts)
        for position, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"text {position} is {type(text).__name__}, not a string")
        threshold = self.threshold if threshold is None else threshold
        margin = self.margin if margin is None else margin
        results = [self._result(has_words, row, top_k, threshold, margin)
                   for has_words, row in self._answers(texts)]
        review.record_uncertain(texts, results)  # the opt-in review queue
        return results

    def _answers(self, texts):
        """(has_words, probabilities) of each text: cached ones from the cache, the others from
        one forward pass over the distinct texts missing."""
        found = self.cache.get_many(texts)
        missing = list(dict.fromkeys(t for t, entry in zip(texts, found) if entry is None))
        if not missing:
            return found
        tokenized = [self.preprocessor.tokenize(text) for text in missing]  # once per message
        probabilities = self._forward(self._features(missing, tokenized))
        # Copies: a view would keep the whole batch's array alive in the cache.
        computed = {text: (any(token.isalnum() for token in tokens), row.copy())
                    for text, tokens, row in zip(missing, tokenized, probabilities)}
        self.cache.put_many(computed)
        return [entry if entry is not None else computed[text]
                for text, entry in zip(texts, found)]

    def predict_stream(self, texts: Iterable[str], top_k: int = DEFAULT_TOP_K,
                       threshold: float | None = None, margin: float | None = None,
                       chunk_size: int = STREAM_CHUNK,
                       workers: int = STREAM_WORKERS) -> Iterator[dict[str, Any]]:
        """`predict_batch` over an iterable of any length, yielding results in input order.

        Reads `chunk_size` texts at a time and answers up to `workers` chunks at once (the
        forward passes release the GIL, so two workers use two cores): memory holds at most
        workers + 1 chunks, whatever the input's length."""
        texts = iter(texts)
        with ThreadPoolExecutor(workers) as pool:
            pending: deque[Future[list[dict[str, Any]]]] = deque()
            while chunk := list(islice(texts, chunk_size)):
                pending.append(pool.submit(self.predict_batch, chunk, top_k, threshold, margin))
                if len(pending) == workers:
                    yield from pending.popleft().result()
            while pending:
                yield from pending.popleft().result()

    def predict(self, text: str, top_k: int = DEFAULT_TOP_K, threshold: float | None = None,
                margin: float | None = None) -> dict[str, Any]:
        """{"intent", "confidence", "all_probabilities", "model_type", "top_k", "fallback"}.

        "intent" is the fallback intent, with the candidates in "top_k", when the confidence is
        below `threshold` (default: chosen on validation data at training time), when the top
        two are closer than `margin` (default: the trained setting), or when the input has no
        words at all.
        """
        return self.predict_batch([text], top_k, threshold, margin)[0]

    def _result(self, has_words, probabilities, top_k, threshold, margin):
        ranked = np.argsort(-probabilities)
        best = int(ranked[0])
        confidence = float(probabilities[best])
        runner_up = float(probabilities[ranked[1]]) if len(ranked) > 1 else 0.0
        fallback = not has_words or confidence < threshold or confidence - runner_up < margin
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


def _identity(path):
    """Which file or directory `path` leads to, through any links."""
    stat = os.stat(path)
    return stat.st_dev, stat.st_ino


def _numpy_loader():
    from ..models.numpy_runtime import load_numpy_model
    return load_numpy_model


def _numpy_forward(members):
    from ..encoders.minilm import one_blas_thread

    def forward(features):
        # The members' matrices are small: BLAS threads would only wait on each other.
        with one_blas_thread():
            return sum(weight * model(features[kind]) for model, weight, kind in members)
    return forward


def _compiled_forward(members, max_length):
    """One tf.function over all members: ~2 ms a call instead of ~40 ms for model.predict."""
    from ..encoders.minilm import HIDDEN
    from ..runtime import import_tensorflow_quietly
    import_tensorflow_quietly()
    import tensorflow as tf

    specs = {artifacts.TOKEN_IDS: tf.TensorSpec([None, max_length], tf.int32),
             artifacts.SENTENCE_EMBEDDING: tf.TensorSpec([None, HIDDEN], tf.float32)}
    kinds = sorted({kind for _, _, kind in members})

    @tf.function(input_signature=[{kind: specs[kind] for kind in kinds}],
                 reduce_retracing=True)
    def compiled(features):
        return tf.add_n([weight * model(features[kind], training=False)
                         for model, weight, kind in members])

    def forward(features):
        return compiled({kind: tf.constant(features[kind]) for kind in kinds}).numpy()
    return forward


_cache: dict[tuple, Predictor] = {}
_cache_lock = threading.Lock()


def _load_consistent(model_path, preprocessor_path, use_ensemble, runtime, cache_size,
                     cache_factory=None, attempts=3):
    """A Predictor whose files all come from one run: reading them can straddle the instant a
    retrain switches runs, and a second read then sees the new set whole. Only a mismatch
    between files is retried; a file that is simply missing or damaged fails at once."""
    for attempt in range(attempts):
        try:
            return Predictor(model_path, preprocessor_path, use_ensemble, runtime=runtime,
                             cache_size=cache_size, cache_factory=cache_factory)
        except ArtifactMismatch:
            if attempt == attempts - 1:
                raise


def get_predictor(model_path: str | os.PathLike = DEFAULT_MODEL_PATH,
                  preprocessor_path: str | os.PathLike = DEFAULT_PREPROCESSOR_PATH,
                  use_ensemble: bool | None = None, runtime: str = "keras",
                  cache_size: int = DEFAULT_CACHE_SIZE,
                  cache_factory: Callable[[str], Any] | None = None) -> Predictor:
    """The cached Predictor for these files, reloaded only when one of them changed on disk
    (with an empty message cache: answers of the old model are not served after a reload).
    `cache_factory`: see Predictor (one per process and settings, e.g. per Redis URL).

    While a retrain is replacing the files, the new set can be incomplete for a moment; the
    model already loaded then keeps answering until the new set loads cleanly.
    """
    key = (os.path.abspath(model_path), os.path.abspath(preprocessor_path), use_ensemble, runtime,
           cache_size, cache_factory)
    predictor = _cache.get(key)
    if predictor is None or predictor.is_stale():
        with _cache_lock:
            predictor = _cache.get(key)
            if predictor is None or predictor.is_stale():
                try:
                    _cache[key] = _load_consistent(model_path, preprocessor_path, use_ensemble,
                                                   runtime, cache_size, cache_factory)
                except (ArtifactError, OSError) as error:
                    # OSError: a file vanished while being read (an older run being removed).
                    if predictor is None:
                        raise
                    log.warning("keeping the loaded model: the files on disk changed but do "
                                "not load (%s)", error)
                    return predictor
                predictor = _cache[key]
    return predictor


def error_result(message):
    return {"intent": "unknown", "confidence": 0.0, "all_probabilities": {},
            "model_type": "error", "error": message}


def predict_intent_improved(text: str, model_path: str | os.PathLike = DEFAULT_MODEL_PATH,
                            preprocessor_path: str | os.PathLike = DEFAULT_PREPROCESSOR_PATH,
                            use_ensemble: bool | None = None, top_k: int = DEFAULT_TOP_K,
                            threshold: float | None = None, margin: float | None = None,
                            strict: bool = False, runtime: str = "keras") -> dict[str, Any]:
    """Classify one message with the run's best model (use_ensemble=True/False forces the
    ensemble/the single model). Errors are logged and returned as model_type "error" with an
    "error" message (the seed's contract), or raised when strict=True. runtime="numpy" answers
    the same without importing TensorFlow."""
    try:
        if not isinstance(text, str):
            raise TypeError(f"text must be a string, not {type(text).__name__}")
        predictor = get_predictor(model_path, preprocessor_path, use_ensemble, runtime)
        return predictor.predict(text, top_k=top_k, threshold=threshold, margin=margin)
    except Exception as error:  # the contract: a chatbot's message loop never sees a crash
        if strict:
            raise
        log.error("prediction failed: %s: %s", type(error).__name__, error)
        return error_result(str(error))
