"""Where training runs: the device line in the log, tf.distribute on several GPUs, mixed precision.

Everything here also works on a CPU-only machine: the default strategy is used, and mixed
precision runs (slowly, it is meant for GPUs) so that the code path can be tested anywhere.
Saved models are always float32 (`as_float32`): mixed precision is a training speed-up, and
serving (Keras or the NumPy runtime) computes in float32.
"""
import contextlib
import logging
import warnings

import keras
import tensorflow as tf

log = logging.getLogger(__name__)

MIXED_POLICY = "mixed_float16"


def _gpu_name(device):
    try:
        return tf.config.experimental.get_device_details(device).get("device_name", "GPU")
    except (ValueError, RuntimeError):
        return "GPU"


def describe_devices():
    """'GPU:0 (NVIDIA H100 ...)', several of them joined, or 'CPU'."""
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return "CPU"
    return ", ".join(f"GPU:{index} ({_gpu_name(gpu)})" for index, gpu in enumerate(gpus))


def choose_strategy():
    """MirroredStrategy (one replica per GPU) when TensorFlow sees several GPUs, else the
    default strategy (the one device: a GPU if there is one, else the CPU)."""
    if len(tf.config.list_physical_devices("GPU")) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


@contextlib.contextmanager
def training_devices(mixed_precision=False):
    """Build and train models inside this: the strategy's scope and, when asked, the mixed
    float16 policy (restored afterwards, so that later models in the process are float32)."""
    strategy = choose_strategy()
    log.info("training on %s%s%s", describe_devices(),
             f" ({strategy.num_replicas_in_sync} replicas, {type(strategy).__name__})"
             if strategy.num_replicas_in_sync > 1 else "",
             ", mixed precision float16" if mixed_precision else "")
    previous = keras.mixed_precision.global_policy()
    if mixed_precision:
        keras.mixed_precision.set_global_policy(MIXED_POLICY)
    try:
        with strategy.scope():
            yield strategy
    finally:
        keras.mixed_precision.set_global_policy(previous)


def as_float32(model):
    """The same model with float32 layers, to save; call it outside `training_devices`, where
    the global policy (used by layers that custom layers create) is float32 again."""
    if all(layer.dtype_policy.name == "float32" for layer in model._flatten_layers()):
        return model
    with warnings.catch_warnings():
        # Custom layers without build() make Keras warn that they may be unbuilt; every weight
        # is set on the next line, from the trained model.
        warnings.filterwarnings("ignore", message=".*does not have a `build\\(\\)` method")
        copy = keras.Model.from_config(_float32_config(model.get_config()))
    copy.set_weights(model.get_weights())
    return copy


def _float32_config(config):
    """The model config with every dtype policy replaced by float32."""
    if isinstance(config, dict):
        if config.get("class_name") == "DTypePolicy":
            return "float32"
        return {key: _float32_config(value) for key, value in config.items()}
    if isinstance(config, list):
        return [_float32_config(value) for value in config]
    return config
