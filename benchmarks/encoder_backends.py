"""The sentence encoder's forward pass: NumPy (the reference) against ONNX Runtime, fp32 and int8.

    python benchmarks/encoder_backends.py [--data filesTech/final.json] [--model-dir DIR]
                                          [--rounds 3] [--no-accuracy]

Systems: the NumPy forward; ONNX Runtime fp32 (intentkit.encoders.onnx_forward, the backend used
where the
`onnx` extra is installed); ONNX Runtime int8: onnxruntime.quantization.quantize_dynamic of that
graph's MatMul and Attention weights (activations quantized on the fly), per tensor and per
output channel. On the distinct patterns of --data, with the systems interleaved (every message
timed on each system in turn, every round of a measure run on each system in turn), so that load
from other processes falls on all of them alike:
- single: p50/p99 of a warm `embed([text])` (WordPiece included; one thread), every pattern once,
  in wall time and in the calling thread's CPU time (what an idle core would take, nearly: a busy
  machine delays a thread far more than it slows it);
- batch: messages/s of one `embed(patterns)` (equal-length batches on SentenceEncoder's worker
  threads), and messages per CPU-second of the process (two idle cores give at most twice that),
  the median of --rounds;
- cold start: a fresh process imports, loads the weights, builds the graph (and quantizes it),
  embeds one message; the median of --rounds; then its peak RSS after 200 more messages;
- max |difference| from the NumPy embeddings, over the patterns and the accuracy sets;
- accuracy (the int8 rule: within 0.2 points): logistic regression (C = 10) on each system's
  embeddings, trained on CLINC150 and Banking77 10-shot (benchmarks/common.py, seed 0), accuracy
  on their in-scope test rows;
- with --model-dir (a trained run with the MiniLM member): the ensemble's answer (Predictor, NumPy
  runtime, message cache off) with its encoder on NumPy and on ONNX fp32, single and batch.
Prints markdown tables with the load average, writes benchmarks/results/encoder_backends.json.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from intentkit.encoders import onnx_forward
from intentkit.encoders.minilm import HIDDEN, INTERMEDIATE, LAYERS, SentenceEncoder

ROOT = Path(__file__).resolve().parent.parent

SYSTEMS = ("NumPy fp32", "ONNX fp32", "ONNX int8 per tensor", "ONNX int8 per channel")
COLD_START_CALLS = 200
PEER_C = 10.0
# A fresh process: import, load, first answer (timed); 200 more answers; peak RSS.
COLD_START = """
import json, sys, time
started = time.perf_counter()
sys.path.insert(0, {benchmarks!r})
from encoder_backends import make_encoder
encoder = make_encoder({system!r})
encoder.embed(["hello"])
seconds = time.perf_counter() - started
for text in json.loads(sys.stdin.read()):
    encoder.embed([text])
peak = next(int(line.split()[1]) for line in open("/proc/self/status")
            if line.startswith("VmHWM:"))
print(json.dumps({{"cold_start_s": seconds, "peak_rss_mib": peak / 1024}}))
"""


def make_encoder(system):
    """A SentenceEncoder of the package's weights running `system` (one of SYSTEMS)."""
    if system == "NumPy fp32":
        return SentenceEncoder(backend="numpy")
    encoder = SentenceEncoder(backend="onnx")
    if system != "ONNX fp32":
        forward = encoder._onnx
        forward.session = onnx_forward.session(quantized(forward.model, forward.weights,
                                                         per_channel=system.endswith("channel")),
                                               threads=forward.threads)
    return encoder


