"""The exported page in headless Chromium: model size, load time, per-message latency.

    python benchmarks/web_page.py -m RUN [--out PREFIX]

Exports RUN with `intentkit export --format web` (fp32, and int8 with --data), serves it with a
plain static server, and reads `intentkit.stats.loadMs` (fetch, sha256 check, session, first
answer) and the time of 50 `classify` calls, one message at a time, as typing sends them.
"""
import argparse
import datetime
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from test_web_export import static_files

from intentkit.serving import web

MESSAGES = ["how much does a data engineer make in berlin", "can you review my resume",
            "hi there", "i need a remote python job", "what is a good salary for a tester"] * 10


def measure(directory):
    from selenium import webdriver
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options,
                              service=webdriver.ChromeService("/usr/bin/chromedriver"))
    try:
        driver.set_script_timeout(300)
        with static_files(directory) as url:
            driver.get(url + "/index.html")
            stats = driver.execute_async_script(
                "const done = arguments[arguments.length - 1];"
                "window.intentkit.ready.then(() => done(window.intentkit.stats))")
            times = driver.execute_async_script(
                "const [texts, done] = arguments; (async () => { const out = [];"
                "for (const t of texts) { const s = performance.now();"
                "await window.intentkit.classify(t); out.push(performance.now() - s); }"
                "done(out); })()", MESSAGES)
    finally:
        driver.quit()
    times = sorted(times)
    return {"model_mb": stats["modelBytes"] / 1e6, "load_ms": stats["loadMs"],
            "latency_p50_ms": times[len(times) // 2],
            "latency_p90_ms": times[int(len(times) * 0.9)], "messages": len(times)}


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-m", "--model-dir", required=True)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks" /
                        f"web_page-{datetime.date.today()}")
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        page = Path(scratch) / "page"
        started = time.perf_counter()
        web.export_web(args.model_dir, page, web.onnxruntime_web_dir())
        results["fp32"] = {"export_s": time.perf_counter() - started, **measure(page)}
    payload = {"date": str(datetime.date.today()), "load_average": os.getloadavg(),
               "browser": "Debian chromium, headless, ONNX Runtime Web "
               f"{web.pinned_version()} wasm, 1 thread", "results": results}
    args.out.with_suffix(".json").write_text(json.dumps(payload, indent=2))
    print(json.dumps(payload, indent=2))


if __name__ == "__main__":
    main()
