"""Serving speed and memory of the trained model against the peers of benchmarks/run.py.

    python benchmarks/latency.py [--model-dir filesTech] [--data filesTech/final.json]
                                 [--calls 1000] [--repeat-rate 0.3]

Needs a trained model (`python jobs.py`). Measures, in this one run, for our default answer,
single model and ensemble on the Keras and the NumPy runtime, and for the peers (TF-IDF words +
logistic regression, TF-IDF words + chars + LinearSVC, frozen MiniLM + logistic regression;
trained here on --data's patterns with C fixed at 10, for speed only, not accuracy):
- p50/p99 of a warm single call over --calls distinct messages (message cache off: every call
  runs the model);
- batch throughput: one call over 2,000 distinct messages;
- cold start: a fresh process that imports, loads and answers one message; then its peak RSS
  after 200 more messages (each system alone in its process);
- the message cache: the NumPy ensemble with the cache on, on a stream where --repeat-rate of
  the messages repeat a few common ones (an assumption about chatbot traffic, not a measure);
- the encoder's threads: the NumPy ensemble in a fresh process with INTENTKIT_ENCODER_THREADS
  1 and 2, --calls messages 10 ms apart: p50/p99 and the cores the process kept busy (CPU time
  over wall time: threads that spin between calls show here).
Latency is measured at normal priority; run it on an otherwise idle machine where possible.
Prints a markdown table and writes benchmarks/results/latency.json.
"""
import argparse
import json
import os
import pickle
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from common import report

from intentkit.runtime import import_tensorflow_quietly

import_tensorflow_quietly()

import numpy as np
from run import word_char_svm
from sklearn.linear_model import LogisticRegression

from intentkit import artifacts
from intentkit.data.intents import load_intents
from intentkit.encoders import minilm as pretrained
from intentkit.evaluation.metrics import tfidf_logistic_regression
from intentkit.serving.predictor import Predictor

BATCH_ROWS = 2000
COLD_START_CALLS = 200
COMMON = ["hi", "hello", "yes", "no", "thanks", "thank you", "ok", "bye"]
PEER_C = 10.0

# A fresh process: import, load, answer one (timed); answer more; peak RSS. `setup` loads the
# system into `answer`, a function of a list of texts.
COLD_START = """
import json, sys, time
started = time.perf_counter()
{setup}
answer(["hello"])
seconds = time.perf_counter() - started
texts = json.loads(sys.stdin.read())
for text in texts:
    answer([text])
peak = next(int(line.split()[1]) for line in open("/proc/self/status")
            if line.startswith("VmHWM:"))
print(json.dumps({{"cold_start_s": round(seconds, 2), "peak_rss_mib": round(peak / 1024)}}))
"""
OURS_SETUP = """
from intentkit.serving.predictor import Predictor
predictor = Predictor({model!r}, {preprocessor!r}, use_ensemble={ensemble}, runtime={runtime!r},
                      cache_size=0)
answer = predictor.predict_batch
"""
PEER_SETUP = """
import pickle
with open({path!r}, "rb") as file:
    model = pickle.load(file)
answer = model.predict
if {embeds}:  # as peer_answer
    from intentkit.encoders.minilm import sentence_encoder
    answer = lambda texts: model.predict(sentence_encoder().embed(texts))
"""
# A fresh process (the encoder's threads are set when it loads): messages PACE_S apart.
PACED = """
import json, sys, time
from intentkit.serving.predictor import Predictor
from intentkit.text import wordnet
predictor = Predictor({model!r}, {preprocessor!r}, use_ensemble=True, runtime="numpy",
                      cache_size=0)
wordnet.wordnet()  # loading in the background meanwhile: wait for it
texts = json.loads(sys.stdin.read())
for text in texts[:20]:
    predictor.predict(text)
timings, cpu, wall = [], time.process_time(), time.perf_counter()
for text in texts:
    started = time.perf_counter()
    predictor.predict(text)
    timings.append(time.perf_counter() - started)
    time.sleep({pace})
print(json.dumps({{"timings": timings, "cores_busy": round(
    (time.process_time() - cpu) / (time.perf_counter() - wall), 2)}}))
"""
PACE_S = 0.01


def percentiles(seconds):
    milliseconds = np.array(seconds) * 1000
    return {"p50_ms": round(float(np.percentile(milliseconds, 50)), 2),
            "p99_ms": round(float(np.percentile(milliseconds, 99)), 2)}


def single_calls(answer, texts):
    for text in texts[:20]:
        answer([text])
    timings = []
    for text in texts:
        started = time.perf_counter()
        answer([text])
        timings.append(time.perf_counter() - started)
    return percentiles(timings)


def batch_rate(answer, texts):
    started = time.perf_counter()
    answer(texts)
    return round(len(texts) / (time.perf_counter() - started))


def in_fresh_process(script, texts, env=None):
    """The JSON that `script`, run in a fresh Python process and fed `texts` on its standard
    input, prints last."""
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, input=json.dumps(texts),
                            capture_output=True, text=True, check=True, env=env)
    return json.loads(result.stdout.strip().splitlines()[-1])


def cold_start(setup, texts):
    return in_fresh_process(COLD_START.format(setup=setup), texts[:COLD_START_CALLS])


