"""Serving: a Predictor that loads the artifacts once and answers through a compiled path.

Two runtimes, with the same answers: "numpy" runs the models with NumPy alone
(intentkit.models.numpy_runtime) and never imports TensorFlow, for a cold start of a fraction of
a second; "keras" runs them through a `tf.function`. "auto" (the default) is NumPy wherever the
NumPy runtime supports every layer of the run, else Keras. Imports only the light layers
(artifacts, text, models, encoders), never training code. An ensemble member that reads
sentence embeddings gets them from the pretrained encoder (intentkit.encoders.minilm: ONNX
Runtime where the `onnx` extra is installed, else NumPy) in both runtimes. Thread-safe: both
forward paths are, and the cache is guarded by a lock.
"""
import logging
import os
import random
import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import islice
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from .. import artifacts
from ..errors import ArtifactError, ArtifactMismatch
from ..text import wordnet
from . import review
from .entities import load_entities

log = logging.getLogger(__name__)

DEFAULT_MODEL_PATH = f"{artifacts.DEFAULT_DIR}/{artifacts.MODEL_FILE}"
DEFAULT_PREPROCESSOR_PATH = f"{artifacts.DEFAULT_DIR}/{artifacts.PREPROCESSOR_FILE}"
DEFAULT_TOP_K = 3
RUNTIMES = ("auto", "numpy", "keras")
DEFAULT_RUNTIME = "auto"
RESPONSE_CHOICES = ("random", "round-robin")  # how `response` picks among an intent's responses
DEFAULT_CACHE_SIZE = 10_000  # recent messages whose answers are kept (~3 MiB with 30 intents)
# Repeats worth caching are short ("hi", "yes", "thanks"); a long text is rarely sent twice and
# would make the cache's memory depend on message length rather than on its size.
MAX_CACHED_CHARS = 500
STREAM_CHUNK = 1000  # messages answered together by predict_stream
STREAM_WORKERS = min(2, os.cpu_count() or 1)


# Why an answer is the fallback intent ("fallback_reason"; docs/explain.md), in the order the
# rules are tried: the first that holds is the reason.
NO_WORDS = "no_words"  # nothing to classify: no letter or digit
LANGUAGE = "language"  # confidently in another language than the run's (intentkit.text.language)
NO_KNOWN_WORDS = "no_known_words"  # not one word of the model's vocabulary...
# ...among at least this many: a single unknown word ("kudos", "ttyl") is left to the model,
# whose sentence-embedding member may well know it (3.3 % of the shipped test split were such
# words, docs/explain.md).
NO_KNOWN_WORDS_MIN = 2
THRESHOLD = "threshold"  # the confidence is below the fallback threshold
MARGIN = "margin"  # the top two are closer than the fallback margin
FALLBACK_REASONS = (NO_WORDS, LANGUAGE, NO_KNOWN_WORDS, THRESHOLD, MARGIN)


class Answer(NamedTuple):
    """What a message's results are built from (cached per message text)."""
    has_words: bool
    probabilities: np.ndarray
    words: int = 0  # tokens with a letter or digit
    known_words: int = 0  # ...of them in the model's vocabulary
    language: str | None = None  # ISO 639-1 code, with the language guard on
    language_confidence: float = 0.0
    entities: tuple = ()  # the message's entities (serving.entities), answer dicts
    rule: str | None = None  # the intent of the first intent rule matching the message


def model_type_of(use_ensemble):
    """use_ensemble True/False forces the ensemble/the single model (the seed's contract);
    None leaves the choice to the run (its default: the best on validation)."""
    return None if use_ensemble is None else artifacts.ENSEMBLE if use_ensemble else \
        artifacts.SINGLE


