"""Is the TensorFlow-free NumPy runtime exact? Compare it with the Keras path on every pattern.

    python benchmarks/numpy_runtime.py [--model-dir filesTech] [--data filesTech/final.json]

Needs a trained model (`python jobs.py`). For the single model and the ensemble, scores every
pattern of the data file through Predictor(runtime="keras") and Predictor(runtime="numpy") and
reports the largest probability difference and how often the top intent agrees. Speed and memory
of both runtimes are in benchmarks/latency.py. Writes benchmarks/results/numpy_runtime.json.
"""
import argparse
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from common import report

from intentkit import artifacts
from intentkit.data.intents import load_examples
from intentkit.serving.predictor import Predictor


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", default=ROOT / "filesTech", type=Path)
    parser.add_argument("--data", default=ROOT / "filesTech" / "final.json", type=Path)
    parser.add_argument("--out", default=ROOT / "benchmarks" / "results" / "numpy_runtime.json")
    args = parser.parse_args()
    texts, _ = load_examples(args.data)
    paths = {"model_path": args.model_dir / artifacts.MODEL_FILE,
             "preprocessor_path": args.model_dir / artifacts.PREPROCESSOR_FILE}
    results = {}
    for name, ensemble in (("single", False), ("ensemble", True)):
        keras_probabilities, numpy_probabilities = (
            Predictor(**paths, use_ensemble=ensemble, runtime=runtime).predict_proba(texts)
            for runtime in ("keras", "numpy"))
        results[name] = {
            "rows": len(texts),
            "max_abs_difference": float(abs(keras_probabilities - numpy_probabilities).max()),
            "top_intent_agreement": float((keras_probabilities.argmax(axis=1)
                                           == numpy_probabilities.argmax(axis=1)).mean())}
    report(["model", "rows", "max abs probability difference", "top-intent agreement"],
           [[name, r["rows"], f"{r['max_abs_difference']:.2e}", f"{r['top_intent_agreement']:.2%}"]
            for name, r in results.items()], results, args.out)

if __name__ == "__main__":
    main()
