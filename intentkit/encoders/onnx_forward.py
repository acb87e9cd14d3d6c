"""The sentence encoder's forward pass through ONNX Runtime (optional extra `onnx`).

`intentkit.encoders.minilm.SentenceEncoder` owns the network (its sizes, and the float32 arrays it
prepared from the verified safetensors file: q, k and v fused, the attention scale folded into
q, position and token type embeddings added). This module writes the same computation as an ONNX
graph of ONNX Runtime's CPU kernels (Attention, SkipLayerNormalization and BiasGelu from its
`com.microsoft` domain, which fuse what the NumPy forward does in several steps) and runs it:

    ids (batch, length) int64, attention mask (batch, length) int64
        -> mean over the unmasked tokens, L2-normalised -> (batch, hidden) float32

The graph holds only the structure: every weight is an *external initializer* handed to the
session as the encoder's own NumPy arrays, so there is no second copy of the weights, on disk or
in a protobuf, to verify or keep in step; the graph is built when the encoder loads (a few
milliseconds, plus ~0.1 s for the session). Answers match the NumPy forward within 1e-5
(tests/test_onnx_encoder.py); benchmarks/encoder_backends.py measures both.
"""
from importlib.util import find_spec

import numpy as np

INSTALL_HINT = "pip install -r requirements-onnx.txt"
OPSET = 20  # the standard domain (LayerNormalization is 17+); the fused kernels are com.microsoft
IR_VERSION = 10  # onnx writes its newest by default, which an older onnxruntime refuses


def available():
    """Whether the extra is installed (without importing it: ~0.2 s, paid when an encoder
    loads)."""
    return all(find_spec(package) is not None for package in ("onnxruntime", "onnx"))


def _external(name, array):
    """An initializer that only declares type and shape: its data comes with the session."""
    from onnx import TensorProto
    tensor = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=array.shape,
                         data_location=TensorProto.EXTERNAL)
    tensor.external_data.add(key="location", value="supplied-by-intentkit")
    return tensor


