"""A bounded load test of `intentkit serve --workers N` on loopback.

    python benchmarks/load_test.py [--model-dir filesTech] [--workers 2] [--clients 8]
                                   [--requests 1000] [--batch-every 10] [--batch-size 10]
                                   [--per-connection 100] [--model default|single|ensemble]
                                   [--runtime numpy] [--cache-size 0] [--republish]
                                   [--data filesTech/final.json]

Needs a trained model (`python jobs.py`) and the service's extra (requirements-serve.txt).
Serves a copy of --model-dir (a re-publish never touches the original) with
`python -m intentkit.serve --workers N` on a free loopback port and waits until every worker
has answered. Then --clients client processes each send 3 unmeasured requests (warm-up) and,
together once all are ready, --requests requests over keep-alive connections (http.client),
opening a new one every --per-connection requests (a new connection goes to whichever worker
accepts it first): POST /predict with one message, and every --batch-every-th request
POST /predict/batch with --batch-size messages. Messages are the patterns of --data, in
another order per client. --cache-size 0 (default) turns the service's message cache off, so
every message runs the model, as distinct traffic would. --republish publishes the served run
again as a new run (copies of the same files, a new run id) once half the requests are
answered, and checks that every worker then reports the new run.

Reports: errors (an answer other than 200, or a failed connection: there must be none; the
exit code is 1 otherwise), p50/p99 latency of each kind of request (client side, from sending
to the last byte), requests/s and messages/s over the whole load, the requests each worker
answered, and each worker's memory at the end (VmRSS and peak VmHWM from /proc/PID/status;
psutil's RSS where /proc is missing). Prints a markdown table and writes
benchmarks/results/load_test.json.
"""
import argparse
import http.client
import json
import multiprocessing
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KINDS = ("single", "batch")
WARM_UP = 3  # unmeasured requests of each client before the clock starts
READY_SECONDS = 300


def get(port, path):
    """(status, JSON) of one GET on a fresh connection."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def connect(port):
    """A keep-alive connection and the pid of the worker it reached (it stays there)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    connection.request("GET", "/health")
    response = connection.getresponse()
    return connection, json.loads(response.read())["pid"]


def post(connection, path, body):
    connection.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
    response = connection.getresponse()
    return response.status, response.read()


def client(port, texts, plan, seed, ready, go, answered, results):
    """One client process: plan["requests"] requests after `go`, over keep-alive connections
    renewed every plan["per_connection"] requests. Puts {"latencies": {kind: [seconds]},
    "errors": [...], "workers": {pid: requests}} on `results`."""
    rng = random.Random(seed)
    texts = texts[:]
    rng.shuffle(texts)
    latencies = {kind: [] for kind in KINDS}
    errors, workers = [], {}
    connection, worker = connect(port)
    for text in texts[-WARM_UP:]:  # unmeasured: WordNet and the caches of its worker warm up
        post(connection, "/predict", {"text": text})
    with ready.get_lock():
        ready.value += 1
    go.wait()
    position = 0
    for number in range(plan["requests"]):
        every = plan["batch_every"]
        kind = "batch" if every and number % every == every - 1 else "single"
        count = plan["batch_size"] if kind == "batch" else 1
        chunk = [texts[(position + i) % len(texts)] for i in range(count)]
        position += count
        path, body = (("/predict/batch", {"texts": chunk}) if kind == "batch"
                      else ("/predict", {"text": chunk[0]}))
        try:
            if connection is None or number % plan["per_connection"] == 0:
                if connection is not None:
                    connection.close()
                connection, worker = connect(port)
            started = time.perf_counter()
            status, data = post(connection, path, body)
            elapsed = time.perf_counter() - started
            if status != 200:
                errors.append(f"{kind}: {status} {data[:200]!r}")
            else:
                answers = json.loads(data)
                if len(answers["results"] if kind == "batch" else [answers]) != count:
                    errors.append(f"{kind}: {count} messages, another number of answers")
                latencies[kind].append(elapsed)
                workers[worker] = workers.get(worker, 0) + 1
        except (OSError, http.client.HTTPException, ValueError, KeyError) as error:
            errors.append(f"{kind}: {type(error).__name__}: {error}")
            if connection is not None:
                connection.close()
            connection = None
        with answered.get_lock():
            answered.value += 1
    if connection is not None:
        connection.close()
    results.put({"latencies": latencies, "errors": errors, "workers": workers})


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def republish(out):
    """Publish the current run of `out` again as a new run (copies of its files): what a
    retrain does, with the same model. Returns the new run id."""
    from intentkit import artifacts
    current = (out / artifacts.RUNS_DIR / artifacts.CURRENT_RUN).resolve()
    staging = Path(tempfile.mkdtemp(prefix=artifacts.STAGING_PREFIX, dir=out))
    for entry in current.iterdir():
        if entry.is_dir():
            shutil.copytree(entry, staging / entry.name, copy_function=shutil.copy)
        else:
            shutil.copy(entry, staging / entry.name)
    artifacts.publish(staging, out)
    return (out / artifacts.RUNS_DIR / artifacts.CURRENT_RUN).resolve().name


