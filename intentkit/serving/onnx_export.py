"""A run's default answer as files any ONNX runtime can load (`intentkit export --format onnx`).

    export_onnx("filesTech", "exported")
    # exported/model.onnx       input_ids, attention_mask (int64, batch x length) -> probabilities
    # exported/tokenizer.json   the `tokenizers` library's form of the encoder's WordPiece
    # exported/vocab.txt        the same vocabulary, one piece a line (BERT's format)
    # exported/export.json      labels, fallback threshold and margin, inputs and outputs,
    #                           which members are in the graph, the model file's sha256
    # exported/entities.json    the run's entity extraction, portable (serving.entity_export);
    #                           only for a run with entities

What is exported: the members of the default answer that read sentence embeddings (the MiniLM
head), the all-MiniLM-L6-v2 encoder in front of them, and their weighted sum, all in one graph
of standard ONNX operators (opset 17: no com.microsoft kernels, so ONNX Runtime Web, Java or
C# run it as it is). Their weights are renormalised to sum to 1. The members that read word ids
(CNN-BiLSTM, CNN) are left out and named in export.json: their tokenizer is NLTK's Treebank
rules, clitic spelling and WordNet lemmas, which no portable tokenizer reproduces.

Verified before anything is written in place: ONNX Runtime on the written files, fed by the
`tokenizers` library loading tokenizer.json (not our tokenizer), must give the probabilities
that the run's own Python path gives for the same members within 1e-4 on probe messages made of
the run's vocabulary and awkward text (accents, punctuation, CJK, longer than 256 pieces). A run
that fails is refused (ArtifactError) and the output directory is left as it was.

`int8=True` quantizes the encoder's matrix products statically (ONNX Runtime's quantize_static,
QDQ format, weights per channel), calibrated on `calibration_texts` (the training texts); the
fp32 graph is verified as above first, and the int8 one's agreement is recorded.
"""
import json
import os
import random
import shutil
import tempfile
import unicodedata
from pathlib import Path

import h5py
import numpy as np

from .. import artifacts
from ..errors import ArtifactError, ConfigError, MissingExtra
from . import entity_export

FORMAT = "intentkit-onnx"
FORMAT_VERSION = 1
MODEL_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"
VOCAB_FILE = "vocab.txt"
DESCRIPTION_FILE = "export.json"
EXPORTED_FILES = (MODEL_FILE, TOKENIZER_FILE, VOCAB_FILE, DESCRIPTION_FILE, entity_export.FILE)
OPSET = 17  # LayerNormalization's first version; what ONNX Runtime Web 1.2x runs
IR_VERSION = 8
TOLERANCE = 1e-4  # largest difference of a probability allowed by the verification
PROBE_MESSAGES = 300
MASKED_SCORE = -1e4  # added to the attention scores of padding (BERT's own constant)
INSTALL_HINT = "pip install 'intentkit[export]'"
NO_WORDS_RULE = ("a message without any letter or digit (str.isalnum) gets the fallback with "
                 "confidence 0, as the Predictor does")
AWKWARD_PROBES = ("", "?", "Héllo WORLD!!! what's the pay for a ÉNGINEER in Zürich?",
                  "don't   know\tthe 401k rules...", "我想找工作 in 北京", "naïve café résumé",
                  "a" * 150, " ".join(["salary"] * 300), "e-mail: me@example.com; ok?")


def _needs(package):
    try:
        return __import__(package)
    except ImportError:
        raise MissingExtra(f"exporting needs the `{package}` package; {INSTALL_HINT}") from None


# --- the graph -----------------------------------------------------------------------------


