"""Lifecycle targets on loopback (docs/lifecycle.md), JSON into docs/benchmarks/lifecycle-DATE.json.

    python benchmarks/lifecycle.py --model-dir models/bot [--requests 10000]

On a copy of the model directory (a second run is published from the live one, with another
fallback threshold): (1) promote and rollback while 8 clients ask `intentkit serve --workers 2`:
failed requests, answers without a version, seconds until no answer comes from the old run;
(2) an A/B test at 10 %: the measured share over --requests requests and stickiness per user;
(3) the Redis cache: a hit's lookup time from a second process, and failed requests while
redis-server is stopped mid-run.

Clients honour the service's 503 + Retry-After (admission control: the worker is busy), as the
intentkit client does; such waits are counted apart ("busy_retries"), and a request fails only
when it gets no answer or an error answer. Failure reasons are recorded.
"""
import argparse
import contextlib
import json
import os
import pickle
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from intentkit import artifacts
from intentkit.artifacts import runs

TEXTS = ["hello there", "what does a data scientist earn", "bye for now", "check my resume"]


def republish(out, threshold):
    """The live run again as a new run with another fallback threshold (another answer)."""
    current = (out / artifacts.RUNS_DIR / artifacts.CURRENT_RUN).resolve()
    staging = Path(tempfile.mkdtemp(prefix=artifacts.STAGING_PREFIX, dir=out))
    for entry in current.iterdir():
        (shutil.copytree if entry.is_dir() else shutil.copy2)(entry, staging / entry.name)
    path = staging / artifacts.PREPROCESSOR_FILE
    bundle = pickle.loads(path.read_bytes())
    bundle["fallback_thresholds"] = dict.fromkeys(bundle["fallback_thresholds"], threshold)
    path.write_bytes(pickle.dumps(bundle))
    manifest = json.loads((staging / artifacts.MANIFEST_FILE).read_text())
    manifest["files"][artifacts.PREPROCESSOR_FILE] = artifacts.sha256(path)
    manifest["sizes"][artifacts.PREPROCESSOR_FILE] = path.stat().st_size
    manifest.pop("run_id", None)  # publish names the new run
    (staging / artifacts.MANIFEST_FILE).write_text(json.dumps(artifacts.sealed(manifest)))
    artifacts.publish(staging, out)
    return runs.current_run(out)


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


BUSY_RETRIES = {"count": 0}  # 503 + Retry-After answers waited out (not failures)
MAX_BUSY_RETRIES = 5


def post(url, body, timeout=30):
    for attempt in range(MAX_BUSY_RETRIES + 1):
        request = urllib.request.Request(url, json.dumps(body).encode(), method="POST",
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as error:
            retry_after = error.headers.get("Retry-After", "")
            if error.code != 503 or not retry_after.isdigit() or attempt == MAX_BUSY_RETRIES:
                raise
            BUSY_RETRIES["count"] += 1
            time.sleep(float(retry_after))
    raise AssertionError("unreachable")


@contextlib.contextmanager
def serve(out, *options):
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "intentkit", "serve", "--model-dir", str(out), "--runtime",
         "numpy", "--workers", "2", "--port", str(port), *options],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while True:
        assert process.poll() is None and time.monotonic() < deadline, "service did not start"
        with contextlib.suppress(OSError):
            urllib.request.urlopen(url + "/health", timeout=5)
            break
        time.sleep(0.3)
    try:
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


