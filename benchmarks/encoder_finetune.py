"""Does fine-tuning the encoder pay? 10-shot intent classification, frozen vs fine-tuned MiniLM.

    python benchmarks/encoder_finetune.py [--datasets banking77 clinc150] [--shots 10]
        [--budget 360] [--epochs 10 [30 ...]] [--learning-rate 5e-5]
        [--temperature 0.1] [--seed 0] [--epoch-rows 3000] [--out PATH]

For each data set under ../shared/datasets: one `random.Random(0)` per data set picks
`rng.sample(patterns, shots)` for each intent in train.json's order (no validation file); scored
on test.json's rows of those intents (CLINC150's "oos" rows dropped). On the same rows:

- frozen all-MiniLM-L6-v2 + logistic regression (C by 5-fold cross-validation on training rows);
- the fine-tuned encoder (trainable_encoder.finetune_encoder, --budget seconds, once for each
  --epochs value) + the same logistic regression on its embeddings, and with its own cosine
  head. Test texts are embedded by the NumPy SentenceEncoder reading the saved fine-tuned
  weights: the runtime path.

Train seconds: the logistic regression's include embedding the training texts and the C search;
the fine-tuned ones add the fine-tuning. With --epoch-rows N, also times one fine-tuning epoch on
N rows of CLINC150's full training set and extrapolates to 15,000 rows. The machine may be shared
with other jobs: timings are upper bounds. Writes JSON to benchmarks/results/.
"""
import argparse
import logging
import random
import tempfile
import time
from pathlib import Path

from common import ROOT, SHARED, few_shot_document, report

from intentkit.runtime import import_tensorflow_quietly

import_tensorflow_quietly()

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold

from intentkit.data.intents import load_examples
from intentkit.encoders.minilm import SentenceEncoder
from intentkit.encoders.trainable import finetune_encoder

DATASETS = SHARED
C_GRID = [0.1, 1, 10, 100]


def few_shot(directory, shots):
    """Training rows (shots per intent, seeded per data set) and the test rows of those intents."""
    intents = few_shot_document(directory / "train.json", shots)["intents"]
    texts = [pattern for intent in intents for pattern in intent["patterns"]]
    labels = [intent["tag"] for intent in intents for _ in intent["patterns"]]
    kept = set(labels)
    test = [(t, y) for t, y in zip(*load_examples(directory / "test.json")) if y in kept]
    return texts, labels, [t for t, _ in test], [y for _, y in test]


def logistic_regression(embeddings, labels, seed):
    search = GridSearchCV(LogisticRegression(max_iter=2000), {"C": C_GRID},
                          cv=StratifiedKFold(5, shuffle=True, random_state=seed))
    return search.fit(embeddings, labels).best_estimator_


def run_dataset(name, shots, budget, seed, epoch_counts, options):
    texts, labels, test_texts, test_labels = few_shot(DATASETS / name, shots)
    test_labels = np.array(test_labels)
    rows = {}

    start = time.monotonic()
    frozen = SentenceEncoder()
    classifier = logistic_regression(frozen.embed(texts), labels, seed)
    seconds = time.monotonic() - start
    rows["frozen MiniLM + LR"] = (classifier.score(frozen.embed(test_texts), test_labels),
                                  seconds, classifier.C)

    for epochs in epoch_counts:
        start = time.monotonic()
        encoder = finetune_encoder(texts, labels, time_budget_s=budget, seed=seed, epochs=epochs,
                                   **options)
        tuned_seconds = time.monotonic() - start
        with tempfile.TemporaryDirectory() as work:
            encoder.save_weights(Path(work) / "encoder.safetensors")
            runtime = SentenceEncoder(weights_file=Path(work) / "encoder.safetensors")
        test_embeddings = runtime.embed(test_texts)
        head_logits = test_embeddings @ encoder.head.T
        tuned = f"fine-tuned MiniLM ({encoder.training['epochs']:.0f} epochs)"
        rows[f"{tuned} + cosine head"] = (
            float(np.mean(np.array(encoder.classes)[head_logits.argmax(axis=1)] == test_labels)),
            tuned_seconds, None)
        start = time.monotonic()
        classifier = logistic_regression(runtime.embed(texts), labels, seed)
        rows[f"{tuned} + LR"] = (classifier.score(test_embeddings, test_labels),
                                 tuned_seconds + time.monotonic() - start, classifier.C)
    for system, (accuracy, seconds, _) in rows.items():
        logging.info("%s, %s: %.2f%% accuracy, %.0f s training", name, system, 100 * accuracy,
                     seconds)
    return {"train_rows": len(texts), "intents": len(set(labels)), "test_rows": len(test_texts),
            "systems": {system: {"accuracy": accuracy, "train_seconds": seconds, "C": c}
                        for system, (accuracy, seconds, c) in rows.items()}}


def time_full_epoch(rows, seed):
    """One fine-tuning epoch on `rows` CLINC150 training rows (seeded sample): its seconds, and
    the training loop's extrapolated to 15,000 rows (setup, mostly tracing, not scaled)."""
    texts, labels = load_examples(DATASETS / "clinc150" / "train.json")
    picked = random.Random(seed).sample(range(len(texts)), rows)
    training = finetune_encoder([texts[i] for i in picked], [labels[i] for i in picked],
                                time_budget_s=3600, seed=seed, epochs=1).training
    loop = training["seconds"] - training["setup_seconds"]
    return {"rows": rows, **training, "extrapolated_15000_rows_epoch_seconds":
            loop * 15000 / rows}


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["banking77", "clinc150"])
    parser.add_argument("--shots", type=int, default=10)
    parser.add_argument("--budget", type=float, default=360, help="fine-tuning seconds cap")
    parser.add_argument("--epochs", type=int, nargs="+", default=[10],
                        help="fine-tuning epochs; several values: one fine-tuning each")
    parser.add_argument("--learning-rate", type=float, default=5e-5)
    parser.add_argument("--temperature", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epoch-rows", type=int, default=0)
    parser.add_argument("--out", default=ROOT / "benchmarks" / "results" / "encoder_finetune.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    results = {"args": {k: str(v) for k, v in vars(args).items()}, "datasets": {}}
    for name in args.datasets:
        results["datasets"][name] = run_dataset(
            name, args.shots, args.budget, args.seed, args.epochs,
            {"learning_rate": args.learning_rate, "temperature": args.temperature})
    rows = [[name, f"{args.shots}-shot ({d['train_rows']} rows)", d["test_rows"], system,
             f"{s['accuracy']:.2%}", f"{s['train_seconds']:.0f}"]
            for name, d in results["datasets"].items() for system, s in d["systems"].items()]
    if args.epoch_rows:
        results["full_epoch"] = epoch = time_full_epoch(args.epoch_rows, args.seed)
        rows.append(["clinc150", f"1 epoch on {epoch['rows']} full-data rows", "", "fine-tuning",
                     "", f"{epoch['seconds']:.0f}, of which setup {epoch['setup_seconds']:.0f} "
                         f"(epoch of 15,000 rows: "
                         f"{epoch['extrapolated_15000_rows_epoch_seconds']:.0f} + setup)"])
    report(["data set", "training", "test rows", "system", "accuracy", "train s"], rows,
           results, args.out)


if __name__ == "__main__":
    main()