class _Graph:
    """Nodes and initializers of a graph under construction (onnx.helper)."""

    def __init__(self):
        self.nodes, self.initializers = [], []

    def weight(self, name, array, dtype=np.float32):
        from onnx import numpy_helper
        self.initializers.append(numpy_helper.from_array(np.asarray(array, dtype=dtype), name))
        return name

    def node(self, op, inputs, output=None, **attributes):
        from onnx import helper
        output = output or f"{op}_{len(self.nodes)}"
        self.nodes.append(helper.make_node(op, inputs, [output], name=output, **attributes))
        return output

    def dense(self, x, kernel_name, kernel, bias=None):
        y = self.node("MatMul", [x, self.weight(kernel_name, kernel)])
        if bias is not None:
            y = self.node("Add", [y, self.weight(kernel_name + ".bias", bias)])
        return y

    def layer_norm(self, x, name, gamma, beta, epsilon):
        return self.node("LayerNormalization", [x, self.weight(name + ".gamma", gamma),
                                                self.weight(name + ".beta", beta)],
                         axis=-1, epsilon=float(epsilon))


def _encoder_nodes(graph, encoder):
    """SentenceEncoder's forward over a padded batch: input_ids, attention_mask -> its
    L2-normalised mean embedding (the name returned). The arrays are the encoder's prepared
    ones (pretrained.SentenceEncoder._prepare: q, k, v fused, scale folded into q)."""
    from onnx import TensorProto

    from ..encoders.minilm import HEADS, HIDDEN, LAYER_NORM_EPSILON, NORM_FLOOR
    g = graph
    head_size = HIDDEN // HEADS
    length = g.node("Gather", [g.node("Shape", ["input_ids"]), g.weight("one", 1, np.int64)])
    positions = g.node("Range", [g.weight("zero", 0, np.int64), length, "one"])
    x = g.node("Add", [g.node("Gather", [g.weight("word", encoder.word), "input_ids"]),
                       g.node("Gather", [g.weight("position", encoder.position), positions])])
    x = g.layer_norm(x, "embedding_norm", *encoder.embedding_norm, LAYER_NORM_EPSILON)
    mask = g.node("Cast", ["attention_mask"], to=TensorProto.FLOAT)
    # Padding keys get MASKED_SCORE added: their attention weight is exactly 0 in float32.
    key_bias = g.node("Unsqueeze", [
        g.node("Mul", [g.node("Sub", [g.weight("one_f", 1.0), mask]),
                       g.weight("masked_score", MASKED_SCORE)]),
        g.weight("key_axes", [1, 2], np.int64)])
    heads_shape = g.weight("heads_shape", [0, 0, HEADS, head_size], np.int64)
    hidden_shape = g.weight("hidden_shape", [0, 0, HIDDEN], np.int64)
    thirds = g.weight("thirds", [HIDDEN] * 3, np.int64)
    for n, (qkv, qkv_bias, out, out_bias, norm1, shift1, up, up_bias, down, down_bias,
            norm2, shift2) in enumerate(encoder.layers):
        p = f"layer{n}."
        projected = g.dense(x, p + "qkv", qkv, qkv_bias)
        from onnx import helper
        q, k, v = (f"{p}{name}" for name in "qkv")
        g.nodes.append(helper.make_node("Split", [projected, thirds], [q, k, v], axis=-1,
                                        name=p + "split"))

        def heads(t, perm):
            return g.node("Transpose", [g.node("Reshape", [t, heads_shape])], perm=perm)
        scores = g.node("Add", [g.node("MatMul", [heads(q, [0, 2, 1, 3]),
                                                 heads(k, [0, 2, 3, 1])]), key_bias])
        context = g.node("MatMul", [g.node("Softmax", [scores], axis=-1),
                                    heads(v, [0, 2, 1, 3])])
        context = g.node("Reshape", [g.node("Transpose", [context], perm=[0, 2, 1, 3]),
                                     hidden_shape])
        x = g.layer_norm(g.node("Add", [g.dense(context, p + "out", out, out_bias), x]),
                         p + "norm1", norm1, shift1, LAYER_NORM_EPSILON)
        hidden = g.dense(x, p + "up", up, up_bias)
        # Exact GELU: x/2 (1 + erf(x / sqrt 2)).
        gelu = g.node("Mul", [g.node("Mul", [hidden, g.weight(p + "half", 0.5)]), g.node(
            "Add", [g.node("Erf", [g.node("Mul", [hidden, g.weight(p + "inv_sqrt2",
                                                                      1 / np.sqrt(2))])]),
                    "one_f"])])
        x = g.layer_norm(g.node("Add", [g.dense(gelu, p + "down", down, down_bias), x]),
                         p + "norm2", norm2, shift2, LAYER_NORM_EPSILON)
    summed = g.node("ReduceSum", [
        g.node("Mul", [x, g.node("Unsqueeze", [mask, g.weight("last", [2], np.int64)])]),
        g.weight("tokens", [1], np.int64)], keepdims=0)
    count = g.node("Max", [g.node("ReduceSum", [mask, "tokens"], keepdims=1), "one_f"])
    pooled = g.node("Div", [summed, count])
    # Opset 17's ReduceL2 takes its axes as an attribute (ReduceSum as an input).
    norm = g.node("Max", [g.node("ReduceL2", [pooled], axes=[-1], keepdims=1),
                          g.weight("norm_floor", NORM_FLOOR)])
    return g.node("Div", [pooled, norm], "embedding")