def quantized(model, weights, per_channel):
    """quantize_dynamic of the graph's MatMul and Attention weights to int8 (the embedding
    lookups stay float32: quantizing them saves memory, not time)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    with tempfile.TemporaryDirectory() as work:
        path = Path(work) / "int8.onnx"
        quantize_dynamic(onnx_forward.with_weights(model, weights), path,
                         op_types_to_quantize=["MatMul", "Attention"], per_channel=per_channel,
                         weight_type=QuantType.QInt8,
                         # the com.microsoft ops' outputs have no inferred type: they are float
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
        return onnx.load(path)


def flops(length):
    """Multiply-adds x 2 of one message of `length` tokens (matmuls and attention)."""
    dense = HIDDEN * 3 * HIDDEN + HIDDEN * HIDDEN + 2 * HIDDEN * INTERMEDIATE
    return LAYERS * 2 * (length * dense + 2 * length * length * HIDDEN)


def load():
    return "/".join(f"{value:.2f}" for value in os.getloadavg())


def percentiles(seconds, prefix=""):
    milliseconds = np.array(seconds) * 1000
    return {f"{prefix}p50_ms": round(float(np.percentile(milliseconds, 50)), 2),
            f"{prefix}p99_ms": round(float(np.percentile(milliseconds, 99)), 2)}


def interleaved_single(answers, texts):
    """{name: p50/p99} of single calls, each text answered by every system in turn: wall time,
    and the CPU time of the calling thread (all the work runs there), which a busy machine
    inflates far less: the closer estimate of an idle core."""
    for answer in answers.values():
        for text in texts[:20]:
            answer([text])
    wall = {name: [] for name in answers}
    cpu = {name: [] for name in answers}
    for text in texts:
        for name, answer in answers.items():
            started, started_cpu = time.perf_counter(), time.thread_time()
            answer([text])
            cpu[name].append(time.thread_time() - started_cpu)
            wall[name].append(time.perf_counter() - started)
    return {name: {**percentiles(wall[name]), **percentiles(cpu[name], "cpu_")}
            for name in answers}


def interleaved_batch(answers, texts, rounds):
    """{name: {median messages/s of one call on all texts, messages per CPU-second of the
    process}}, the systems in turn each round."""
    rates = {name: [] for name in answers}
    per_cpu = {name: [] for name in answers}
    for _ in range(rounds):
        for name, answer in answers.items():
            started, started_cpu = time.perf_counter(), time.process_time()
            answer(texts)
            per_cpu[name].append(len(texts) / (time.process_time() - started_cpu))
            rates[name].append(len(texts) / (time.perf_counter() - started))
    return {name: {"batch_per_s": round(float(np.median(rates[name]))),
                   "batch_per_cpu_s": round(float(np.median(per_cpu[name])))}
            for name in answers}


def cold_starts(texts, rounds):
    runs = {system: [] for system in SYSTEMS}
    for _ in range(rounds):
        for system in SYSTEMS:
            code = COLD_START.format(benchmarks=str(ROOT / "benchmarks"), system=system)
            result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True,
                                    input=json.dumps(texts[:COLD_START_CALLS]),
                                    capture_output=True, text=True)
            runs[system].append(json.loads(result.stdout.strip().splitlines()[-1]))
    return {system: {key: round(float(np.median([run[key] for run in r])), 2)
                     for key in ("cold_start_s", "peak_rss_mib")} for system, r in runs.items()}


def accuracies(encoders):
    """{set: {system: accuracy %, "max_abs_diff": {system: ...}}} of LR on frozen embeddings."""
    from common import load_set
    from sklearn.linear_model import LogisticRegression

    from intentkit.data.intents import load_examples, load_intents
    results = {}
    with tempfile.TemporaryDirectory() as work:
        for name in ("clinc150:10", "banking77:10"):
            directory = Path(work) / name.replace(":", "-")
            directory.mkdir()
            train_path, test_path = load_set(name, directory)
            train = load_intents(train_path)
            test_texts, test_labels = load_examples(test_path)
            row = {"train_rows": len(train.texts), "test_rows": len(test_texts),
                   "accuracy": {}, "max_abs_diff": {}}
            reference = None
            for system, encoder in encoders.items():
                x_train, x_test = encoder.embed(train.texts), encoder.embed(test_texts)
                if reference is None:
                    reference = np.concatenate([x_train, x_test])
                row["max_abs_diff"][system] = float(
                    np.abs(np.concatenate([x_train, x_test]) - reference).max())
                model = LogisticRegression(C=PEER_C, max_iter=3000).fit(x_train, train.labels)
                row["accuracy"][system] = round(100 * model.score(x_test, test_labels), 2)
                print(name, system, row["accuracy"][system], f"load {load()}", flush=True)
            results[name] = row
    return results


def ensemble_rows(model_dir, encoders, texts, rounds):
    """The ensemble's answer with its encoder on each fp32 backend (same run, same weights)."""
    from intentkit import artifacts
    from intentkit.serving.predictor import Predictor
    answers = {}
    for system in ("NumPy fp32", "ONNX fp32"):
        predictor = Predictor(model_dir / artifacts.MODEL_FILE,
                              model_dir / artifacts.PREPROCESSOR_FILE, use_ensemble=True,
                              runtime="numpy", cache_size=0)
        if predictor.encoder is None:
            sys.exit(f"{model_dir}: its ensemble has no member reading sentence embeddings")
        assert predictor.encoder.sha256 == encoders[system].sha256
        predictor.encoder = encoders[system]
        answers[f"ensemble answer, encoder {system}"] = predictor.predict_batch
    single = interleaved_single(answers, texts)
    batch = interleaved_batch(answers, texts, rounds)
    return {name: {**single[name], **batch[name]} for name in answers}


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=ROOT / "filesTech" / "final.json", type=Path)
    parser.add_argument("--model-dir", type=Path,
                        help="a trained run: also time the ensemble's answer")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-accuracy", action="store_true")
    parser.add_argument("--out", default=ROOT / "benchmarks" / "results" /
                        "encoder_backends.json")
    args = parser.parse_args()
    from common import report

    from intentkit.data.intents import load_intents
    if not onnx_forward.available():
        sys.exit(f"onnxruntime is not installed: {onnx_forward.INSTALL_HINT}")
    texts = list(dict.fromkeys(load_intents(args.data).texts))
    loads = {"start": load()}
    encoders = {system: make_encoder(system) for system in SYSTEMS}
    lengths = [len(encoders["NumPy fp32"].tokenizer.encode(text)) for text in texts]
    mean_flops = float(np.mean([flops(n) for n in lengths]))
    reference = encoders["NumPy fp32"].embed(texts)
    results = {}
    for system, encoder in encoders.items():
        embedded = encoder.embed(texts)
        results[system] = {"max_abs_diff": float(np.abs(embedded - reference).max()),
                           "min_cosine": round(float((embedded * reference).sum(1).min()), 4)}
    answers = {system: encoder.embed for system, encoder in encoders.items()}
    for system, row in interleaved_single(answers, texts).items():
        results[system].update(row)
    loads["after single"] = load()
    for system, row in interleaved_batch(answers, texts, args.rounds).items():
        results[system].update(row)
        results[system]["gflop_per_cpu_s"] = round(row["batch_per_cpu_s"] * mean_flops / 1e9, 1)
    loads["after batch"] = load()
    for system, row in cold_starts(texts, args.rounds).items():
        results[system].update(row)
    loads["after cold start"] = load()
    print(json.dumps(results, indent=1), flush=True)
    accuracy = None if args.no_accuracy else accuracies(encoders)
    loads["after accuracy"] = load()
    ensemble = (ensemble_rows(args.model_dir, encoders, texts, args.rounds)
                if args.model_dir else {})
    loads["end"] = load()
    columns = ["p50_ms", "p99_ms", "cpu_p50_ms", "cpu_p99_ms", "batch_per_s", "batch_per_cpu_s",
               "gflop_per_cpu_s", "cold_start_s", "peak_rss_mib", "max_abs_diff"]
    sets = list(accuracy or {})
    rows = []
    for system, row in {**results, **ensemble}.items():
        cells = [row.get(c, "–") for c in columns]
        if "max_abs_diff" in row:
            cells[-1] = f"{row['max_abs_diff']:.1e}"
        rows.append([system, *cells, *(accuracy[s]["accuracy"][system] if system in results
                                       else "–" for s in sets)])
    print(f"{len(texts)} patterns of {args.data}, {np.mean(lengths):.1f} tokens and "
          f"{mean_flops / 1e6:.0f} MFLOP a message on average; load average (1/5/15 min) "
          f"{loads}")
    report(["system", *columns, *(f"{s} accuracy %" for s in sets)], rows,
           {"data": str(args.data), "patterns": len(texts), "mean_tokens": float(np.mean(lengths)),
            "mean_mflop_per_message": round(mean_flops / 1e6, 1), "rounds": args.rounds,
            "cpus": os.cpu_count(), "load_average": loads, "results": results,
            "accuracy": accuracy, "ensemble": ensemble}, args.out)


if __name__ == "__main__":
    main()