def load(url, clients, stop, body_of):
    """Clients asking until `stop` is set; [(sent, received, ok, answer)]."""
    answers = []

    def ask(client):
        count = 0
        while not stop.is_set():
            sent = time.monotonic()
            try:
                answer, ok = post(url + "/v1/predict", body_of(client, count)), True
            except Exception as error:  # noqa: BLE001 (any failure is counted)
                answer, ok = {"error": repr(error)}, False
            answers.append((sent, time.monotonic(), ok, answer))
            count += 1
    threads = [threading.Thread(target=ask, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    return answers, threads


def promote_under_load(out, first, second):
    with serve(out) as url:
        stop = threading.Event()
        answers, threads = load(url, 8, stop, lambda c, n: {"text": TEXTS[c % 4]})
        switches = []
        for target in (second, first):  # promote, then roll back
            time.sleep(2)
            at = time.monotonic()
            if target == second:
                runs.promote(out, second)
            else:
                runs.rollback(out)
            time.sleep(3)
            stale = [received for sent, received, ok, a in answers
                     if sent > at and ok and a.get("model_version") != target
                     and received < at + 3]
            switches.append(max(stale) - at if stale else 0.0)
        stop.set()
        for thread in threads:
            thread.join()
    return {"requests": len(answers), "failed": sum(not ok for _, _, ok, _ in answers),
            "failures": [a["error"] for _, _, ok, a in answers if not ok][:3],
            "unlabelled": sum(ok and not a.get("model_version") for _, _, ok, a in answers),
            "switch_seconds": {"promote": round(switches[0], 3),
                               "rollback": round(switches[1], 3)}}


def ab_share(out, first, second, requests):
    users = requests // 2
    with serve(out, "--variant", f"live={first}", "--variant", f"new={second}",
               "--traffic", "new=0.1") as url:
        seen = {}
        failed, failures = 0, []
        lock = threading.Lock()
        counter = iter(range(requests))

        def ask():
            nonlocal failed
            for n in counter:
                try:
                    variant = post(url + "/v1/predict",
                                   {"text": TEXTS[n % 4], "user": f"user-{n % users}"})["variant"]
                except Exception as error:  # noqa: BLE001 (counted)
                    with lock:
                        failed += 1
                        failures.append(repr(error))
                    continue
                with lock:
                    seen.setdefault(n % users, []).append(variant)
        threads = [threading.Thread(target=ask) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    answered = [v for variants in seen.values() for v in variants]
    sticky = sum(len(set(variants)) == 1 for variants in seen.values()) / len(seen)
    return {"requests": requests, "failed": failed,
            "new_share": round(answered.count("new") / len(answered), 4),
            "stickiness": sticky, "failures": failures[:3]}


def redis_cache(out, directory):
    from intentkit.serving.cache_redis import client_for
    port = free_port()
    server = subprocess.Popen(["redis-server", "--port", str(port), "--save", "",
                               "--appendonly", "no", "--dir", str(directory)],
                              stdout=subprocess.DEVNULL)
    time.sleep(0.5)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        with serve(out, "--cache-url", url) as service:
            for text in TEXTS:
                post(service + "/v1/predict", {"text": text})  # puts them in Redis
            client = client_for(url, timeout=1.0)  # this process: another worker
            keys = [k for k in client.keys("intentkit:*") if not k.endswith(b":index")]
            from intentkit.serving.cache_redis import KEY_PREFIX, RedisMessageCache
            scope = keys[0].decode().removeprefix(KEY_PREFIX + ":").rsplit(":", 1)[0]
            cache = RedisMessageCache(client, scope, 1000)
            timings = []
            for _ in range(2000):
                started = time.perf_counter()
                found = cache.get_many([TEXTS[0]])
                timings.append(time.perf_counter() - started)
                assert found[0] is not None
            timings.sort()
            stop = threading.Event()
            answers, threads = load(service, 8, stop, lambda c, n: {"text": f"{TEXTS[c % 4]} {n}"})
            time.sleep(2)
            server.terminate()
            server.wait()
            time.sleep(3)
            stop.set()
            for thread in threads:
                thread.join()
    finally:
        if server.poll() is None:
            server.terminate()
    return {"hit_lookup_ms_p50": round(1000 * timings[len(timings) // 2], 3),
            "hit_lookup_ms_p90": round(1000 * timings[int(len(timings) * 0.9)], 3),
            "requests_during_redis_stop": len(answers),
            "failed_with_redis_stopped": sum(not ok for _, _, ok, _ in answers),
            "failures": [a["error"] for _, _, ok, a in answers if not ok][:3]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--out", default=time.strftime("docs/benchmarks/lifecycle-%Y-%m-%d.json",
                                                       time.gmtime()))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="intentkit-lifecycle-") as scratch:
        out = Path(scratch) / "model"
        shutil.copytree(args.model_dir, out, symlinks=True)
        first = runs.current_run(out)
        second = republish(out, 0.0)
        runs.promote(out, first)
        results = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                   "load_average_at_start": os.getloadavg(), "cpus": os.cpu_count()}
        started = time.monotonic()
        for name, part in (("promote_rollback_under_load",
                            lambda: promote_under_load(out, first, second)),
                           ("ab_10_percent", lambda: ab_share(out, first, second, args.requests)),
                           ("redis", lambda: redis_cache(out, Path(scratch)))):
            BUSY_RETRIES["count"] = 0
            results[name] = {**part(), "busy_retries": BUSY_RETRIES["count"],
                             "load_average_after": [round(x, 2) for x in os.getloadavg()]}
            print(json.dumps({name: results[name]}), flush=True)
        results["seconds"] = round(time.monotonic() - started, 1)
        results["load_average_at_end"] = os.getloadavg()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