def workers_reporting(port, run, pids, seconds=120):
    """The worker pids that answer /health with model run `run`, asking on fresh connections
    (each may reach any worker) until all of `pids` did or `seconds` passed."""
    seen = set()
    deadline = time.monotonic() + seconds
    while not pids <= seen and time.monotonic() < deadline:
        status, body = get(port, "/health")
        if status == 200 and body["model"]["run"] == run:
            seen.add(body["pid"])
    return seen


def memory_mib(pid):
    """(RSS, peak RSS) of a process in MiB: /proc/PID/status (VmRSS, VmHWM) where it exists,
    else psutil (RSS only)."""
    status = Path(f"/proc/{pid}/status")
    if status.exists():
        fields = dict(line.split(":", 1) for line in status.read_text().splitlines()
                      if ":" in line)
        return tuple(round(int(fields[key].split()[0]) / 1024) for key in ("VmRSS", "VmHWM"))
    import psutil  # not Linux
    return round(psutil.Process(pid).memory_info().rss / 2**20), None


def percentile(values, share):
    """The percentile of `values` (seconds) in milliseconds, as benchmarks/latency.py counts."""
    import numpy as np
    return round(float(np.percentile(np.array(values) * 1000, share)), 2) if values else None


def collect(results, clients):
    """Each client's result; a client that died without one is an error, not a hang."""
    import queue
    collected = []
    while len(collected) < len(clients):
        try:
            collected.append(results.get(timeout=1))
        except queue.Empty:
            if not any(c.is_alive() for c in clients) and results.empty():
                dead = len(clients) - len(collected)
                collected += [{"latencies": {kind: [] for kind in KINDS}, "workers": {},
                               "errors": ["a client process died"]}] * dead
    return collected


def start_service(args, out, port, log):
    command = [sys.executable, "-m", "intentkit.serve", "--model-dir", str(out), "--workers",
               str(args.workers), "--port", str(port), "--runtime", args.runtime,
               "--cache-size", str(args.cache_size)]
    if args.model != "default":
        command.append(f"--{args.model}")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
                               start_new_session=True)
    pids, model = set(), None
    deadline = time.monotonic() + READY_SECONDS
    while len(pids) < args.workers:
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the service did not start with {args.workers} workers answering "
                             f"in {READY_SECONDS} s; its log: {log.name}")
        try:
            status, body = get(port, "/health")
        except OSError:
            time.sleep(0.5)
            continue
        if status == 200:
            pids.add(body["pid"])
            model = body["model"]
    return process, pids, model