ACTIVATIONS = {"linear": None, "relu": "Relu", "tanh": "Tanh", "sigmoid": "Sigmoid",
               "softmax": "Softmax"}


def _read_chain(path):
    """The layers of a saved member that is a chain of Dense/Dropout/BatchNormalization layers
    over one input: [(class name, config, weights)]; None for any other shape."""
    with h5py.File(path, "r") as h5:
        config = json.loads(h5.attrs["model_config"])["config"]
        weights_root = h5["model_weights"]
        chain, previous = [], None
        for layer in config["layers"]:
            name, kind = layer["name"], layer["class_name"]
            inbound = [ref["config"]["keras_history"][0]
                       for node in layer.get("inbound_nodes", [])
                       for ref in node["args"] if isinstance(ref, dict)]
            if kind == "InputLayer":
                previous = name
                continue
            if inbound != [previous] or kind not in ("Dense", "Dropout", "BatchNormalization"):
                return None
            if kind == "Dense" and layer["config"]["activation"] not in ACTIVATIONS:
                return None
            group = weights_root.get(name)
            weights = ([np.asarray(group[w][()]) for w in group.attrs.get("weight_names", [])]
                       if group is not None else [])
            chain.append((kind, layer["config"], weights))
            previous = name
        return chain


def _member_nodes(graph, name, chain, x):
    """A member's probabilities from the sentence embedding `x` (the output name)."""
    for index, (kind, config, weights) in enumerate(chain):
        p = f"{name}.{index}"
        if kind == "Dense":
            kernel, bias = weights if config["use_bias"] else (weights[0], None)
            x = graph.dense(x, p, kernel, bias)
            if ACTIVATIONS[config["activation"]]:
                extra = {"axis": -1} if config["activation"] == "softmax" else {}
                x = graph.node(ACTIVATIONS[config["activation"]], [x], **extra)
        elif kind == "BatchNormalization":
            gamma = weights.pop(0) if config["scale"] else 1.0
            beta = weights.pop(0) if config["center"] else 0.0
            mean, variance = weights
            scale = gamma / np.sqrt(variance + np.float32(config["epsilon"]))
            x = graph.node("Add", [graph.node("Mul", [x, graph.weight(p + ".scale", scale)]),
                                   graph.weight(p + ".shift", beta - mean * scale)])
        # Dropout is the identity at inference.
    return x


def exportable_members(run, model_type):
    """(members in the graph, [(member, why not)]) of the answer's members with weight > 0."""
    exported, left_out = [], []
    for member in run.members(model_type):
        if member.weight <= 0:
            continue
        if member.input != artifacts.SENTENCE_EMBEDDING:
            left_out.append((member, "reads word ids from the run's own tokenizer (NLTK "
                                     "Treebank rules, clitics, WordNet lemmas): no portable form"))
        elif _read_chain(member.path) is None:
            left_out.append((member, "has layers other than Dense, Dropout, BatchNormalization"))
        else:
            exported.append(member)
    return exported, left_out


