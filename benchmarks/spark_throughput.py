"""Labelling a file on Spark `local[2]` against `intentkit predict --file` on the same machine
(issue 27, docs/export.md "Measured").

    python benchmarks/spark_throughput.py -m RUN [--messages 1000000] [--master local[2]]
                                          [--out PREFIX]

Writes --messages distinct messages (seeded word sequences from the run's vocabulary, so that no
answer comes from a cache) to a text file, one a line, then times, each as a fresh process from
start to exit: `intentkit predict -m RUN --file IN -o OUT.jsonl` (the Predictor in chunks on
both cores) and `intentkit predict --spark --file IN -o OUT.parquet -m RUN --master MASTER`
(one Predictor per Spark Python worker). Both answers are compared (the same intent for every
message). The Spark command is also timed on the first --small messages: the difference is the
steady rate without the job's fixed cost (JVM, workers, Predictor loads, output read back).
Gives each one's messages per second, Spark's steady rate per core, and what it extrapolates to
on N executors of 4 cores (the per-core rate times 4N; the fixed cost aside).
Writes PREFIX.json (default docs/benchmarks/spark_throughput-DATE.json) with the load average:
the machine is shared.
"""
import argparse
import datetime
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
INTENTKIT = str(Path(sys.executable).with_name("intentkit"))


def make_messages(run_dir, count, seed=0):
    from intentkit import artifacts
    run = artifacts.open_published(run_dir, "single")
    words = [w for w in run.preprocessor.words() if w.isalpha()] or ["hello"]
    rng = random.Random(seed)
    made, seen = [], set()
    while len(made) < count:
        text = " ".join(rng.choice(words) for _ in range(rng.randint(3, 12)))
        if text not in seen:
            seen.add(text)
            made.append(text)
    return made


def timed(command):
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    return seconds


def spark_intents(path):
    import pyarrow.parquet as pq
    table = pq.read_table(path, columns=["text", "intent"]).to_pydict()
    return dict(zip(table["text"], table["intent"]))


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-m", "--model-dir", required=True)
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--small", type=int, default=200,
                        help="messages of the Spark run that measures the fixed cost")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks" /
                        f"spark_throughput-{datetime.date.today()}")
    args = parser.parse_args()
    cores = int(args.master[len("local["):-1]) if args.master.startswith("local[") else None
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        messages = make_messages(args.model_dir, args.messages)
        source = scratch / "messages.txt"
        source.write_text("\n".join(messages) + "\n", encoding="utf-8")
        plain_s = timed([INTENTKIT, "predict", "-m", args.model_dir, "--file", str(source),
                         "-o", str(scratch / "plain.jsonl")])
        def spark_run(path, out):
            return timed([INTENTKIT, "predict", "--spark", "--file", str(path), "-o", str(out),
                          "-m", args.model_dir, "--master", args.master])
        small = scratch / "small.txt"
        small.write_text("\n".join(messages[:args.small]) + "\n", encoding="utf-8")
        small_s = spark_run(small, scratch / "small.parquet")
        spark_s = spark_run(source, scratch / "spark.parquet")
        with open(scratch / "plain.jsonl", encoding="utf-8") as answers:
            plain = [json.loads(line)["intent"] for line in answers]
        labelled = spark_intents(scratch / "spark.parquet")
        agreement = sum(labelled[text] == intent for text, intent in zip(messages, plain))
    load_after = os.getloadavg()
    results = {
        "messages": args.messages,
        "predict_file": {"seconds": round(plain_s, 1),
                         "messages_per_s": round(args.messages / plain_s, 1)},
        "spark": {"master": args.master, "seconds": round(spark_s, 1),
                  "messages_per_s": round(args.messages / spark_s, 1),
                  "small_run": {"messages": args.small, "seconds": round(small_s, 1)},
                  "steady_messages_per_s": round((args.messages - args.small)
                                                 / max(spark_s - small_s, 1e-9), 1)},
        "same_intent": agreement / args.messages,
        "spark_vs_predict_file": round(plain_s / spark_s, 3),
    }
    if cores:
        per_core = results["spark"]["steady_messages_per_s"] / cores
        results["spark"]["steady_messages_per_s_per_core"] = round(per_core, 1)
        results["extrapolated_messages_per_s"] = {
            f"{n} executors x 4 cores": round(per_core * n * 4) for n in (10, 50)}
    payload = {"date": str(datetime.date.today()), "cpus": os.cpu_count(),
               "load_average_before": load_before, "load_average_after": load_after,
               "command": " ".join(["python", "benchmarks/spark_throughput.py", *sys.argv[1:]]),
               "results": results}
    args.out.with_suffix(".json").write_text(json.dumps(payload, indent=2) + "\n")
    print(json.dumps(payload, indent=2))


if __name__ == "__main__":
    main()
