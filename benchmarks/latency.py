"""Serving speed and memory of the trained model, against the seed's load-per-call approach.

    python benchmarks/latency.py [--model-dir filesTech] [--calls 10000]

Needs a trained model (`python jobs.py`). Measures, in this one run:
- cold start: a fresh process that imports predict, loads and answers one message;
- warm single-call latency p50/p99 of predict_intent_improved, for the single model and the
  ensemble, on the Keras runtime (tf.function) and the TensorFlow-free NumPy runtime;
- batch throughput of Predictor.predict_batch;
- resident memory after 100 and after --calls calls;
- the seed's way: load the .h5 and pickle on every call and use model.predict (a few calls).
Prints a markdown table and writes benchmarks/results/latency.json.
"""
import argparse
import pickle
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from common import report  # noqa: E402
from intentkit.runtime import import_tensorflow_quietly  # noqa: E402

import_tensorflow_quietly()

import keras  # noqa: E402
import numpy as np  # noqa: E402

from intentkit import artifacts  # noqa: E402
from intentkit.predict import Predictor, predict_intent_improved  # noqa: E402

MESSAGES = ["hi there", "how much does a data engineer make in berlin",
            "can you look over my resume before i apply", "i got an offer, what now?",
            "any remote python jobs?", "thanks, bye", "how do i prepare for a system design round",
            "is my application still being reviewed"]


def rss_mib():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("needs Linux /proc to read resident memory")


def percentiles(seconds):
    milliseconds = np.array(seconds) * 1000
    return {"p50_ms": round(float(np.percentile(milliseconds, 50)), 3),
            "p99_ms": round(float(np.percentile(milliseconds, 99)), 3)}


def cold_start(paths, ensemble, runtime):
    code = ("import time; t = time.perf_counter(); from predict import predict_intent_improved;"
            f"r = predict_intent_improved('hello', model_path={str(paths['model_path'])!r}, "
            f"preprocessor_path={str(paths['preprocessor_path'])!r}, use_ensemble={ensemble}, "
            f"runtime={runtime!r});"
            "assert r['model_type'] != 'error', r; print(time.perf_counter() - t)")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, check=True)
    return round(float(result.stdout.strip().splitlines()[-1]), 2)


def warm(paths, ensemble, runtime, calls):
    predict_intent_improved(MESSAGES[0], **paths, use_ensemble=ensemble, runtime=runtime)
    timings = []
    rss_after_100 = None
    for call in range(calls):
        text = MESSAGES[call % len(MESSAGES)]
        started = time.perf_counter()
        predict_intent_improved(text, **paths, use_ensemble=ensemble, runtime=runtime)
        timings.append(time.perf_counter() - started)
        if call + 1 == 100:
            rss_after_100 = rss_mib()
    return {**percentiles(timings), "rss_after_100_mib": round(rss_after_100, 1),
            f"rss_after_{calls}_mib": round(rss_mib(), 1),
            "rss_growth_percent": round(100 * (rss_mib() / rss_after_100 - 1), 2)}


def batch_throughput(paths, ensemble, runtime, size=2000):
    predictor = Predictor(**paths, use_ensemble=ensemble, runtime=runtime)
    texts = [MESSAGES[i % len(MESSAGES)] for i in range(size)]
    predictor.predict_batch(texts[:10])
    started = time.perf_counter()
    predictor.predict_batch(texts)
    return round(size / (time.perf_counter() - started))


def seed_load_per_call(paths, calls=20):
    """The seed: unpickle and load the model on every call, then model.predict on one row."""
    timings = []
    for call in range(calls):
        started = time.perf_counter()
        with open(paths["preprocessor_path"], "rb") as file:
            bundle = pickle.load(file)
        model = keras.models.load_model(paths["model_path"], compile=False)
        ids = bundle["preprocessor"].transform([MESSAGES[call % len(MESSAGES)]])
        model.predict(ids, verbose=0)
        timings.append(time.perf_counter() - started)
    return percentiles(timings)


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", default=ROOT / "filesTech", type=Path)
    parser.add_argument("--calls", type=int, default=10_000)
    parser.add_argument("--out", default=ROOT / "benchmarks" / "results" / "latency.json")
    args = parser.parse_args()
    paths = {"model_path": args.model_dir / artifacts.MODEL_FILE,
             "preprocessor_path": args.model_dir / artifacts.PREPROCESSOR_FILE}
    if not paths["model_path"].exists():
        sys.exit(f"no model in {args.model_dir}: run `python jobs.py` first")
    results = {}
    for runtime in ("keras", "numpy"):
        for model, ensemble in (("single", False), ("ensemble", True)):
            name = f"{model}, {runtime}"
            results[name] = {"cold_start_s": cold_start(paths, ensemble, runtime),
                             **warm(paths, ensemble, runtime, args.calls),
                             "batch_per_s": batch_throughput(paths, ensemble, runtime)}
            print(name, results[name], flush=True)
    results["seed load-per-call"] = seed_load_per_call(paths)
    print("seed load-per-call", results["seed load-per-call"], flush=True)
    columns = ["cold_start_s", "p50_ms", "p99_ms", "batch_per_s", "rss_after_100_mib",
               f"rss_after_{args.calls}_mib", "rss_growth_percent"]
    report(["path", *columns], [[name, *(row.get(c, "–") for c in columns)]
                                for name, row in results.items()],
           {"calls": args.calls, "results": results}, args.out)

if __name__ == "__main__":
    main()
