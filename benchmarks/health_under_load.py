"""/health latency while 42 maximal batch requests are outstanding (issue 31), on loopback.

    python benchmarks/health_under_load.py --model-dir DIR [--batches 42] [--texts 100]
        [--chars 3000] [--window 60] [--runtime numpy] [--max-in-flight 8] [--out FILE]

Starts `intentkit serve --model-dir DIR` on a free loopback port (one worker, message cache
off) and waits for /health. Then --batches client threads each send one POST /predict/batch of
--texts distinct texts of --chars characters (the service's defaults allow 100 of up to 10,000:
a maximal request of the issue's attack), and send it again after Retry-After whenever the
service answers 503 (busy), so all of them stay outstanding until answered. Meanwhile a separate
process polls GET /health every 50 ms on its own connection. After --window seconds (or when
every batch is answered, if sooner) the service is stopped with SIGTERM. Before the batches,
/health is polled the same way for --baseline-window seconds: the machine's own noise floor.

Bounded in count (--batches requests, each answered once) and time (--window, plus the
service's --shutdown-timeout). Reports /health p50/p99/max and failures, the batches answered,
refused (503) and still outstanding, and how long SIGTERM took; writes JSON to --out (default
docs/benchmarks/health_under_load-DATE.json). Target: /health p99 < 100 ms.
"""
import argparse
import http.client
import json
import multiprocessing
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORDS = ("salary engineer berlin interview resume remote python data scientist apply job how "
         "much does make what is the pay for a senior developer in london please").split()


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def health_once(port, timeout=10):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", "/health")
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def poll_health(port, stop, results, every_s=0.05):
    """A process of its own: its timings do not wait for the batch clients' GIL."""
    latencies, failures = [], 0
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    while not stop.is_set():
        started = time.perf_counter()
        try:
            connection.request("GET", "/health")
            response = connection.getresponse()
            response.read()
            if response.status != 200:
                failures += 1
            latencies.append(time.perf_counter() - started)
        except OSError:
            failures += 1
            connection.close()
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        time.sleep(max(0.0, every_s - (time.perf_counter() - started)))
    results.put({"latencies": latencies, "failures": failures})


def texts_of(seed, count, chars):
    rng = random.Random(seed)
    texts = []
    for _ in range(count):
        text = ""
        while len(text) < chars:
            text += rng.choice(WORDS) + " "
        texts.append(text[:chars])
    return texts


def batch_client(port, texts, deadline, outcome):
    """POST one batch until it is answered (again after Retry-After on 503) or the deadline."""
    body = json.dumps({"texts": texts})
    refused = 0
    while time.monotonic() < deadline:
        connection = http.client.HTTPConnection("127.0.0.1", port,
                                                timeout=max(1, deadline - time.monotonic()))
        try:
            started = time.perf_counter()
            connection.request("POST", "/predict/batch", body,
                               {"Content-Type": "application/json"})
            response = connection.getresponse()
            response.read()
            if response.status == 503:
                refused += 1
                time.sleep(float(response.getheader("Retry-After", "1")))
                continue
            outcome.append({"status": response.status, "refused": refused,
                            "seconds": time.perf_counter() - started})
            return
        except OSError:
            break
        finally:
            connection.close()
    outcome.append({"status": None, "refused": refused, "seconds": None})


