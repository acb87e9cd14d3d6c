"""ONNX Runtime's forward pass of the MiniLM encoder against the NumPy one, the reference."""
import numpy as np
import pytest
from live_server import missing
from safetensors.numpy import load_file, save_file
from test_pretrained import REFERENCE_EMBEDDINGS, REFERENCE_IDS

from intentkit.encoders import onnx_forward
from intentkit.encoders.minilm import BACKEND_VARIABLE, THREADS_VARIABLE, SentenceEncoder, model_dir
from intentkit.errors import ConfigError

if not onnx_forward.available():
    missing(f"onnxruntime is missing: {onnx_forward.INSTALL_HINT}")

# The reference sentences, an empty text and one truncated at 256 tokens.
TEXTS = [*REFERENCE_IDS, *REFERENCE_EMBEDDINGS, "", "hi", "word " * 300]


@pytest.fixture(scope="module")
def encoders():
    """(NumPy, ONNX) encoders of the package's weights."""
    return SentenceEncoder(backend="numpy"), SentenceEncoder(backend="onnx")


def test_onnx_matches_numpy_on_the_reference_sentences(encoders):
    reference, onnx = encoders
    expected = reference.embed(TEXTS)
    batched = onnx.embed(TEXTS)
    assert batched.dtype == np.float32 and batched.shape == expected.shape
    assert np.abs(batched - expected).max() <= 1e-5
    one_by_one = np.concatenate([onnx.embed([text]) for text in TEXTS])
    assert np.abs(one_by_one - expected).max() <= 1e-5


def test_padding_is_masked(encoders):
    """The graph takes an attention mask: padded rows equal the rows alone (embed_ids never
    pads, other callers may)."""
    _, onnx = encoders
    ids = [onnx.tokenizer.encode(text) for text in ("hi", "a longer sentence about my savings")]
    padded = np.zeros((len(ids), max(map(len, ids))), dtype=np.int64)
    mask = np.zeros_like(padded)
    for row, sequence in enumerate(ids):
        padded[row, :len(sequence)] = sequence
        mask[row, :len(sequence)] = 1
    np.testing.assert_allclose(onnx._onnx(padded, mask), onnx.embed_ids(ids), atol=1e-6)


def test_the_graph_runs_the_weights_file_given(encoders, tmp_path):
    """A fine-tuned encoder (here: the package's weights, changed) is what the graph runs."""
    weights = load_file(str(model_dir() / "model.safetensors"))
    weights["encoder.layer.0.attention.self.query.weight"] *= 0.8
    weights["encoder.layer.5.output.dense.weight"] *= 1.5
    path = tmp_path / "encoder.safetensors"
    save_file(weights, str(path))
    reference = SentenceEncoder(weights_file=path, backend="numpy")
    tuned = SentenceEncoder(weights_file=path, backend="onnx")
    assert tuned.sha256 == reference.sha256 != encoders[1].sha256
    embeddings = tuned.embed(TEXTS)
    assert np.abs(embeddings - reference.embed(TEXTS)).max() <= 1e-5
    assert np.abs(embeddings - encoders[1].embed(TEXTS)).max() > 1e-2


def test_onnx_is_the_default_and_numpy_can_be_forced(monkeypatch):
    monkeypatch.delenv(BACKEND_VARIABLE, raising=False)
    assert SentenceEncoder().backend == "onnx"
    monkeypatch.setenv(BACKEND_VARIABLE, "numpy")
    encoder = SentenceEncoder()
    assert encoder.backend == "numpy" and encoder._onnx is None


def test_threads_per_call_reach_the_session_and_change_no_embedding(encoders, monkeypatch):
    _, one_thread = encoders
    monkeypatch.setenv(THREADS_VARIABLE, "2")
    two_threads = SentenceEncoder(backend="onnx")
    assert [e._onnx.session.get_session_options().intra_op_num_threads
            for e in (one_thread, two_threads)] == [1, 2]
    # Several length buckets: batches run one after another through the two threads.
    assert np.abs(two_threads.embed(TEXTS) - one_thread.embed(TEXTS)).max() <= 1e-6
    assert np.abs(two_threads.embed(TEXTS[:1]) - one_thread.embed(TEXTS[:1])).max() <= 1e-6


@pytest.mark.parametrize("value", ["0", "two", "-1"])
def test_a_bad_thread_count_is_refused(monkeypatch, value):
    monkeypatch.setenv(THREADS_VARIABLE, value)
    with pytest.raises(ConfigError, match=THREADS_VARIABLE):
        SentenceEncoder(backend="onnx")


def test_threads_per_call_need_onnx_runtime():
    with pytest.raises(ConfigError, match="ONNX Runtime"):
        SentenceEncoder(backend="numpy", threads=2)