def stop_service(process):
    process.send_signal(signal.SIGTERM)  # uvicorn's parent stops its workers
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", default=ROOT / "filesTech", type=Path)
    parser.add_argument("--data", default=ROOT / "filesTech" / "final.json", type=Path,
                        help="intents file whose patterns are the messages sent")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=1000, help="per client")
    parser.add_argument("--batch-every", type=int, default=10,
                        help="every Nth request is a batch (0: none)")
    parser.add_argument("--batch-size", type=int, default=10)
    parser.add_argument("--per-connection", type=int, default=100,
                        help="requests on one keep-alive connection before a client opens "
                        "another (each new connection goes to whichever worker accepts it)")
    parser.add_argument("--model", choices=("default", "single", "ensemble"), default="default",
                        help="which model answers (default: the run's default answer)")
    parser.add_argument("--runtime", choices=("numpy", "keras"), default="numpy")
    parser.add_argument("--cache-size", type=int, default=0,
                        help="the service's message cache (default 0: every message runs the "
                        "model)")
    parser.add_argument("--republish", action="store_true",
                        help="publish the run again halfway; every worker must pick it up")
    parser.add_argument("--out", default=ROOT / "benchmarks" / "results" / "load_test.json")
    args = parser.parse_args()
    from common import report  # here: client processes (spawned) import this module too

    from intentkit import artifacts
    from intentkit.data.intents import load_intents
    if not (args.model_dir / artifacts.PREPROCESSOR_FILE).exists():
        sys.exit(f"no model in {args.model_dir}: run `python jobs.py` first")
    current = args.model_dir / artifacts.RUNS_DIR / artifacts.CURRENT_RUN
    if args.republish and not current.exists():
        sys.exit(f"{args.model_dir} is not a published run (no {artifacts.RUNS_DIR}/"
                 f"{artifacts.CURRENT_RUN}): --republish needs one")
    texts = list(dict.fromkeys(load_intents(args.data).texts))
    total = args.clients * args.requests
    with tempfile.TemporaryDirectory(prefix="load-test-") as work:
        out = Path(work) / "model"
        shutil.copytree(args.model_dir, out, symlinks=True)
        port = free_port()
        with open(Path(work) / "serve.log", "wb") as log:
            process, pids, served = start_service(args, out, port, log)
            try:
                context = multiprocessing.get_context("spawn")
                ready, go = context.Value("l", 0), context.Event()
                answered, results = context.Value("l", 0), context.Queue()
                plan = {name: getattr(args, name) for name in (
                    "requests", "batch_every", "batch_size", "per_connection")}
                clients = [context.Process(target=client, args=(
                    port, texts, plan, seed, ready, go, answered, results))
                    for seed in range(args.clients)]
                for process_ in clients:
                    process_.start()
                while ready.value < len(clients):  # the clock starts when all can send
                    time.sleep(0.05)
                load_before = os.getloadavg()
                started = time.perf_counter()
                go.set()
                republished = None
                if args.republish:
                    while answered.value < total // 2 and any(p.is_alive() for p in clients):
                        time.sleep(0.05)
                    run = republish(out)
                    republished = {"at_request": answered.value, "run": run}
                collected = collect(results, clients)
                seconds = time.perf_counter() - started
                load_after = os.getloadavg()
                for process_ in clients:
                    process_.join()
                if republished:
                    seen = workers_reporting(port, republished["run"], pids)
                    republished["workers_reporting_it"] = len(seen & pids)
                memory = {pid: memory_mib(pid) for pid in sorted(pids)}
                supervisor = memory_mib(process.pid)
            finally:
                stop_service(process)
    errors = [error for result in collected for error in result["errors"]]
    latencies = {kind: [s for result in collected for s in result["latencies"][kind]]
                 for kind in KINDS}
    per_request = {"single": 1, "batch": args.batch_size}
    messages = sum(len(latencies[kind]) * per_request[kind] for kind in KINDS)
    answered_by = {}
    for result in collected:
        for pid, count in result["workers"].items():
            answered_by[pid] = answered_by.get(pid, 0) + count
    rows = {kind: {"requests": len(latencies[kind]),
                   "messages": len(latencies[kind]) * per_request[kind],
                   "p50_ms": percentile(latencies[kind], 50),
                   "p99_ms": percentile(latencies[kind], 99)} for kind in KINDS}
    summary = {"errors": len(errors), "seconds": round(seconds, 1),
               "requests_per_s": round(sum(len(v) for v in latencies.values()) / seconds, 1),
               "messages_per_s": round(messages / seconds, 1)}
    workers = {str(pid): {"requests": answered_by.get(pid, 0), "rss_mib": memory[pid][0],
                          "peak_rss_mib": memory[pid][1]} for pid in sorted(pids)}
    payload = {"workers": args.workers, "clients": args.clients, "requests": total,
               "batch_every": args.batch_every, "batch_size": args.batch_size,
               "per_connection": args.per_connection,
               "model": args.model, "runtime": args.runtime, "cache_size": args.cache_size,
               "model_run": served["run"], "model_type": served["type"],
               "load_average_before": load_before,
               "load_average_after": load_after, **summary,
               "kinds": rows, "per_worker": workers,
               "supervisor_rss_mib": supervisor[0], "republished": republished,
               "first_errors": errors[:20]}
    table = [[kind, f"{row['requests']:,}", f"{row['messages']:,}", row["p50_ms"],
              row["p99_ms"]] for kind, row in rows.items()]
    table.append(["all", f"{sum(r['requests'] for r in rows.values()):,}", f"{messages:,}",
                  f"{summary['requests_per_s']} req/s", f"{summary['messages_per_s']} msg/s"])
    report(["kind", "requests", "messages", "p50 ms", "p99 ms"], table, payload, args.out)
    print(f"{args.workers} worker(s), {served['type']} model, {args.runtime} runtime, "
          f"{seconds:.0f} s; load average {load_before[0]:.2f} before, {load_after[0]:.2f} after")
    for pid, row in workers.items():
        print(f"worker {pid}: {row['requests']:,} requests, RSS {row['rss_mib']} MiB "
              f"(peak {row['peak_rss_mib']} MiB)")
    print(f"errors: {len(errors)}" + (f" (first: {errors[0]})" if errors else ""))
    if republished:
        print(f"re-published at request {republished['at_request']:,}: run "
              f"{republished['run']} reported by {republished['workers_reporting_it']} of "
              f"{len(pids)} workers")
    if errors or (republished and republished["workers_reporting_it"] < len(pids)):
        sys.exit(1)


if __name__ == "__main__":
    main()
