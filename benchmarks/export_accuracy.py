"""What exporting costs on the harness sets: the exported (ONNX) answer's accuracy against the
full one, and the int8 encoder's accuracy and speed against fp32.

    python benchmarks/export_accuracy.py [--sets shipped banking77:10 clinc150:10]
                                         [--runs DIR] [--out PREFIX]

Each set is trained once with the default configuration (`jobs.py`'s pipeline, the set's official
test rows as its test data, as benchmarks/run.py does) into DIR/<set> and reused by later runs
(delete it to retrain). Then, on the set's in-scope test rows:

- full: the Predictor's default answer (every member, the run's own tokenizer and lemmas);
- exported: `intentkit export --format onnx` of the run, run by ONNX Runtime on ids from the
  `tokenizers` library (the members the export holds, their weights renormalised);
- int8: the same export with the encoder quantized statically (calibrated on training texts);
  speed is single-message latency (p50) and batch throughput of the encoder+head graph.

Writes PREFIX.json and prints a markdown table (default docs/benchmarks/export_accuracy-DATE).
"""
import argparse
import datetime
import logging
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from common import ROOT, load_set, report

from intentkit.runtime import import_tensorflow_quietly

import_tensorflow_quietly()

from intentkit import artifacts
from intentkit.data.intents import load_examples, load_intents
from intentkit.serving.predictor import Predictor
from intentkit.training.config import TrainConfig
from intentkit.training.pipeline import split_first, train

log = logging.getLogger(__name__)
SETS = ("shipped", "banking77:10", "clinc150:10")


def trained_run(spec, runs):
    """(run directory, test texts, test labels, training texts) of a set, training it once."""
    directory = runs / spec.replace(":", "-")
    work = directory / "data"
    if not (directory / "model" / artifacts.MANIFEST_FILE).exists():
        work.mkdir(parents=True, exist_ok=True)
        train_path, test_path = load_set(spec, work)
        config = TrainConfig(data=str(train_path), out=str(directory / "model"),
                             **({"test_data": str(test_path)} if test_path else {}))
        started = time.perf_counter()
        train(config)
        (directory / "train_seconds").write_text(f"{time.perf_counter() - started:.0f}")
    train_path = (ROOT / "filesTech" / "final.json" if spec == "shipped"
                  else work / "train.json")
    config = TrainConfig(data=str(train_path), out=str(directory / "model"))
    split = split_first(load_intents(train_path), config)
    if spec == "shipped":
        test_texts, test_labels = split.test_texts, split.test_labels
    else:
        test_texts, test_labels = load_examples(work / "test_in_scope.json")
    return directory / "model", list(test_texts), list(test_labels), list(split.train_texts)


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", nargs="+", default=SETS)
    parser.add_argument("--runs", type=Path, default=ROOT / "benchmarks" / "results" / "runs")
    parser.add_argument("--train-only", action="store_true")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks" /
                        f"export_accuracy-{datetime.date.today()}")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    for noisy in ("absl", "tensorflow", "h5py", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    from intentkit.serving import onnx_export as export
    results = {}
    for spec in args.sets:
        model_dir, texts, labels, train_texts = trained_run(spec, args.runs)
        if args.train_only:
            continue
        predictor = Predictor(model_dir / artifacts.MODEL_FILE,
                              model_dir / artifacts.PREPROCESSOR_FILE, runtime="numpy",
                              cache_size=0)
        full = predictor.predict_proba(texts)
        row = {"test_rows": len(texts), "full_accuracy": accuracy(full, labels,
                                                                  predictor.labels)}
        with tempfile.TemporaryDirectory() as scratch:
            for name, int8 in (("fp32", False), ("int8", True)):
                out = Path(scratch) / name
                description = export.export_onnx(model_dir, out, int8=int8,
                                                 calibration_texts=train_texts)
                session = export.session(out / export.MODEL_FILE)
                tokenizer = export.load_tokenizer(out)
                probabilities = export.run_exported(session, tokenizer, texts)
                row[name] = {"accuracy": accuracy(probabilities, labels, description["labels"]),
                             "model_mb": description["model"]["bytes"] / 1e6,
                             "members": [m["name"] for m in
                                         description["answer"]["exported_members"]],
                             "latency_p50_ms": latency(session, tokenizer, texts[:200])}
        row["uptime"] = os.getloadavg()
        results[spec] = row
        log.info("%s: %s", spec, row)
        write_results(results, args.out)  # after each set: a later one may not finish


def write_results(results, out):
    """The table of the sets measured so far, printed, and out.json."""
    report(["set", "full answer", "exported fp32", "exported int8", "int8 loss (points)",
            "fp32 / int8 p50 ms", "fp32 / int8 MB"],
           [[spec, f"{r['full_accuracy'] * 100:.2f} %", f"{r['fp32']['accuracy'] * 100:.2f} %",
             f"{r['int8']['accuracy'] * 100:.2f} %",
             f"{(r['fp32']['accuracy'] - r['int8']['accuracy']) * 100:.2f}",
             f"{r['fp32']['latency_p50_ms']:.1f} / {r['int8']['latency_p50_ms']:.1f}",
             f"{r['fp32']['model_mb']:.0f} / {r['int8']['model_mb']:.0f}"]
            for spec, r in results.items()],
           {"date": str(datetime.date.today()), "results": results},
           out.with_suffix(".json"))


def accuracy(probabilities, labels, names):
    predicted = np.array(names, dtype=object)[probabilities.argmax(axis=1)]
    return float((predicted == np.array(labels, dtype=object)).mean())


def latency(session, tokenizer, texts):
    """p50 ms of one message at a time (one thread), after 20 warm-up calls."""
    from intentkit.serving import onnx_export as export
    for text in texts[:20]:
        export.run_exported(session, tokenizer, [text])
    times = []
    for text in texts:
        started = time.perf_counter()
        export.run_exported(session, tokenizer, [text])
        times.append((time.perf_counter() - started) * 1000)
    return float(np.percentile(times, 50))


if __name__ == "__main__":
    main()