def build_model(run, members):
    """The ONNX model: encoder, each member's head, their weighted sum (weights sum to 1)."""
    from onnx import TensorProto, helper
    graph = _Graph()
    embedding = _encoder_nodes(graph, run.encoder)
    total = sum(m.weight for m in members)
    weighted = [graph.node("Mul", [_member_nodes(graph, m.name, _read_chain(m.path), embedding),
                                   graph.weight(f"{m.name}.weight", m.weight / total)])
                for m in members]
    graph.node("Sum", weighted, "probabilities")
    model = helper.make_model(
        helper.make_graph(
            graph.nodes, "intentkit",
            [helper.make_tensor_value_info(name, TensorProto.INT64, ["batch", "length"])
             for name in ("input_ids", "attention_mask")],
            [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT,
                                           ["batch", len(run.labels)])],
            graph.initializers),
        opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION,
        producer_name="intentkit")
    return model


def reference_probabilities(run, members, texts):
    """What the run's Python path answers with these members (NumPy runtime, weights
    renormalised): the probabilities the exported graph must reproduce."""
    from ..models.numpy_runtime import load_numpy_model
    embeddings = run.encoder.embed(texts)
    total = sum(m.weight for m in members)
    return sum(m.weight / total * load_numpy_model(m.path)(embeddings) for m in members)


# --- tokenizer, session, probes --------------------------------------------------------------


def write_tokenizer(encoder, directory):
    """tokenizer.json (the `tokenizers` library's BERT WordPiece: clean, lowercase, strip
    accents, split punctuation and CJK, [CLS] ... [SEP], at most 256 pieces) and vocab.txt."""
    tokenizers = _needs("tokenizers")
    from ..encoders.minilm import MAX_TOKENS
    vocab = sorted(encoder.tokenizer.vocab, key=encoder.tokenizer.vocab.get)
    (directory / VOCAB_FILE).write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tokenizer = tokenizers.BertWordPieceTokenizer(
        str(directory / VOCAB_FILE), clean_text=True, handle_chinese_chars=True,
        strip_accents=None, lowercase=True)
    tokenizer.enable_truncation(MAX_TOKENS)
    tokenizer.save(str(directory / TOKENIZER_FILE))


def load_tokenizer(directory):
    """The exported tokenizer through the `tokenizers` library (padding to the batch's
    longest, as a batch needs)."""
    tokenizers = _needs("tokenizers")
    tokenizer = tokenizers.Tokenizer.from_file(str(Path(directory) / TOKENIZER_FILE))
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
    return tokenizer


def session(path, threads=1):
    onnxruntime = _needs("onnxruntime")
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run_exported(session, tokenizer, texts, batch_size=64):
    """The exported model's probabilities of texts, tokenized by `tokenizer`."""
    out = []
    for start in range(0, len(texts), batch_size):
        encodings = tokenizer.encode_batch(list(texts[start:start + batch_size]))
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        out.append(session.run(["probabilities"], {"input_ids": ids,
                                                   "attention_mask": mask})[0])
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def has_words(text):
    """Whether the Predictor would answer (not fall back for want of words): see NO_WORDS_RULE."""
    return any(c.isalnum() for c in unicodedata.normalize("NFKC", text))


def probe_messages(run, count=None, seed=0):
    """`count` (default PROBE_MESSAGES) messages to verify an export on: the awkward ones, then
    1-12 words of the run's vocabulary each (seeded, so a refusal can be reproduced)."""
    count = PROBE_MESSAGES if count is None else count
    words = [w for w in run.preprocessor.words() if w] or ["hello"]
    rng = random.Random(seed)
    made = [" ".join(rng.choice(words) for _ in range(rng.randint(1, 12)))
            for _ in range(max(count - len(AWKWARD_PROBES), 0))]
    return list(AWKWARD_PROBES) + made


# --- int8 ------------------------------------------------------------------------------------


def quantize(model_path, out_path, calibration_ids, op_types=("MatMul", "Gather")):
    """quantize_static of the model (QDQ: int8 weights per channel, uint8 activations, MinMax
    ranges calibrated on (ids, mask) batches of training texts). Only products with a weight
    matrix are quantized: the attention's two activation-by-activation products lost most of
    the accuracy when quantized too."""
    _needs("onnxruntime")
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter(calibration_ids)

        def get_next(self):
            batch = next(self.batches, None)
            return None if batch is None else {"input_ids": batch[0], "attention_mask": batch[1]}

    graph = onnx.load(str(model_path)).graph
    weights = {tensor.name for tensor in graph.initializer}
    between_activations = [node.name for node in graph.node
                           if node.op_type == "MatMul" and not set(node.input) & weights]
    quantize_static(str(model_path), str(out_path), Reader(), quant_format=QuantFormat.QDQ,
                    op_types_to_quantize=list(op_types), per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.MinMax,
                    nodes_to_exclude=between_activations,
                    extra_options={"ActivationSymmetric": False, "WeightSymmetric": True})


