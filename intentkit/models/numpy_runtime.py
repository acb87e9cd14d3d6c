"""Inference for intentkit's saved `.h5` models with NumPy and h5py only, no TensorFlow.

Why: importing TensorFlow and rebuilding a Keras model costs seconds and hundreds of MiB before
the first answer, which dominates the cold start of a small chat service or CLI. The models are
tiny (an embedding, a few convolutions, one BiLSTM or attention block, a dense head), so their
forward pass is a handful of NumPy operations.

How: a legacy Keras `.h5` file holds the functional graph as JSON (`model_config`) and each
layer's weights under `model_weights/<layer>/`, listed in creation order by the `weight_names`
attribute. `load_numpy_model` turns every layer of the graph into a NumPy function through
`LAYER_BUILDERS` (class name -> builder) and orders them into a plan; calling the model runs the
plan on a batch of token ids. Only inference is supported: dropout layers are the identity.

    model = load_numpy_model("filesTech/advanced_model_improved.h5")
    probabilities = model(token_ids)  # int (batch, max_len) -> float32 (batch, num_classes)

A layer class missing from `LAYER_BUILDERS` fails at load time, not at the first prediction.
For single-message serving on a small or busy machine, start the process with
OPENBLAS_NUM_THREADS=1: one row's matrices are too small to gain from BLAS threads, and waiting on
a descheduled BLAS thread made tail latency far worse (see benchmarks/numpy_runtime.py).
The custom layers mirror `intentkit.models.keras_models`; tests/test_numpy_runtime.py checks each
builder's
model against Keras, so a change there that is not mirrored here fails the tests.
"""
import json

import h5py
import numpy as np

from ..errors import ArtifactError

# --- activations --------------------------------------------------------------------------------


def _sigmoid(x):
    # tanh form: exact, and never overflows exp() for large negative inputs.
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _softmax(x, axis=-1):
    shifted = np.exp(x - x.max(axis=axis, keepdims=True))
    return shifted / shifted.sum(axis=axis, keepdims=True)


def _relu(x):
    return np.maximum(x, 0)


ACTIVATIONS = {"linear": lambda x: x, None: lambda x: x, "relu": _relu, "tanh": np.tanh,
               "sigmoid": _sigmoid, "softmax": _softmax}


def _activation(name):
    if not (name is None or isinstance(name, str)) or name not in ACTIVATIONS:
        raise NotImplementedError(f"activation {name!r} is not supported by the NumPy runtime")
    return ACTIVATIONS[name]


# --- layer builders: (config, weights) -> function of the layer's call arguments --------------

LAYER_BUILDERS = {}


def _builds(*class_names):
    def register(builder):
        for name in class_names:
            LAYER_BUILDERS[name] = builder
        return builder
    return register


@_builds("Dropout", "SpatialDropout1D", "intentkit>TokenDropout")
def _identity(config, weights):
    # Dropout of any kind only acts while training.
    return lambda inputs: inputs


@_builds("intentkit>PaddingMask")
def _padding_mask(config, weights):
    return lambda token_ids: token_ids != 0


@_builds("intentkit>ZeroPadding")
def _zero_padding(config, weights):
    return lambda inputs: inputs[0] * inputs[1][..., None]


# Same constant as MaskedGlobalMaxPooling1D: an all-padding row pools to it, not to -inf.
_VERY_NEGATIVE = np.float32(-1e4)


@_builds("intentkit>MaskedGlobalMaxPooling1D")
def _masked_max_pooling(config, weights):
    def pool(inputs):
        sequence, mask = inputs
        return np.where(mask[..., None], sequence, _VERY_NEGATIVE).max(axis=1)
    return pool


@_builds("Embedding")
def _embedding(config, weights):
    (table,) = weights
    return lambda token_ids: table[token_ids]


@_builds("intentkit>TokenAndPositionEmbedding")
def _token_and_position_embedding(config, weights):
    tokens, positions = weights
    return lambda token_ids: tokens[token_ids] + positions[:token_ids.shape[-1]]


@_builds("Concatenate")
def _concatenate(config, weights):
    return lambda inputs: np.concatenate(inputs, axis=config["axis"])


@_builds("Dense")
def _dense(config, weights):
    kernel, bias = weights if config["use_bias"] else (weights[0], 0)
    activation = _activation(config["activation"])
    return lambda inputs: activation(inputs @ kernel + bias)


