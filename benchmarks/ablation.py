"""Ablation of augmentation and balancing: same seed, same split, same model, one change at a time.

    python benchmarks/ablation.py [--datasets default banking77-10] [--quick]

Datasets:
  default       filesTech/final.json, split 70/15/15 like jobs.py
  banking77-10  ../shared/datasets/banking77: 10 training patterns per intent (a small chatbot
                dataset), 3 more per intent for validation, scored on the official test split
Every variant trains the CNN-BiLSTM "Baseline" configuration; a TF-IDF + logistic regression row
(no augmentation) is measured in the same run for scale. Prints a markdown table and writes JSON
to benchmarks/results/ablation.json.
"""
import argparse
import logging
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from common import report

from intentkit.runtime import import_tensorflow_quietly

import_tensorflow_quietly()

import keras
import numpy as np
from sklearn.metrics import accuracy_score, f1_score

from intentkit.data.intents import Split, load_examples, load_intents, split_data
from intentkit.evaluation.metrics import reference_baseline
from intentkit.models.keras_models import SEED_CONFIGS, build_cnn_bilstm
from intentkit.training.config import TrainConfig
from intentkit.training.members import fit, probabilities
from intentkit.training.pipeline import featurize, set_seed

SHARED = ROOT.parent / "shared" / "datasets"
VARIANTS = {  # name -> (augmentation_factor, balance)
    "neither": (0, "none"),
    "augmentation": (3, "none"),
    "class weights": (0, "class_weight"),
    "augmentation + class weights (default)": (3, "class_weight"),
    "augmentation + upsampling (seed)": (3, "upsample"),
}


def default_split(seed):
    data = load_intents(ROOT / "filesTech" / "final.json")
    return split_data(data.texts, data.labels, seed=seed), data.tags


def banking77_split(seed, train_per_intent=10, val_per_intent=3):
    data = load_intents(SHARED / "banking77" / "train.json")
    rng = np.random.default_rng(seed)
    by_label = defaultdict(list)
    for text, label in zip(data.texts, data.labels):
        by_label[label].append(text)
    parts = {"train": ([], []), "val": ([], [])}
    for label in sorted(by_label):
        texts = [by_label[label][i] for i in rng.permutation(len(by_label[label]))]
        for name, chunk in (("train", texts[:train_per_intent]),
                            ("val", texts[train_per_intent:train_per_intent + val_per_intent])):
            parts[name][0].extend(chunk)
            parts[name][1].extend([label] * len(chunk))
    test_texts, test_labels = load_examples(SHARED / "banking77" / "test.json")
    return Split(*parts["train"], *parts["val"], test_texts, test_labels), data.tags


DATASETS = {"default": default_split, "banking77-10": banking77_split}


def run_variant(split, tags, augmentation_factor, balance, seed, epochs):
    # The CNN-BiLSTM alone: no ensemble (so no sentence embeddings), batch 64 as on small data.
    config = TrainConfig(seed=seed, augmentation_factor=augmentation_factor, balance=balance,
                         ensemble=False, batch_size=64)
    set_seed(seed)
    preprocessor, dataset = featurize(split, tags, config)
    trial = SEED_CONFIGS[0]
    keras.utils.set_random_seed(seed)
    model = build_cnn_bilstm(preprocessor.vocab_size, preprocessor.max_sequence_length_,
                             len(tags), embedding_dim=trial["embedding_dim"],
                             dropout=trial["dropout"])
    started = time.perf_counter()
    fit(model, dataset, trial["learning_rate"], epochs, 10, config.batch_size, "ablation",
        label_smoothing=config.label_smoothing)
    seconds = time.perf_counter() - started
    predicted = probabilities(model, dataset.x_test).argmax(axis=1)
    true = dataset.y_test.argmax(axis=1)
    return {"train_rows": int(len(dataset.x_train)), "seconds": round(seconds, 1),
            "accuracy": float(accuracy_score(true, predicted)),
            "macro_f1": float(f1_score(true, predicted, average="macro"))}


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--quick", action="store_true", help="5 epochs per variant (smoke run)")
    parser.add_argument("--out", default=ROOT / "benchmarks" / "results" / "ablation.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    epochs = 5 if args.quick else 60
    results = {}
    for dataset in args.datasets:
        split, tags = DATASETS[dataset](args.seed)
        results[dataset] = {"TF-IDF + logistic regression (reference)": {
            **reference_baseline(split), "train_rows": len(split.train_texts), "seconds": 0.0}}
        for name, (factor, balance) in VARIANTS.items():
            results[dataset][name] = run_variant(split, tags, factor, balance, args.seed, epochs)
            print(f"{dataset:13} {name:40} {results[dataset][name]}", flush=True)
    report(["dataset", "variant", "train rows", "test accuracy", "test macro-F1", "train s"],
           [[dataset, name, r["train_rows"], f"{r['accuracy']:.4f}", f"{r['macro_f1']:.4f}",
             r["seconds"]] for dataset, rows in results.items() for name, r in rows.items()],
           {"seed": args.seed, "epochs": epochs, "results": results}, args.out)

if __name__ == "__main__":
    main()
