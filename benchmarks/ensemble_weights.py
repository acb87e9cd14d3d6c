"""Why the ensemble can end below a logistic regression on the frozen encoder, and what the
ensemble weights are worth: one training run per data set, then every way of combining it.

    python benchmarks/ensemble_weights.py [--sets shipped banking77:10 clinc150:10] [--quick]

For each set the pipeline's members are fitted once (`train.prepare` / `fit_models`, default
configuration), then scored on the test split alone and combined with: the seed's fixed weights
(0.4/0.4/0.2), weights fitted on validation log-loss (the former "fitted"), and weights fitted on
validation accuracy then log-loss (the current rule, never below the best member on
validation). Beside them, on the same rows: logistic regression (C=10) on the frozen MiniLM
embeddings of the raw training rows and of the augmented ones. Prints a markdown table; writes
benchmarks/results/ensemble_weights.json.
"""
import argparse
import itertools
import logging
import tempfile
from pathlib import Path

from common import SETS, load_set, report

from intentkit.runtime import import_tensorflow_quietly

import_tensorflow_quietly()

import numpy as np
from sklearn.linear_model import LogisticRegression

from intentkit.encoders import minilm as pretrained
from intentkit.training.config import QUICK, TrainConfig
from intentkit.training.members import probabilities
from intentkit.training.pipeline import (
    SEED_ENSEMBLE_WEIGHTS,
    augment_and_balance,
    combine,
    fit_ensemble_weights,
    fit_models,
    prepare,
    resolve_auto,
    set_seed,
)

ROOT = Path(__file__).resolve().parents[1]


def log_loss_weights(member_probabilities, true_ids, step=0.1):
    """The former rule: the simplex grid point of lowest validation log-loss."""
    names, rows = list(member_probabilities), np.arange(len(true_ids))
    grid = np.round(np.arange(0, 1 + step / 2, step), 6)
    candidates = [(*w, 1 - sum(w)) for w in itertools.product(grid, repeat=len(names) - 1)
                  if sum(w) <= 1 + 1e-9]

    def loss(weights):
        mixed = sum(w * member_probabilities[n] for w, n in zip(weights, names))
        return -np.mean(np.log(np.clip(mixed[rows, true_ids], 1e-12, 1)))
    return dict(zip(names, min(candidates, key=loss)))


def accuracy(p, true_ids):
    return float((p.argmax(axis=1) == true_ids).mean())


def frozen_lr(train_texts, train_labels, test_texts, test_labels):
    encoder = pretrained.sentence_encoder()
    model = LogisticRegression(C=10, max_iter=3000).fit(encoder.embed(train_texts), train_labels)
    return float((model.predict(encoder.embed(test_texts)) == np.array(test_labels)).mean())


def measure(name, data_path, test_path, work, quick):
    config = TrainConfig(**{**(QUICK if quick else {}), "data": str(data_path),
                            "test_data": str(test_path) if test_path else "",
                            "out": str(work / "out")})
    set_seed(config.seed)
    prepared = prepare(config, work)
    config = resolve_auto(config, len(prepared.dataset.x_train))
    fitted = fit_models(prepared, config, work)
    dataset = prepared.dataset
    val_true, test_true = dataset.y_val.argmax(axis=1), dataset.y_test.argmax(axis=1)
    val = {n: probabilities(m.model, m.data.x_val) for n, m in fitted.members.items()}
    test = {n: probabilities(m.model, m.data.x_test) for n, m in fitted.members.items()}
    rows = {f"member alone: {n}": accuracy(p, test_true) for n, p in test.items()}
    for rule, weights in (("seed weights 0.4/0.4/0.2", SEED_ENSEMBLE_WEIGHTS),
                          ("fitted on val log-loss (former)", log_loss_weights(val, val_true)),
                          ("fitted on val accuracy, then log-loss",
                           fit_ensemble_weights(val, val_true))):
        rows[f"ensemble, {rule}"] = accuracy(combine(test, weights), test_true)
        rows[f"ensemble, {rule}: weights"] = {n: round(float(w), 2) for n, w in weights.items()}
    split = prepared.split
    rows["frozen MiniLM + LR, raw training rows"] = frozen_lr(
        split.train_texts, split.train_labels, split.test_texts, split.test_labels)
    augmented = augment_and_balance(split, config)
    rows["frozen MiniLM + LR, augmented training rows"] = frozen_lr(
        *augmented, split.test_texts, split.test_labels)
    rows["rows"] = {"train": len(split.train_texts), "val": len(split.val_texts),
                    "test": len(split.test_texts)}
    logging.info("%s: %s", name, rows)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", nargs="+", default=["shipped", "banking77:10", "clinc150:10"],
                        help=f"data sets: {', '.join(SETS)}, or NAME:N for N patterns per intent")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path,
                        default=ROOT / "benchmarks" / "results" / "ensemble_weights.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    for noisy in ("absl", "tensorflow", "h5py", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    results = {}
    for name in args.sets:
        with tempfile.TemporaryDirectory() as scratch:
            work = Path(scratch)
            data_path, test_path = load_set(name, work)
            results[name] = measure(name, data_path, test_path, work, args.quick)
    systems = [key for key in results[args.sets[0]] if not isinstance(
        results[args.sets[0]][key], dict)]
    report(["system", *args.sets],
           [[system, *(f"{results[s][system] * 100:.2f} %" for s in args.sets)]
            for system in systems], results, args.out)


if __name__ == "__main__":
    main()