def calibration_batches(tokenizer, texts, batch_size=32):
    """(ids, mask) int64 batches of the texts for calibration."""
    batches = []
    for start in range(0, len(texts), batch_size):
        encodings = tokenizer.encode_batch(list(texts[start:start + batch_size]))
        batches.append((np.array([e.ids for e in encodings], dtype=np.int64),
                        np.array([e.attention_mask for e in encodings], dtype=np.int64)))
    return batches


# --- the export ------------------------------------------------------------------------------


def open_run(model_dir, use_ensemble=None):
    """(run, model type) of a published run directory, verified."""
    model_dir = Path(model_dir)
    model_type = (None if use_ensemble is None
                  else artifacts.ENSEMBLE if use_ensemble else artifacts.SINGLE)
    run = artifacts.Run.open(model_dir / artifacts.MODEL_FILE,
                             model_dir / artifacts.PREPROCESSOR_FILE,
                             model_dir / artifacts.ENSEMBLE_DIR, model_type)
    return run, model_type or run.default_model


def _check_out(out):
    """Refuse an output directory holding anything but an earlier export's files."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(
            entry.name not in EXPORTED_FILES and not (out / DESCRIPTION_FILE).is_file()
            for entry in out.iterdir())):
        raise ConfigError(f"--out {out}: exists and is not an earlier export (no "
                          f"{DESCRIPTION_FILE}); choose a new or empty directory")


def export_onnx(model_dir, out, use_ensemble=None, int8=False, calibration_texts=(),
                probes=None):
    """Writes the export of a published run into `out` (see the module's docstring) and
    returns its description. ArtifactError when the run cannot be exported or its export
    does not verify; MissingExtra when an extra is missing; ConfigError when `out` is someone
    else's."""
    for package in ("onnx", "onnxruntime", "tokenizers"):
        _needs(package)
    out = Path(out)
    _check_out(out)
    run, model_type = open_run(model_dir, use_ensemble)
    # Before the graph is built: an entity part that cannot be exported refuses in a second.
    entities = entity_export.portable_entities(run)
    members, left_out = exportable_members(run, model_type)
    if not members:
        raise ArtifactError(
            f"{model_dir}: its {model_type} answer has no member that can be exported "
            f"({'; '.join(f'{m.name} {why}' for m, why in left_out)}); "
            + ("export the ensemble (--ensemble) if its MiniLM member has a weight"
               if model_type == artifacts.SINGLE else
               "only members reading sentence embeddings (the MiniLM head) with a weight above "
               "0 can be exported: retrain (ensemble.json lists the weights)"))
    if int8 and not calibration_texts:
        raise ConfigError("--int8 needs the training data (--data) to calibrate on")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.staging-", dir=out.parent))
    try:
        description = _write(run, model_type, members, left_out, staging, int8,
                             list(calibration_texts), probes, entities)
        artifacts.replace_directory(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return description


def _write(run, model_type, members, left_out, staging, int8, calibration_texts, probes,
           entities=None):
    import onnx
    write_tokenizer(run.encoder, staging)
    tokenizer = load_tokenizer(staging)
    probes = probe_messages(run) if probes is None else list(probes)
    # Our tokenizer and the exported one must agree piece for piece on every probe.
    for text in probes:
        theirs = tokenizer.encode(text).ids
        if theirs != run.encoder.tokenizer.encode(text):
            raise ArtifactError(f"export refused: the exported tokenizer splits {text[:60]!r} "
                                "differently from the encoder's own")
    onnx.save(build_model(run, members), staging / MODEL_FILE)
    onnx.checker.check_model(str(staging / MODEL_FILE))
    expected = reference_probabilities(run, members, probes)
    got = run_exported(session(staging / MODEL_FILE), tokenizer, probes)
    difference = float(np.abs(got - expected).max())
    if not difference <= TOLERANCE:
        raise ArtifactError(f"export refused: ONNX Runtime's probabilities differ from the "
                            f"run's by up to {difference:.2g} (allowed {TOLERANCE}) on probe "
                            "messages; the run's members cannot be exported faithfully")
    verification = {"messages": len(probes), "max_abs_difference": difference,
                    "tolerance": TOLERANCE, "tokenizer": "tokenizers " + tokenizer_version()}
    precision = "fp32"
    if int8:
        fp32 = staging / "fp32.onnx"
        os.replace(staging / MODEL_FILE, fp32)
        quantize(fp32, staging / MODEL_FILE, calibration_batches(tokenizer, calibration_texts))
        fp32.unlink()
        quantized = run_exported(session(staging / MODEL_FILE), tokenizer, probes)
        verification["int8"] = {
            "calibration_texts": len(calibration_texts),
            "max_abs_difference_to_fp32": float(np.abs(quantized - expected).max()),
            "top1_agreement_with_fp32": float((quantized.argmax(1) == expected.argmax(1)).mean())}
        precision = "int8 (encoder and head matrix products, static, QDQ)"
    description = {
        "format": FORMAT, "format_version": FORMAT_VERSION,
        "model": {"file": MODEL_FILE, "sha256": artifacts.sha256(staging / MODEL_FILE),
                  "bytes": (staging / MODEL_FILE).stat().st_size, "opset": OPSET,
                  "precision": precision},
        "inputs": [{"name": name, "dtype": "int64", "shape": ["batch", "length"],
                    "meaning": meaning} for name, meaning in (
                        ("input_ids", "word-piece ids from tokenizer.json: [CLS] ... [SEP], "
                                      "0 after the end"),
                        ("attention_mask", "1 for a real piece, 0 for padding"))],
        "outputs": [{"name": "probabilities", "dtype": "float32",
                     "shape": ["batch", len(run.labels)],
                     "meaning": "one probability per label, in `labels` order"}],
        "tokenizer": {"file": TOKENIZER_FILE, "vocabulary": VOCAB_FILE, "kind": "bert-wordpiece",
                      "lowercase": True, "strip_accents": True, "max_tokens":
                      tokenizer.truncation["max_length"]},
        "labels": list(run.labels),
        "fallback": {"intent": artifacts.DEFAULT_FALLBACK_INTENT,
                     "threshold": float(run.fallback_thresholds[model_type]),
                     "margin": float(run.fallback_margin), "no_words": NO_WORDS_RULE,
                     "rule": "fallback when the top probability < threshold, or the top two "
                             "are closer than margin"},
        "answer": {"model_type": model_type,
                   "exported_members": [{"name": m.name, "weight": m.weight} for m in members],
                   "left_out_members": [{"name": m.name, "weight": m.weight, "why": why}
                                        for m, why in left_out]},
        "entities": entity_export.write_export(run, entities, staging, probes),
        "source_run": run.run_info,
        "verification": verification,
    }
    (staging / DESCRIPTION_FILE).write_text(json.dumps(description, indent=2) + "\n",
                                            encoding="utf-8")
    return description


def tokenizer_version():
    return _needs("tokenizers").__version__


def read_description(directory):
    """An export's description, its model file checked against it (ArtifactError if not)."""
    directory = Path(directory)
    try:
        description = json.loads((directory / DESCRIPTION_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ArtifactError(f"{directory / DESCRIPTION_FILE}: not a readable export "
                            f"description ({error}); export again") from None
    if description.get("format") != FORMAT:
        raise ArtifactError(f"{directory / DESCRIPTION_FILE}: not an intentkit export")
    model = directory / description["model"]["file"]
    if not model.is_file() or artifacts.sha256(model) != description["model"]["sha256"]:
        raise ArtifactError(f"{model}: does not match {DESCRIPTION_FILE} (changed or from "
                            "another export); export again")
    return description
