"""What each refit buys and costs (issues 25 and 29), on the same fitted members in one run.

    python benchmarks/refit_modes.py [--sets shipped banking77:10 clinc150:10] [--out FILE]

For each set the pipeline runs once as `python jobs.py` does (prepare, search, fit on the
training split, choose on the validation split), then publishes-as-it-would each refit mode from
those same fitted members and choices (`--refit off | head | full`) and scores it on the
test split: the default answer, the single CNN-BiLSTM, the ensemble and each member alone, with
the refit's seconds. The linear MiniLM head alone, refitted on every labelled row with C chosen on
folds, is the frozen MiniLM + logistic regression peer of issue 29. Writes JSON (runs.yaml holds
its provenance); the seconds of prepare, search and fit are the run's, once per set.
"""
import argparse
import json
import os
import tempfile
import time
from dataclasses import replace
from datetime import date
from pathlib import Path

from common import ROOT, load_set

from intentkit.runtime import import_tensorflow_quietly

import_tensorflow_quietly()


from intentkit import artifacts
from intentkit.training import pipeline
from intentkit.training.config import TrainConfig
from intentkit.training.members import probabilities
from intentkit.training.pipeline import combine


def accuracy(probs, true_ids):
    return round(100 * float((probs.argmax(axis=1) == true_ids).mean()), 2)


def timed(function):
    started = time.perf_counter()
    result = function()
    return result, round(time.perf_counter() - started, 1)


def test_accuracies(prepared, fitted, choice):
    """Test accuracy (%) of the default answer, the single model, the ensemble and each
    member alone."""
    true_ids = prepared.dataset.y_test.argmax(axis=1)
    member_probs = {name: probabilities(m.model, m.data.x_test)
                    for name, m in fitted.members.items()}
    answers = {artifacts.SINGLE: member_probs[artifacts.SINGLE_MEMBER]}
    if choice.weights:
        answers[artifacts.ENSEMBLE] = combine(member_probs, choice.weights)
    return {"default": accuracy(answers[choice.default_model], true_ids),
            **{name: accuracy(p, true_ids) for name, p in answers.items()},
            **{f"member {name}": accuracy(p, true_ids) for name, p in member_probs.items()}}


def run_set(name, work, seed):
    data, test = load_set(name, work)
    config = TrainConfig(data=str(data), test_data=str(test or ""), out=str(work / "model"),
                         seed=seed, refit="full")
    pipeline.set_seed(seed)
    prepared, prepare_s = timed(lambda: pipeline.prepare(config, work))
    config = pipeline.resolve_auto(config, len(prepared.dataset.x_train))
    fitted, fit_s = timed(lambda: pipeline.fit_models(prepared, config, work))
    choice = pipeline.choose(prepared, fitted, config)
    modes = {}
    for mode in ("off", "head", "full"):
        refitted, seconds = timed(lambda: pipeline.refit(prepared, fitted, choice,
                                                         replace(config, refit=mode)))
        modes[mode] = {"refit_seconds": seconds, "refit": refitted.refit,
                       "test_accuracy": test_accuracies(prepared, refitted, choice)}
        print(name, mode, modes[mode]["refit_seconds"], modes[mode]["test_accuracy"], flush=True)
    return {"set": name, "rows": {"train": len(prepared.split.train_texts),
                                  "val": len(prepared.split.val_texts),
                                  "test": len(prepared.split.test_texts),
                                  "train_after_augmentation": len(prepared.dataset.x_train)},
            "seconds": {"prepare": prepare_s, "search_and_fit": fit_s},
            "search": [{k: t[k] for k in ("name", "state", "epochs", "best_epoch",
                                          "val_accuracy", "seconds")} for t in fitted.trials],
            "epochs": {name: len(h.get("loss", [])) for name, h in fitted.histories.items()},
            "weights": choice.weights, "default_model": choice.default_model, "modes": modes}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="+", default=["shipped", "banking77:10", "clinc150:10"])
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", default=str(
        ROOT / "docs" / "benchmarks" / f"refit_modes-{date.today().isoformat()}.json"))
    args = parser.parse_args()
    results = {"command": "python benchmarks/refit_modes.py " + " ".join(
        ["--sets", *args.sets]), "date": date.today().isoformat(), "sets": []}
    for name in args.sets:
        load_before = os.getloadavg()[0]
        with tempfile.TemporaryDirectory(prefix="refit-modes-") as work:
            result = run_set(name, Path(work), args.seed)
        result["load_1min"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
        results["sets"].append(result)
        Path(args.out).write_text(json.dumps(results, indent=2, default=float))


if __name__ == "__main__":
    main()
