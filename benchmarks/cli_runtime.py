"""Cold start and warm latency of the two runtimes, as a user meets them (issue 30, docs/cli.md).

    python benchmarks/cli_runtime.py --model-dir MODEL_DIR --data INTENTS_FILE
                                     [--calls 300] [--cold-runs 3]

For the "numpy" runtime (the default of `intentkit predict`, `serve` and
`predict_intent_improved`, as "auto", wherever it runs the model) and the "keras" one:
- cold start of `intentkit predict -m DIR TEXT`: a fresh process, wall time from start to exit,
  the median of --cold-runs runs (each with another message);
- cold start of `predict_intent_improved(TEXT)` in a fresh process (import, load, one answer);
- p50/p99 of warm single calls over --calls distinct messages (the data file's patterns, message
  cache off: repeats would be answered from the cache and measure nothing);
- agreement: the largest difference of a probability between the two runtimes on those messages.
Writes docs/benchmarks/cli_runtime-DATE.json (with the load average: timings on a shared machine).
"""
import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT_DIR = ROOT / "docs" / "benchmarks"
RUNTIMES = ("numpy", "keras")

IMPROVED = """
import sys, time
started = time.perf_counter()
from predict import predict_intent_improved
result = predict_intent_improved(sys.argv[1], sys.argv[2], sys.argv[3], runtime=sys.argv[4],
                                 strict=True)
print(time.perf_counter() - started)
"""


def cold_runs(command_of, messages):
    seconds = []
    for message in messages:
        started = time.perf_counter()
        result = subprocess.run(command_of(message), cwd=ROOT, capture_output=True, text=True,
                                timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
        seconds.append(time.perf_counter() - started)
        if result.returncode != 0:
            raise SystemExit(f"{command_of(message)} failed:\n{result.stderr}")
    return round(statistics.median(seconds), 2)


def warm_latency(predictor, messages):
    times = []
    for message in messages:
        started = time.perf_counter()
        predictor.predict(message)
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return {"p50_ms": round(times[len(times) // 2], 2),
            "p99_ms": round(times[min(len(times) - 1, int(len(times) * 0.99))], 2)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--data", required=True, help="intents file: its patterns are the "
                        "messages")
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--cold-runs", type=int, default=3)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from intentkit import artifacts
    from intentkit.data.intents import load_intents
    from intentkit.serving.predictor import Predictor
    model = f"{args.model_dir}/{artifacts.MODEL_FILE}"
    preprocessor = f"{args.model_dir}/{artifacts.PREPROCESSOR_FILE}"
    messages = list(dict.fromkeys(load_intents(args.data).texts))
    random.Random(0).shuffle(messages)
    cold_messages, warm_messages = (messages[:args.cold_runs],
                                    messages[args.cold_runs:args.cold_runs + args.calls])
    results = {}
    for runtime in RUNTIMES:
        cli = cold_runs(lambda text, runtime=runtime: [
            sys.executable, "-m", "intentkit", "-q", "predict", "-m", args.model_dir,
            "--runtime", runtime, text], cold_messages)
        improved = cold_runs(lambda text, runtime=runtime: [
            sys.executable, "-c", IMPROVED, text, model, preprocessor, runtime], cold_messages)
        results[runtime] = {"cold_start_cli_s": cli, "cold_start_predict_intent_improved_s":
                            improved}
        print(runtime, results[runtime], flush=True)
    # Warm calls in this process, the runtimes one after the other (TensorFlow imported last).
    predictors = {runtime: Predictor(model, preprocessor, runtime=runtime, cache_size=0)
                  for runtime in RUNTIMES}
    for runtime, predictor in predictors.items():
        results[runtime].update(warm_latency(predictor, warm_messages))
        print(runtime, results[runtime], flush=True)
    difference = max(
        abs(a - b) for text in warm_messages[:100] for a, b in zip(
            predictors["numpy"].predict_proba([text])[0],
            predictors["keras"].predict_proba([text])[0]))
    report = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "command": " ".join(["python", "benchmarks/cli_runtime.py", *sys.argv[1:]]),
              "load_average_1m_at_end": round(os.getloadavg()[0], 2),
              "cpus": os.cpu_count(), "python": platform.python_version(),
              "model_default": predictors["numpy"].model_type, "messages_warm": len(warm_messages),
              "cold_runs": len(cold_messages), "runtimes": results,
              "max_probability_difference": float(difference)}
    out = OUT_DIR / f"cli_runtime-{report['date'][:10]}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
