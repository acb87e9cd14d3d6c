"""The NumPy runtime against Keras, for each model builder, and its TensorFlow-free import."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from intentkit.runtime import import_tensorflow_quietly

import_tensorflow_quietly()

import keras

from intentkit.models import keras_models as models
from intentkit.models.numpy_runtime import load_numpy_model

ROOT = Path(__file__).resolve().parents[1]
VOCAB, MAX_LEN, CLASSES = 50, 7, 4

# Tiny sizes: the comparison needs every code path, not capacity.
TINY = {
    "cnn_bilstm": {"embedding_dim": 8, "lstm_units": 6, "conv_filters": 5},
    "transformer": {"embedding_dim": 8, "num_heads": 2, "key_dim": 4, "ff_dim": 16},
    "cnn": {"embedding_dim": 8, "conv_filters": 5},
}


def right_padded_ids(rng, lengths):
    """Random ids in [1, VOCAB) (1 is the OOV id) followed by zeros; one row per length."""
    ids = rng.integers(1, VOCAB, size=(len(lengths), MAX_LEN)).astype("int32")
    ids[np.arange(MAX_LEN) >= np.array(lengths)[:, None]] = 0
    return ids


@pytest.fixture(scope="module", params=sorted(TINY))
def saved_model(request, tmp_path_factory):
    """A tiny model of one builder, trained for an epoch so BatchNorm statistics move."""
    keras.utils.set_random_seed(7)
    rng = np.random.default_rng(7)
    model = models.MODEL_BUILDERS[request.param](VOCAB, MAX_LEN, CLASSES, **TINY[request.param])
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy")
    train_ids = right_padded_ids(rng, rng.integers(1, MAX_LEN + 1, size=96))
    model.fit(train_ids, rng.integers(0, CLASSES, size=96), batch_size=16, epochs=2, verbose=0)
    path = tmp_path_factory.mktemp(request.param) / f"{request.param}.h5"
    model.save(path)
    return model, path


def test_matches_keras(saved_model):
    model, path = saved_model
    rng = np.random.default_rng(1)
    # All padding, no padding, and every amount of right padding in between (twice).
    ids = right_padded_ids(rng, [0, MAX_LEN, *range(MAX_LEN + 1), *range(MAX_LEN + 1)])

    expected = np.asarray(model(ids, training=False))
    actual = load_numpy_model(path)(ids)

    assert actual.dtype == np.float32 and actual.shape == (len(ids), CLASSES)
    np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-4)
    # Float32 reordering leaves ~1e-7 on these tiny models; a small slip (say a dropped
    # BatchNormalization epsilon) moves probabilities by more than 1e-6 but less than 1e-4.
    np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(actual.argmax(axis=1), expected.argmax(axis=1))


def test_batch_norm_statistics_were_trained(saved_model):
    """Guards the comparison above: default statistics (mean 0, variance 1) would hide bugs."""
    model, _ = saved_model
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            assert not np.allclose(np.asarray(layer.moving_mean), 0)
            assert not np.allclose(np.asarray(layer.moving_variance), 1)


def test_rejects_wrong_sequence_length(saved_model):
    _, path = saved_model
    with pytest.raises(ValueError, match="shape"):
        load_numpy_model(path)(np.ones((2, MAX_LEN + 1), dtype="int32"))


def test_does_not_import_tensorflow(saved_model):
    _, path = saved_model
    code = ("import sys; import numpy as np; "
            "from intentkit.models.numpy_runtime import load_numpy_model;"
            f"p = load_numpy_model({str(path)!r})(np.ones((3, {MAX_LEN}), dtype='int32'));"
            f"assert p.shape == (3, {CLASSES}), p.shape;"
            "loaded = [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras')];"
            "assert not loaded, loaded")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