@_builds("Conv1D")
def _conv1d(config, weights):
    if (config["strides"] != [1] or config["dilation_rate"] != [1] or config["groups"] != 1
            or config["data_format"] != "channels_last"):
        raise NotImplementedError(f"Conv1D {config['name']}: only stride 1, dilation 1, "
                                  "one group and channels_last are supported")
    kernel, bias = weights if config["use_bias"] else (weights[0], 0)
    width = kernel.shape[0]
    # TensorFlow's "same" puts the odd padding step on the right: width 4 pads 1 left, 2 right.
    left = {"valid": 0, "same": (width - 1) // 2, "causal": width - 1}[config["padding"]]
    right = {"valid": 0, "same": width - 1 - left, "causal": 0}[config["padding"]]
    activation = _activation(config["activation"])

    def conv(inputs):
        padded = np.pad(inputs, ((0, 0), (left, right), (0, 0)))
        steps = padded.shape[1] - width + 1
        # A sum of one matrix product per kernel tap: few taps, no im2col copy needed.
        out = sum(padded[:, tap:tap + steps] @ kernel[tap] for tap in range(width))
        return activation(out + bias)
    return conv


def _scale_and_center(config, weights):
    """(gamma, beta, remaining weights) of a normalization layer over the last axis."""
    if config["axis"] not in (-1, [-1]):
        raise NotImplementedError(f"{config['name']}: only the last axis is supported")
    weights = list(weights)
    gamma = weights.pop(0) if config["scale"] else 1.0
    beta = weights.pop(0) if config["center"] else 0.0
    return gamma, beta, weights


@_builds("BatchNormalization")
def _batch_normalization(config, weights):
    gamma, beta, (moving_mean, moving_variance) = _scale_and_center(config, weights)
    # Inference uses the moving statistics: fold them into one scale and shift.
    scale = gamma / np.sqrt(moving_variance + np.float32(config["epsilon"]))
    shift = beta - moving_mean * scale
    return lambda inputs: inputs * scale + shift


def _layer_norm(gamma, beta, epsilon):
    def normalise(inputs):
        mean = inputs.mean(axis=-1, keepdims=True)
        variance = ((inputs - mean) ** 2).mean(axis=-1, keepdims=True)
        return (inputs - mean) / np.sqrt(variance + epsilon) * gamma + beta
    return normalise


@_builds("LayerNormalization")
def _layer_normalization(config, weights):
    gamma, beta, _ = _scale_and_center(config, weights)
    return _layer_norm(gamma, beta, np.float32(config["epsilon"]))


def _lstm(config, weights):
    """A masked LSTM over (batch, time, features); returns all steps' outputs in time order."""
    if not config["return_sequences"] or config["return_state"]:
        raise NotImplementedError("only LSTMs with return_sequences=True are supported")
    kernel, recurrent_kernel, bias = weights if config["use_bias"] else (*weights, 0)
    activation = _activation(config["activation"])
    recurrent_activation = _activation(config["recurrent_activation"])
    units = config["units"]
    zero_output_for_mask = config["zero_output_for_mask"]

    def run(inputs, mask):
        batch, steps, _ = inputs.shape
        if mask is None:
            mask = np.ones((batch, steps), dtype=bool)
        if config["go_backwards"]:
            inputs, mask = inputs[:, ::-1], mask[:, ::-1]
        # The input projection of every step at once; only the recurrence is sequential.
        projected = inputs @ kernel + bias
        state = np.zeros((batch, units), inputs.dtype)
        carry = np.zeros((batch, units), inputs.dtype)
        outputs = np.zeros((batch, steps, units), inputs.dtype)
        previous = state
        for step in range(steps):
            z = projected[:, step] + state @ recurrent_kernel
            # Keras gate order: input, forget, cell candidate, output. One activation call over
            # all four blocks is cheaper than four small ones; the candidate's is discarded.
            gates = recurrent_activation(z)
            i, f, o = gates[:, :units], gates[:, units:2 * units], gates[:, 3 * units:]
            new_carry = f * carry + i * activation(z[:, 2 * units:3 * units])
            new_state = o * activation(new_carry)
            # A masked step keeps the states; its output is zero or the last output, like Keras.
            keep = mask[:, step, None]
            carry = np.where(keep, new_carry, carry)
            state = np.where(keep, new_state, state)
            previous = np.where(keep, new_state, 0 if zero_output_for_mask else previous)
            outputs[:, step] = previous
        # Keras returns a go_backwards layer's outputs in processing order (reversed).
        return outputs
    return run


_MERGES = {"concat": lambda a, b: np.concatenate([a, b], axis=-1), "sum": np.add,
           "mul": np.multiply, "ave": lambda a, b: (a + b) / 2}


@_builds("Bidirectional")
def _bidirectional(config, weights):
    forward, backward = config["layer"], config["backward_layer"]
    if forward["class_name"] != "LSTM" or backward["class_name"] != "LSTM":
        raise NotImplementedError("Bidirectional is only supported around LSTM layers")
    half = len(weights) // 2  # the forward layer's weights come first
    run_forward = _lstm(forward["config"], weights[:half])
    run_backward = _lstm(backward["config"], weights[half:])
    merge = _MERGES[config["merge_mode"]]

    def bidirectional(inputs, mask=None):
        # The backward layer ran over reversed time; flip its outputs back to align the steps.
        return merge(run_forward(inputs, mask), run_backward(inputs, mask)[:, ::-1])
    return bidirectional


def _multi_head_attention(query_kernel, query_bias, key_kernel, key_bias, value_kernel,
                          value_bias, output_kernel, output_bias):
    """Keras MultiHeadAttention(query=value=key=x) with a boolean (batch, T, T) mask."""
    scale = np.float32(1.0 / np.sqrt(query_kernel.shape[-1]))

    def attend(x, attention_mask):
        # Kernels are (features, heads, head_dim): project to (batch, time, heads, head_dim).
        query = (np.einsum("btd,dnh->btnh", x, query_kernel) + query_bias) * scale
        key = np.einsum("btd,dnh->btnh", x, key_kernel) + key_bias
        value = np.einsum("btd,dnh->btnh", x, value_kernel) + value_bias
        scores = np.einsum("bsnh,btnh->bnts", key, query)  # (batch, heads, query, key)
        mask = attention_mask[:, None]
        # Like Keras' masked Softmax: masked keys get -1e9, then exactly zero weight, so a query
        # that may attend to nothing (padding) gets all-zero weights rather than uniform ones.
        weights = np.where(mask, _softmax(np.where(mask, scores, np.float32(-1e9))), 0)
        context = np.einsum("bnts,bsnh->btnh", weights, value)
        return np.einsum("btnh,nhd->btd", context, output_kernel) + output_bias
    return attend


# TransformerEncoderBlock hard-codes its LayerNormalization epsilon; it is not in the config.
_ENCODER_LAYER_NORM_EPSILON = np.float32(1e-6)


@_builds("intentkit>TransformerEncoderBlock")
def _transformer_encoder_block(config, weights):
    # Weight order is the block's attribute order: attention (q, k, v, output), the feed-forward
    # Sequential's two Dense layers, then the two LayerNormalizations.
    if len(weights) != 16:
        raise NotImplementedError(f"{config['name']}: expected 16 weights, found {len(weights)}")
    attend = _multi_head_attention(*weights[:8])
    hidden_kernel, hidden_bias, out_kernel, out_bias = weights[8:12]
    attention_norm = _layer_norm(*weights[12:14], _ENCODER_LAYER_NORM_EPSILON)
    feed_forward_norm = _layer_norm(*weights[14:16], _ENCODER_LAYER_NORM_EPSILON)

    def block(inputs):
        sequence, mask = inputs
        attention_mask = mask[:, None, :] & mask[:, :, None]  # query and key both real
        sequence = attention_norm(sequence + attend(sequence, attention_mask))
        transformed = _relu(sequence @ hidden_kernel + hidden_bias) @ out_kernel + out_bias
        return feed_forward_norm(sequence + transformed)
    return block


# --- the functional graph ---------------------------------------------------------------------


def _is_tensor_ref(value):
    return isinstance(value, dict) and value.get("class_name") == "__keras_tensor__"


def _template(value):
    """The JSON of a call argument, with every Keras tensor replaced by its (layer, node, index)."""
    if _is_tensor_ref(value):
        return tuple(value["config"]["keras_history"])
    if isinstance(value, list):
        return [_template(item) for item in value]
    return value


def _resolve(template, values):
    if isinstance(template, tuple):
        layer, node, index = template
        output = values[layer, node]
        return output[index] if isinstance(output, tuple) else output
    if isinstance(template, list):
        return [_resolve(item, values) for item in template]
    return template


def _resolve_dict(templates, values):
    return {key: _resolve(template, values) for key, template in templates.items()}


def _dependencies(template):
    if isinstance(template, tuple):
        yield template
    elif isinstance(template, list):
        for item in template:
            yield from _dependencies(item)


def _history_list(refs):
    # A single input/output is saved as one [layer, node, index] triple, several as a list of them.
    return [tuple(refs)] if refs and isinstance(refs[0], str) else [tuple(r) for r in refs]


def _read_weights(group):
    """A layer's arrays in creation order, the order its `weight_names` attribute lists."""
    if group is None:
        return []
    return [np.asarray(group[name][()]) for name in group.attrs.get("weight_names", [])]


class NumpyModel:
    """A saved functional model evaluated with NumPy; call it on a batch of token ids."""

    def __init__(self, model_config, weight_groups):
        layers = {layer["name"]: layer for layer in model_config["config"]["layers"]}
        self.name = model_config["config"]["name"]
        self.inputs = _history_list(model_config["config"]["input_layers"])
        self.outputs = _history_list(model_config["config"]["output_layers"])
        if len(self.inputs) != 1 or len(self.outputs) != 1:
            raise NotImplementedError("only single-input, single-output models are supported")
        self.max_length = layers[self.inputs[0][0]]["config"]["batch_shape"][1]
        self._plan = []  # (layer name, node index, function, args template, kwargs template)
        planned = set()

        def plan(name, node_index):
            """Adds a layer call after the calls it depends on (depth first from the output)."""
            if (name, node_index) in planned or name == self.inputs[0][0]:
                return
            layer = layers[name]
            builder = LAYER_BUILDERS.get(layer["class_name"])
            if builder is None:
                raise NotImplementedError(f"layer {name}: class {layer['class_name']!r} is not "
                                          "supported by the NumPy runtime")
            node = layer["inbound_nodes"][node_index]
            args = _template(node["args"])
            # `training` is always off here, and mask=None is the default anyway.
            kwargs = {key: _template(value) for key, value in node["kwargs"].items()
                      if key != "training" and value is not None}
            for dependency in _dependencies([args, list(kwargs.values())]):
                plan(*dependency[:2])
            function = builder(layer["config"], _read_weights(weight_groups(name)))
            self._plan.append((name, node_index, function, args, kwargs))
            planned.add((name, node_index))

        plan(*self.outputs[0][:2])

    def __call__(self, token_ids):
        token_ids = np.asarray(token_ids)
        if token_ids.ndim != 2 or token_ids.shape[1] != self.max_length:
            raise ValueError(f"expected token ids of shape (batch, {self.max_length}), "
                             f"got {token_ids.shape}")
        input_name, input_node, _ = self.inputs[0]
        values = {(input_name, input_node): token_ids}
        for name, node_index, function, args, kwargs in self._plan:
            values[name, node_index] = function(*_resolve(args, values),
                                                **_resolve_dict(kwargs, values))
        return np.asarray(_resolve(self.outputs[0], values), dtype=np.float32)


def load_numpy_model(path):
    """Reads a Keras `.h5` saved by `model.save(...)` into a `NumpyModel` (h5py only).

    A model this runtime cannot run (a layer it lacks, a file not of a full model) is an
    ArtifactError saying so: the user's fix is the Keras runtime, not a bug report."""
    try:
        return _load_numpy_model(path)
    except (NotImplementedError, ValueError, KeyError, TypeError) as error:
        raise ArtifactError(f"{path}: the NumPy runtime cannot run this model ({error}); serve "
                            "it with --runtime keras") from None


def _load_numpy_model(path):
    with h5py.File(path, "r") as h5:
        if "model_config" not in h5.attrs:
            raise ValueError(f"{path} has no model_config: not a full model saved as .h5")
        model_config = json.loads(h5.attrs["model_config"])
        if model_config["class_name"] != "Functional":
            raise NotImplementedError(f"{path}: only functional models are supported, not "
                                      f"{model_config['class_name']}")
        weights_root = h5["model_weights"]
        # Weights are read while the file is open: NumpyModel keeps plain arrays only.
        return NumpyModel(model_config, lambda name: weights_root.get(name))