class MessageCache:
    """A bounded, thread-safe LRU of answers keyed by the exact message text.

    Each entry is an Answer, what a result is built from, so calls with other
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


class ResponsePicker:
    """One of an intent's responses per answer: at random (seeded by `seed`, for tests) or in
    turn ("round-robin"). Thread-safe."""

    def __init__(self, responses, fallback_responses=(), fallback_intent="fallback",
                 choice="random", seed=None):
        if choice not in RESPONSE_CHOICES:
            raise ValueError(f"response choice must be one of {RESPONSE_CHOICES}, not {choice!r}")
        self.responses = {tag: list(texts) for tag, texts in responses.items() if texts}
        if fallback_responses:
            self.responses[fallback_intent] = list(fallback_responses)
        self.choice = choice
        self._random = random.Random(seed)
        self._turns = {}
        self._lock = threading.Lock()

    def pick(self, intent):
        """A response of `intent`, or None when it has none (the fallback, unless the file gave
        fallback responses)."""
        options = self.responses.get(intent)
        if not options:
            return None
        with self._lock:
            if self.choice == "random":
                return self._random.choice(options)
            turn = self._turns.get(intent, 0)
            self._turns[intent] = turn + 1
            return options[turn % len(options)]


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
    runtime : "auto", "numpy" or "keras"
        How the models run; "numpy" needs no TensorFlow import (same answers, checked in tests);
        "auto" (default): NumPy where it supports the run's layers, else Keras.
    cache_size : int
        How many recent messages' answers to keep (MessageCache); 0: none.
    response_choice : "random" or "round-robin"
        How each result's "response" is picked among the intent's responses.
    response_seed : int or None
        Seeds the random choice (tests, reproducible demos).
    language_guard : bool
        Send messages confidently in another language than the run's to the fallback (needs
        the run's recorded language and the `language` extra; see intentkit.text.language).
    cache_factory : callable or None
        scope -> a cache with MessageCache's interface, for a cache outside this process
        (intentkit.serving.cache_redis); the scope names the model version, so versions never
        share answers.
    """

    def __init__(self, model_path: str | os.PathLike = DEFAULT_MODEL_PATH,
                 preprocessor_path: str | os.PathLike = DEFAULT_PREPROCESSOR_PATH,
                 use_ensemble: bool | None = None, ensemble_dir: str | os.PathLike | None = None,
                 fallback_intent: str = artifacts.DEFAULT_FALLBACK_INTENT,
                 runtime: str = DEFAULT_RUNTIME, cache_size: int = DEFAULT_CACHE_SIZE,
                 response_choice: str = "random", response_seed: int | None = None,
                 language_guard: bool = True,
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
        self.responses = ResponsePicker(run.responses, run.fallback_responses, fallback_intent,
                                        response_choice, response_seed)
        self.examples = run.examples  # a few training patterns per intent
        self.signatures = run.signatures
        self.run_info = run.run_info  # the model's version
        self.run = run  # read again only to explain (its training patterns, on demand)
        self.language = run.language
        # The run's entity extractor (None without entities) and intent rules.
        self.entities, self.rules = load_entities(run)
        self.language_detector = _language_detector(run.language) if language_guard else None
        self._explainer: Any = None  # an Explainer, made by the first explain() call
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
        members = None
        if runtime in ("auto", "numpy"):
            try:
                members = [(_numpy_loader()(m.path), m.weight, m.input) for m in counted]
                runtime = "numpy"
            except NotImplementedError as error:
                if runtime == "numpy":
                    raise ArtifactError(f"{model_path}: the NumPy runtime cannot run this model "
                                        f"({error}); use --runtime keras") from None
                log.info("Keras runtime: the NumPy runtime cannot run this model (%s)", error)
                runtime = "keras"
        self.runtime = runtime  # the one answering: "numpy" or "keras"
        if runtime == "numpy":
            self._forward = _numpy_forward(members)
        else:
            members = [(artifacts.load_model(m.path), m.weight, m.input) for m in counted]
            self._forward = _compiled_forward(members, run.preprocessor.max_sequence_length_)
        self._forward(self._features([""], [[]]))  # warm up now
        self.cache = (MessageCache(cache_size) if cache_factory is None
                      else cache_factory(self.version_scope(run)))
        review.configured()  # a bad review-queue setting is an error now, not per message

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
        return self._forward(self._features(texts, self._tokenize(texts)))

    def _tokenize(self, texts):
        """The preprocessor's tokens of each text, from the part of it the model reads."""
        return [self.preprocessor.tokenize(self.preprocessor.cut(text)) for text in texts]

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
        results = [self._result(answer, top_k, threshold, margin)
                   for answer in self._answers(texts)]
        review.record_uncertain(texts, results)  # the opt-in review queue
        return results

    def _answers(self, texts):
        """The Answer of each text: cached ones from the cache, the others from one forward pass
        over the distinct texts missing."""
        found = self.cache.get_many(texts)
        missing = list(dict.fromkeys(t for t, entry in zip(texts, found) if entry is None))
        if not missing:
            return found
        tokenized = self._tokenize(missing)  # once per message
        probabilities = self._forward(self._features(missing, tokenized))
        # Copies: a view would keep the whole batch's array alive in the cache.
        computed = {text: self.answer(text, tokens, row.copy())
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
        """{"intent", "confidence", "all_probabilities", "model_type", "top_k", "fallback",
        "response", "fallback_reason", "language", "entities"}.

        "entities": [{"entity", "value", "start", "end", "confidence", "extractor"}] (Rasa's
        keys; character offsets into `text`, end exclusive; "value" the synonym's canonical
        form), [] for a run trained without entities. A message matching an intent rule of the
        data file ("rules") gets the rule's intent, confidence 1 and "model_type": "rule".

        "response" is one of the intent's responses from the intents file (None when it has
        none; for the fallback intent, one of the file's "fallback_responses" if it gave any).

        "intent" is the fallback intent, with the candidates in "top_k", when the confidence is
        below `threshold` (default: chosen on validation data at training time), when the top
        two are closer than `margin` (default: the trained setting), or when the input has no
        words at all.
        """
        return self.predict_batch([text], top_k, threshold, margin)[0]

    def answer(self, text, tokens, probabilities):
        """The Answer of `text`, tokenized as `tokens`, whose probabilities are given."""
        words = [token for token in tokens if any(c.isalnum() for c in token)]
        known = sum(word in self.preprocessor.word_index_ for word in words)
        # From the part of the message the models read, like `tokens`: Lingua takes seconds
        # over 100 KB.
        language, confidence = (self.language_detector.detect(self.preprocessor.cut(text))
                                if self.language_detector and words else (None, 0.0))
        entities = tuple(self.entities.extract([text])[0]) if self.entities else ()
        return Answer(any(token.isalnum() for token in tokens), probabilities, len(words), known,
                      language, confidence, entities, self.rules.match(text))

    def fallback_reason(self, answer, confidence, runner_up, threshold, margin):
        """Which rule sends the answer to the fallback (FALLBACK_REASONS), or None."""
        from ..text.language import is_foreign
        if not answer.has_words:
            return NO_WORDS
        if is_foreign(answer.language, answer.language_confidence, self.language, answer.words,
                      answer.known_words):
            return LANGUAGE
        if not answer.known_words and answer.words >= NO_KNOWN_WORDS_MIN:
            return NO_KNOWN_WORDS
        if confidence < threshold:
            return THRESHOLD
        if confidence - runner_up < margin:
            return MARGIN
        return None

    def explain(self, text: str, top_k: int = DEFAULT_TOP_K, threshold: float | None = None,
                margin: float | None = None, neighbours: int = 5) -> dict[str, Any]:
        """`predict`'s result with an "explanation": the nearest training patterns, each word's
        effect on the answer's probability, and for a fallback the rule that fired and the
        runner-up (intentkit.serving.explain, docs/explain.md). Opt-in: `predict` never pays
        for it."""
        from .explain import Explainer
        if self._explainer is None:
            self._explainer = Explainer(self)
        return self._explainer.explain(text, top_k, threshold, margin, neighbours)

    def _result(self, answer, top_k, threshold, margin):
        has_words, probabilities = answer.has_words, answer.probabilities
        ranked = np.argsort(-probabilities)
        best = int(ranked[0])
        confidence = float(probabilities[best])
        runner_up = float(probabilities[ranked[1]]) if len(ranked) > 1 else 0.0
        reason = self.fallback_reason(answer, confidence, runner_up, threshold, margin)
        fallback = reason is not None
        intent = self.fallback_intent if fallback else self.labels[best]
        model_type = self.model_type
        if answer.rule is not None:  # an intent rule of the data file overrides the model
            intent, confidence, fallback, reason, model_type = answer.rule, 1.0, False, None, "rule"
        return {
            "intent": intent,
            "confidence": confidence if has_words or model_type == "rule" else 0.0,
            "all_probabilities": ({self.labels[i]: float(probabilities[i]) for i in ranked}
                                  if has_words else {}),
            "model_type": model_type,
            "top_k": ([{"intent": self.labels[i], "confidence": float(probabilities[i])}
                       for i in ranked[:top_k]] if has_words else []),
            "fallback": fallback,
            "response": self.responses.pick(intent),
            "fallback_reason": reason,
            "language": answer.language,
            # Copies: the cached answer's entities stay as extracted whatever a caller does.
            "entities": [dict(entity) for entity in answer.entities],
        }


_warned_guard_off: set[str] = set()


def _language_detector(language):
    """The language guard's detector for a run of `language`, or None (no recorded language,
    or the extra missing: said once per language in the log)."""
    from ..text import language as languages
    if language is None:
        return None
    if not languages.available():
        if language not in _warned_guard_off:
            _warned_guard_off.add(language)
            log.warning("the language guard is off: the run was trained in %r, and detecting a "
                        "message's language needs %s", language, languages.INSTALL_HINT)
        return None
    return languages.Detector(language)


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
    retrain switches runs, and a second read then sees the new set whole. Retried: a mismatch
    between files, and any failure while the paths came to lead to another run (the run being
    read was switched away from and removed mid-read); a file that is simply missing or damaged
    fails at once."""
    for attempt in range(attempts):
        leads_to = _leads_to(model_path, preprocessor_path)
        try:
            return Predictor(model_path, preprocessor_path, use_ensemble, runtime=runtime,
                             cache_size=cache_size, cache_factory=cache_factory)
        except ArtifactMismatch:
            if attempt == attempts - 1:
                raise
        except (ArtifactError, OSError):
            if attempt == attempts - 1 or _leads_to(model_path, preprocessor_path) == leads_to:
                raise


def _leads_to(*paths):
    """The files `paths` lead to now, through the links a publish switches."""
    return tuple(os.path.realpath(path) for path in paths)


def get_predictor(model_path: str | os.PathLike = DEFAULT_MODEL_PATH,
                  preprocessor_path: str | os.PathLike = DEFAULT_PREPROCESSOR_PATH,
                  use_ensemble: bool | None = None, runtime: str = DEFAULT_RUNTIME,
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
            "model_type": "error", "entities": [], "error": message}


def predict_intent_improved(text: str, model_path: str | os.PathLike = DEFAULT_MODEL_PATH,
                            preprocessor_path: str | os.PathLike = DEFAULT_PREPROCESSOR_PATH,
                            use_ensemble: bool | None = None, top_k: int = DEFAULT_TOP_K,
                            threshold: float | None = None, margin: float | None = None,
                            strict: bool = False, runtime: str = DEFAULT_RUNTIME,
                            explain: bool = False) -> dict[str, Any]:
    """Classify one message with the run's best model (use_ensemble=True/False forces the
    ensemble/the single model). Errors are logged and returned as model_type "error" with an
    "error" message (the seed's contract), or raised when strict=True. The default runtime
    ("auto") answers without importing TensorFlow wherever the NumPy runtime supports the run;
    runtime="keras" forces TensorFlow (same answers). explain=True adds the "explanation"
    (Predictor.explain)."""
    try:
        if not isinstance(text, str):
            raise TypeError(f"text must be a string, not {type(text).__name__}")
        predictor = get_predictor(model_path, preprocessor_path, use_ensemble, runtime)
        if explain:
            return predictor.explain(text, top_k=top_k, threshold=threshold, margin=margin)
        return predictor.predict(text, top_k=top_k, threshold=threshold, margin=margin)
    except Exception as error:  # the contract: a chatbot's message loop never sees a crash
        if strict:
            raise
        log.error("prediction failed: %s: %s", type(error).__name__, error)
        return error_result(str(error))