def build_graph(word, position, embedding_norm, layers, heads, epsilon, norm_floor):
    """(ONNX model, {initializer name: float32 array}) of SentenceEncoder's forward pass, from
    its prepared arrays (see SentenceEncoder._prepare for their order and meaning); `heads`,
    `epsilon` (layer norm) and `norm_floor` (least norm divided by) are pretrained's constants."""
    from onnx import TensorProto, helper, numpy_helper
    nodes, initializers, weights = [], [], {}

    def weight(name, array):
        weights[name] = array = np.ascontiguousarray(array, dtype=np.float32)
        initializers.append(_external(name, array))
        return name

    def constant(name, value, dtype=np.int64):
        initializers.append(numpy_helper.from_array(np.array(value, dtype=dtype), name))
        return name

    def node(op, inputs, output=None, domain="", **attributes):
        output = output or f"{op}_{len(nodes)}"
        nodes.append(helper.make_node(op, inputs, [output], name=output, domain=domain,
                                      **attributes))
        return output

    ms = "com.microsoft"
    length = node("Gather", [node("Shape", ["input_ids"]), constant("one", 1)])
    positions = node("Range", [constant("zero", 0), length, constant("step", 1)])
    x = node("Add", [node("Gather", [weight("word", word), "input_ids"]),
                     node("Gather", [weight("position", position), positions])])
    x = node("LayerNormalization", [x, weight("embedding_norm.gamma", embedding_norm[0]),
                                    weight("embedding_norm.beta", embedding_norm[1])],
             epsilon=epsilon)
    key_mask = node("Cast", ["attention_mask"], to=TensorProto.INT32)
    for n, (qkv, qkv_bias, out, out_bias, norm1, shift1, up, up_bias, down, down_bias,
            norm2, shift2) in enumerate(layers):
        p = f"layer{n}."
        # q, k, v in one matmul and the scale already in q's weights, hence scale 1.
        context = node("Attention", [x, weight(p + "qkv", qkv), weight(p + "qkv_bias", qkv_bias),
                                     key_mask], domain=ms, num_heads=heads, scale=1.0)
        # SkipLayerNormalization(a, skip, gamma, beta, bias) = layer_norm(a + bias + skip)
        x = node("SkipLayerNormalization",
                 [node("MatMul", [context, weight(p + "out", out)]), x, weight(p + "norm1", norm1),
                  weight(p + "shift1", shift1), weight(p + "out_bias", out_bias)],
                 domain=ms, epsilon=epsilon)
        hidden = node("BiasGelu", [node("MatMul", [x, weight(p + "up", up)]),
                                   weight(p + "up_bias", up_bias)], domain=ms)  # exact (erf) GELU
        x = node("SkipLayerNormalization",
                 [node("MatMul", [hidden, weight(p + "down", down)]), x, weight(p + "norm2", norm2),
                  weight(p + "shift2", shift2), weight(p + "down_bias", down_bias)],
                 domain=ms, epsilon=epsilon)
    # Mean over the unmasked tokens, then unit length (norm at least norm_floor).
    mask = node("Cast", ["attention_mask"], to=TensorProto.FLOAT)
    summed = node("ReduceSum", [node("Mul", [x, node("Unsqueeze", [mask, constant("last", [2])])]),
                                constant("tokens", [1])], keepdims=0)
    count = node("Max", [node("ReduceSum", [mask, "tokens"], keepdims=1),
                         constant("at_least_one", 1, np.float32)])
    pooled = node("Div", [summed, count])
    norm = node("Max", [node("ReduceL2", [pooled, constant("features", [-1])], keepdims=1),
                        constant("norm_floor", norm_floor, np.float32)])
    node("Div", [pooled, norm], "embedding")
    hidden_size = word.shape[1]
    graph = helper.make_graph(
        nodes, "sentence_encoder",
        [helper.make_tensor_value_info(name, TensorProto.INT64, ["batch", "length"])
         for name in ("input_ids", "attention_mask")],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", hidden_size])],
        initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET),
                                                    helper.make_opsetid(ms, 1)],
                              ir_version=IR_VERSION)
    return model, weights


def with_weights(model, weights):
    """A copy of `model` holding its weights (what file-based tools such as
    onnxruntime.quantization need); serving never makes one."""
    from onnx import ModelProto, numpy_helper
    whole = ModelProto()
    whole.CopyFrom(model)
    for index, tensor in enumerate(whole.graph.initializer):
        if tensor.name in weights:
            whole.graph.initializer[index].CopyFrom(
                numpy_helper.from_array(weights[tensor.name], tensor.name))
    return whole


def session(model, weights=None, threads=1):
    """An ONNX Runtime CPU session of `model`, its external initializers from `weights` (which
    must outlive the session: it reads them in place), each call shared by `threads` threads.

    One thread by default: batches already run on SentenceEncoder's worker threads. More
    threads answer one message sooner only while they spin between calls (ONNX Runtime's
    default, kept): put to sleep instead, waking them for each of the graph's operators cost
    what they gained (measured in the README, "Serving speed")."""
    import onnxruntime
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only
    if weights:
        options.add_external_initializers(
            list(weights), [onnxruntime.OrtValue.ortvalue_from_numpy(a) for a in weights.values()])
    return onnxruntime.InferenceSession(model.SerializeToString(), options,
                                        providers=["CPUExecutionProvider"])


class OnnxForward:
    """Embeddings of a (batch, length) id matrix through ONNX Runtime; thread-safe."""

    def __init__(self, word, position, embedding_norm, layers, heads, epsilon, norm_floor,
                 threads=1):
        self.model, self.weights = build_graph(word, position, embedding_norm, layers, heads,
                                               epsilon, norm_floor)
        self.threads = threads
        self.session = session(self.model, self.weights, threads)

    def __call__(self, ids, mask=None):
        ids = np.asarray(ids, dtype=np.int64)
        mask = np.ones_like(ids) if mask is None else np.asarray(mask, dtype=np.int64)
        return self.session.run(None, {"input_ids": ids, "attention_mask": mask})[0]