def peer_answer(model, embeds):
    """A fitted peer as a function of a list of texts; the MiniLM one embeds them first."""
    if not embeds:
        return model.predict
    encoder = pretrained.sentence_encoder()
    return lambda texts: model.predict(encoder.embed(texts))


def peers(data):
    """{name: (fitted model, whether it reads MiniLM embeddings)}."""
    texts, labels = data.texts, data.labels
    embedded = pretrained.sentence_encoder().embed(texts)
    return {
        "TF-IDF words + logistic regression": (
            tfidf_logistic_regression(PEER_C).fit(texts, labels), False),
        "TF-IDF words + chars + LinearSVC": (word_char_svm(PEER_C).fit(texts, labels), False),
        "frozen MiniLM + logistic regression": (
            LogisticRegression(C=PEER_C, max_iter=3000).fit(embedded, labels), True),
    }


def repeated_stream(texts, calls, repeat_rate, seed=0):
    """`calls` messages, each one of COMMON with probability repeat_rate, else a fresh one."""
    rng = random.Random(seed)
    fresh = iter(texts * (calls // len(texts) + 1))
    return [rng.choice(COMMON) if rng.random() < repeat_rate else next(fresh)
            for _ in range(calls)]


def cached_rows(paths, texts, calls, repeat_rate):
    predictor = Predictor(**paths, use_ensemble=True, runtime="numpy")
    stream = repeated_stream(texts, calls, repeat_rate)
    mixed = single_calls(predictor.predict_batch, stream)
    hit_rate = predictor.cache.hits / (predictor.cache.hits + predictor.cache.misses)
    hits_only = single_calls(predictor.predict_batch, COMMON * (calls // len(COMMON)))
    return {f"ensemble, numpy, cache on, {repeat_rate:.0%} repeats": {
                **mixed, "hit_rate": round(hit_rate, 2)},
            "ensemble, numpy, cache hits only": hits_only}


def encoder_thread_rows(paths, calls):
    rows = {}
    for threads in (1, 2):
        script = PACED.format(model=str(paths["model_path"]),
                              preprocessor=str(paths["preprocessor_path"]), pace=PACE_S)
        paced = in_fresh_process(script, calls,
                                 env={**os.environ, pretrained.THREADS_VARIABLE: str(threads)})
        rows[f"ensemble, numpy, {threads} encoder thread(s), {PACE_S * 1000:.0f} ms apart"] = {
            **percentiles(paced["timings"]), "cores_busy": paced["cores_busy"]}
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", default=ROOT / "filesTech", type=Path)
    parser.add_argument("--data", default=ROOT / "filesTech" / "final.json", type=Path,
                        help="intents file: the messages, and the peers' training data")
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--repeat-rate", type=float, default=0.3)
    parser.add_argument("--out", default=ROOT / "benchmarks" / "results" / "latency.json")
    args = parser.parse_args()
    paths = {"model_path": args.model_dir / artifacts.MODEL_FILE,
             "preprocessor_path": args.model_dir / artifacts.PREPROCESSOR_FILE}
    if not paths["model_path"].exists():
        sys.exit(f"no model in {args.model_dir}: run `python jobs.py` first")
    data = load_intents(args.data)
    texts = list(dict.fromkeys(data.texts))
    random.Random(0).shuffle(texts)
    calls = (texts * (args.calls // len(texts) + 1))[:args.calls]
    batch = list(dict.fromkeys(texts + [f"{text} please" for text in texts]))[:BATCH_ROWS]
    results = {}
    for runtime in ("keras", "numpy"):
        for model, ensemble in (("default", None), ("single", False), ("ensemble", True)):
            predictor = Predictor(**paths, use_ensemble=ensemble, runtime=runtime, cache_size=0)
            name = f"{model} ({predictor.model_type}), {runtime}"
            setup = OURS_SETUP.format(model=str(paths["model_path"]),
                                      preprocessor=str(paths["preprocessor_path"]),
                                      ensemble=ensemble, runtime=runtime)
            results[name] = {**single_calls(predictor.predict_batch, calls),
                             "batch_per_s": batch_rate(predictor.predict_batch, batch),
                             **cold_start(setup, texts)}
            print(name, results[name], flush=True)
    with tempfile.TemporaryDirectory() as work:
        for name, (model, embeds) in peers(data).items():
            path = Path(work) / "peer.pickle"
            path.write_bytes(pickle.dumps(model))
            answer = peer_answer(model, embeds)
            results[name] = {**single_calls(answer, calls),
                             "batch_per_s": batch_rate(answer, batch),
                             **cold_start(PEER_SETUP.format(path=str(path), embeds=embeds),
                                          texts)}
            print(name, results[name], flush=True)
    results.update(cached_rows(paths, texts, args.calls, args.repeat_rate))
    results.update(encoder_thread_rows(paths, calls))
    columns = ["p50_ms", "p99_ms", "batch_per_s", "cold_start_s", "peak_rss_mib", "hit_rate",
               "cores_busy"]
    report(["system", *columns], [[name, *(row.get(c, "–") for c in columns)]
                                  for name, row in results.items()],
           {"calls": args.calls, "batch_rows": len(batch), "repeat_rate": args.repeat_rate,
            "results": results}, args.out)


if __name__ == "__main__":
    main()
