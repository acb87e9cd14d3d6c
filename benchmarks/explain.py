"""What an explanation costs: Predictor.explain on 12-word messages, against predict.

Each model a run answers with (the single model, the ensemble) in each runtime, with the
message cache off. An explanation is one forward call over the message and its 12 variants
without one word (token ids, and sentence embeddings where a member reads them), plus the
nearest training patterns (one matrix-vector product). The target: <= 50 ms per explanation.

    python benchmarks/explain.py --model-dir filesTech
"""
import argparse
import os
import statistics
import time
from datetime import date
from pathlib import Path

from common import ROOT, report

from intentkit import artifacts
from intentkit.serving.predictor import Predictor

# Twelve words each, none repeated from another: every call is a new message.
MESSAGES = [
    "how much does a junior data engineer usually earn in berlin today",
    "could you please review my resume before i send it out tomorrow",
    "what skills should i learn first to become a good cloud architect",
    "i would like some advice on preparing for a technical job interview",
    "which companies are hiring remote python developers in europe right now please",
    "is it really worth getting a certification for project management this year",
    "tell me the typical salary range for senior frontend developers around here",
    "how do i best explain a two year gap in my cv",
]


def timed(call, messages, repeats):
    """Wall-clock and CPU milliseconds per call (p50, p95). On a machine shared with other jobs
    the wall clock counts their time too; the CPU time (this process's, all its threads) is
    what the call itself costs."""
    wall, cpu = [], []
    for _ in range(repeats):
        for message in messages:
            started, started_cpu = time.perf_counter(), time.process_time()
            call(message)
            wall.append(time.perf_counter() - started)
            cpu.append(time.process_time() - started_cpu)
    wall.sort()
    cpu.sort()
    return {"calls": len(wall), "p50_ms": round(statistics.median(wall) * 1000, 2),
            "p95_ms": round(wall[int(0.95 * len(wall))] * 1000, 2),
            "cpu_p50_ms": round(statistics.median(cpu) * 1000, 2),
            "cpu_p95_ms": round(cpu[int(0.95 * len(cpu))] * 1000, 2)}


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", default=str(ROOT / artifacts.DEFAULT_DIR))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=str(
        ROOT / "docs" / "benchmarks" / f"explain-{date.today()}.json"))
    args = parser.parse_args()
    assert all(len(m.split()) == 12 for m in MESSAGES)
    model_dir = Path(args.model_dir)
    paths = (model_dir / artifacts.MODEL_FILE, model_dir / artifacts.PREPROCESSOR_FILE)
    rows, payload = [], {"date": str(date.today()), "model": str(model_dir),
                         "load_before": os.getloadavg(), "results": []}
    for use_ensemble in (False, True):
        for runtime in ("numpy", "keras"):
            predictor = Predictor(*paths, use_ensemble=use_ensemble, runtime=runtime,
                                  cache_size=0)
            predictor.explain(MESSAGES[0])  # loads the training patterns once
            members = {m.name: m.weight for m in predictor.run.members(predictor.model_type)}
            predict = timed(predictor.predict, MESSAGES, args.repeats)
            explain = timed(predictor.explain, MESSAGES, args.repeats)
            payload["results"].append({"model_type": predictor.model_type, "runtime": runtime,
                                       "member_weights": members,
                                       "encoder_in_forward": predictor.encoder is not None,
                                       "predict": predict, "explain": explain})
            rows.append([predictor.model_type, runtime, predictor.encoder is not None,
                         predict["p50_ms"], predict["cpu_p50_ms"], explain["p50_ms"],
                         explain["cpu_p50_ms"], explain["cpu_p95_ms"]])
    payload["load_after"] = os.getloadavg()
    report(["model", "runtime", "encoder in forward", "predict p50 ms", "predict CPU p50 ms",
            "explain p50 ms", "explain CPU p50 ms", "explain CPU p95 ms"], rows, payload,
           args.out)


if __name__ == "__main__":
    main()