def percentile(values, share):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--batches", type=int, default=42)
    parser.add_argument("--texts", type=int, default=100)
    parser.add_argument("--chars", type=int, default=3000)
    parser.add_argument("--window", type=float, default=60.0)
    parser.add_argument("--baseline-window", type=float, default=20.0,
                        help="seconds of /health polling without batches first (noise floor)")
    parser.add_argument("--runtime", default="numpy", choices=("numpy", "keras"))
    parser.add_argument("--max-in-flight", type=int, default=8)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    if not 1 <= args.batches <= 100 or not 0 < args.window <= 900:
        parser.error("--batches 1..100 and --window up to 900 s: this test is bounded")

    port = free_port()
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    service = subprocess.Popen(
        [sys.executable, "-m", "intentkit.serve", "--model-dir", args.model_dir,
         "--runtime", args.runtime, "--port", str(port), "--cache-size", "0",
         "--max-in-flight", str(args.max_in_flight), "--shutdown-timeout", "5"],
        env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        ready_by = time.monotonic() + 300
        while True:
            if service.poll() is not None:
                sys.exit(f"the service stopped: {service.stderr.read()[-2000:]}")
            try:
                if health_once(port) == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > ready_by:
                sys.exit("the service did not answer /health within 300 s")
            time.sleep(0.2)
        # The machine's own noise floor: the same polling, no batches.
        stop, results = multiprocessing.Event(), multiprocessing.Queue()
        poller = multiprocessing.Process(target=poll_health, args=(port, stop, results))
        poller.start()
        time.sleep(args.baseline_window)
        stop.set()
        baseline = results.get(timeout=60)
        poller.join(timeout=30)

        stop, results = multiprocessing.Event(), multiprocessing.Queue()
        poller = multiprocessing.Process(target=poll_health, args=(port, stop, results))
        poller.start()
        started = time.monotonic()
        deadline = started + args.window
        outcome = []
        clients = [threading.Thread(target=batch_client, daemon=True,
                                    args=(port, texts_of(seed, args.texts, args.chars),
                                          deadline, outcome))
                   for seed in range(args.batches)]
        for client in clients:
            client.start()
        for client in clients:
            client.join(timeout=max(0.0, deadline - time.monotonic()) + 5)
        loaded_s = time.monotonic() - started
        stop.set()
        health = results.get(timeout=60)
        poller.join(timeout=30)
    finally:
        stopping = time.monotonic()
        if service.poll() is None:
            service.send_signal(signal.SIGTERM)
        try:
            service.wait(timeout=60)
        except subprocess.TimeoutExpired:
            service.kill()
            service.wait()
        sigterm_s = time.monotonic() - stopping

    latencies_ms = [1000 * s for s in health["latencies"]]
    baseline_ms = [1000 * s for s in baseline["latencies"]]
    answered = [o for o in outcome if o["status"] == 200]
    report = {
        "benchmark": "health_under_load", "date": date.today().isoformat(),
        "load_average": os.getloadavg(), "cpus": os.cpu_count(),
        "settings": {"batches": args.batches, "texts": args.texts, "chars": args.chars,
                     "window_s": args.window, "runtime": args.runtime,
                     "max_in_flight": args.max_in_flight, "model_dir": args.model_dir},
        "health_without_batches": {"requests": len(baseline_ms),
                                   "failures": baseline["failures"],
                                   "p50_ms": round(percentile(baseline_ms, 0.5), 2),
                                   "p99_ms": round(percentile(baseline_ms, 0.99), 2)},
        "health": {"requests": len(latencies_ms), "failures": health["failures"],
                   "p50_ms": round(percentile(latencies_ms, 0.5), 2),
                   "p99_ms": round(percentile(latencies_ms, 0.99), 2),
                   "max_ms": round(max(latencies_ms), 2)},
        "batches": {"answered": len(answered),
                    "errors": sum(o["status"] not in (200, None) for o in outcome),
                    "outstanding_at_end": args.batches - len(outcome)
                    + sum(o["status"] is None for o in outcome),
                    "times_refused_503": sum(o["refused"] for o in outcome),
                    "answer_s_p50": round(statistics.median(o["seconds"] for o in answered), 2)
                    if answered else None},
        "load_seconds": round(loaded_s, 1), "sigterm_to_exit_s": round(sigterm_s, 2),
        "target": {"health_p99_ms_below": 100},
    }
    report["target"]["met"] = (report["health"]["p99_ms"] < 100
                               and report["health"]["failures"] == 0)
    out = Path(args.out or ROOT / "docs" / "benchmarks"
               / f"health_under_load-{date.today().isoformat()}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0 if report["target"]["met"] else 1


if __name__ == "__main__":
    sys.exit(main())
