"""Out-of-scope detection on CLINC150: in-scope accuracy and OOS recall/precision at the fallback
threshold, chosen on the validation split as the product chooses it.

    python benchmarks/oos.py [--dataset ../shared/datasets/clinc150] [--augmentation-factor 0]

Trains the CNN-BiLSTM ("Baseline" configuration) through the product's featurize/fit code on the
in-scope training intents, then scores the official test split (in-scope + `oos` rows):
- "product rule": the threshold jobs.py stores, keeping 95 % of the correct in-scope validation
  answers above it (needs no out-of-scope examples);
- "tuned on val OOS": the threshold that maximises accuracy over all validation rows, `oos`
  counting as its own class (possible when you have out-of-scope examples).
("no fallback" shows plain in-scope accuracy.) A message below the threshold is the fallback, which is right for `oos` rows and wrong for
in-scope rows. A TF-IDF + logistic regression reference goes through the same two rules.
Prints a markdown table; writes benchmarks/results/oos.json.
"""
import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from common import report  # noqa: E402
from intentkit.runtime import import_tensorflow_quietly  # noqa: E402

import_tensorflow_quietly()

import keras  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.feature_extraction.text import TfidfVectorizer  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402

from intentkit.config import TrainConfig  # noqa: E402
from intentkit.data import Split, load_examples, load_intents  # noqa: E402
from intentkit.evaluate import choose_fallback_threshold  # noqa: E402
from intentkit.models import SEED_CONFIGS, build_cnn_bilstm  # noqa: E402
from intentkit.train import featurize, fit, probabilities, set_seed  # noqa: E402

OOS = "oos"


def in_scope(texts, labels):
    keep = [i for i, label in enumerate(labels) if label != OOS]
    return [texts[i] for i in keep], [labels[i] for i in keep]


def scores(probabilities_, labels, tags, threshold):
    """In-scope accuracy (fallback = wrong), OOS recall and precision at a threshold."""
    predicted = np.array(tags)[probabilities_.argmax(axis=1)].astype(object)
    predicted[probabilities_.max(axis=1) < threshold] = OOS
    labels = np.array(labels, dtype=object)
    is_oos, said_oos = labels == OOS, predicted == OOS
    return {"threshold": round(float(threshold), 4),
            "in_scope_accuracy": float((predicted[~is_oos] == labels[~is_oos]).mean()),
            "oos_recall": float(said_oos[is_oos].mean()),
            "oos_precision": float(is_oos[said_oos].mean()) if said_oos.any() else 0.0,
            "overall_accuracy": float((predicted == labels).mean())}


def tuned_threshold(val_probabilities, val_labels, tags):
    grid = np.linspace(0, 1, 201)
    return max(grid, key=lambda t: scores(val_probabilities, val_labels, tags, t)
               ["overall_accuracy"])


def evaluate(name, val_probabilities, test_probabilities, val, test, tags, coverage=0.95):
    val_texts, val_labels = val
    scope_rows = [i for i, label in enumerate(val_labels) if label != OOS]
    true_ids = np.array([tags.index(val_labels[i]) for i in scope_rows])
    rules = {"no fallback": 0.0,
             "product rule": choose_fallback_threshold(val_probabilities[scope_rows], true_ids,
                                                       coverage),
             "tuned on val OOS": tuned_threshold(val_probabilities, val_labels, tags)}
    return {f"{name}, {rule}": scores(test_probabilities, test[1], tags, threshold)
            for rule, threshold in rules.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", type=Path,
                        default=ROOT.parent / "shared" / "datasets" / "clinc150")
    parser.add_argument("--augmentation-factor", type=int, default=0,
                        help="0 keeps the run to minutes on 15,000 training patterns")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", default=ROOT / "benchmarks" / "results" / "oos.json")
    args = parser.parse_args()

    data = load_intents(args.dataset / "train.json")
    tags = data.tags
    val = load_examples(args.dataset / "val.json")
    test = load_examples(args.dataset / "test.json")
    split = Split(data.texts, data.labels, *in_scope(*val), *in_scope(*test))
    config = TrainConfig(seed=args.seed, augmentation_factor=args.augmentation_factor)
    set_seed(args.seed)
    preprocessor, _, dataset = featurize(split, tags, config)
    trial = SEED_CONFIGS[0]
    keras.utils.set_random_seed(args.seed)
    model = build_cnn_bilstm(preprocessor.vocab_size, preprocessor.max_sequence_length_,
                             len(tags), embedding_dim=trial["embedding_dim"],
                             dropout=trial["dropout"])
    started = time.perf_counter()
    fit(model, dataset, trial["learning_rate"], args.epochs, 3, config.batch_size, "oos",
        label_smoothing=config.label_smoothing)
    train_seconds = time.perf_counter() - started
    results = evaluate("CNN-BiLSTM", probabilities(model, preprocessor.transform(val[0])),
                       probabilities(model, preprocessor.transform(test[0])), val, test, tags)

    reference = make_pipeline(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True),
                              LogisticRegression(C=10, max_iter=2000))
    reference.fit(split.train_texts, split.train_labels)
    order = [list(reference.classes_).index(tag) for tag in tags]
    results.update(evaluate("TF-IDF + LR (reference)",
                            reference.predict_proba(val[0])[:, order],
                            reference.predict_proba(test[0])[:, order], val, test, tags))

    report(["system, threshold", "threshold", "in-scope accuracy", "OOS recall", "OOS precision"],
           [[name, r["threshold"], f"{r['in_scope_accuracy']:.4f}", f"{r['oos_recall']:.4f}",
             f"{r['oos_precision']:.4f}"] for name, r in results.items()],
           {"augmentation_factor": args.augmentation_factor,
            "train_seconds": round(train_seconds, 1), "results": results}, args.out)

if __name__ == "__main__":
    main()
