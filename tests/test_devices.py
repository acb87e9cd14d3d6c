"""Device choice and mixed precision, on the CPU: float32 outputs, float32 saved keras_models."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from intentkit import artifacts
from intentkit.models import keras_models
from intentkit.models.numpy_runtime import load_numpy_model
from intentkit.training import devices

VOCAB, MAX_LEN, CLASSES = 40, 6, 3
TINY = {"cnn_bilstm": {"embedding_dim": 8, "lstm_units": 6, "conv_filters": 5},
        "transformer": {"embedding_dim": 8, "num_heads": 2, "key_dim": 4, "ff_dim": 16},
        "cnn": {"embedding_dim": 8, "conv_filters": 5}}


def test_describes_the_device_and_picks_a_strategy(caplog):
    gpus = tf.config.list_physical_devices("GPU")
    description = devices.describe_devices()
    assert description == "CPU" if not gpus else description.startswith("GPU:0 (")
    strategy = devices.choose_strategy()
    expected = "MirroredStrategy" if len(gpus) > 1 else "_DefaultDistributionStrategy"
    assert type(strategy).__name__ == expected
    with caplog.at_level("INFO"), devices.training_devices():
        pass
    assert f"training on {description}" in caplog.text


@pytest.mark.parametrize("name", sorted(TINY))
def test_mixed_precision_trains_and_saves_a_float32_model(tmp_path, name):
    rng = np.random.default_rng(0)
    ids = rng.integers(1, VOCAB, size=(32, MAX_LEN)).astype("int32")
    with devices.training_devices(mixed_precision=True):
        assert keras.mixed_precision.global_policy().name == "mixed_float16"
        model = keras_models.MODEL_BUILDERS[name](VOCAB, MAX_LEN, CLASSES, **TINY[name])
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        model.fit(ids, rng.integers(0, CLASSES, size=32), epochs=1, verbose=0)
        assert model.layers[-1].dtype_policy.name == "float32", "softmax must stay float32"
        assert any(layer.compute_dtype == "float16" for layer in model.layers), "body in float16"
        mixed_output = model(ids, training=False)
    assert mixed_output.dtype == "float32"
    assert keras.mixed_precision.global_policy().name == "float32", "policy restored"

    saved = devices.as_float32(model)
    assert {layer.dtype_policy.name for layer in saved._flatten_layers()} == {"float32"}
    path = tmp_path / f"{name}.h5"
    artifacts.save_model(saved, path)
    keras_probabilities = np.asarray(artifacts.load_model(path)(ids, training=False))
    numpy_probabilities = load_numpy_model(path)(ids)
    assert keras_probabilities.dtype == numpy_probabilities.dtype == np.float32
    np.testing.assert_allclose(keras_probabilities, numpy_probabilities, atol=1e-5)
    # The float32 copy answers like the float16 model did, up to float16 rounding.
    np.testing.assert_allclose(keras_probabilities, np.asarray(mixed_output), atol=5e-3)


def test_float32_models_are_saved_as_they_are():
    model = keras_models.build_cnn(VOCAB, MAX_LEN, CLASSES, **TINY["cnn"])
    assert devices.as_float32(model) is model
