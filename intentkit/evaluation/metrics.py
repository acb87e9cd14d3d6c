"""Scores on held-out data: accuracy, macro-F1, calibration, the fallback threshold, and the cheap
reference baseline every run is measured against."""
import numpy as np
from sklearn.metrics import (
    accuracy_score,
    log_loss,
    precision_recall_fscore_support,
)

CALIBRATION_BINS = 15


def expected_calibration_error(probabilities, true_ids, bins=CALIBRATION_BINS):
    """Average gap between confidence and accuracy over equal-width confidence bins."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == true_ids
    edges = np.linspace(0, 1, bins + 1)
    error = 0.0
    for low, high in zip(edges[:-1], edges[1:]):
        in_bin = (confidence > low) & (confidence <= high)
        if in_bin.any():
            error += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return float(error)


def score(probabilities, true_ids, labels):
    """Accuracy, macro/weighted P/R/F1, per-intent P/R/F1, log-loss and calibration error."""
    predicted = probabilities.argmax(axis=1)
    label_ids = np.arange(len(labels))
    metrics = {"accuracy": float(accuracy_score(true_ids, predicted)), "n": int(len(true_ids))}
    for average in ("macro", "weighted"):
        precision, recall, f1, _ = precision_recall_fscore_support(
            true_ids, predicted, labels=label_ids, average=average, zero_division=0)
        metrics.update({f"{average}_precision": float(precision),
                        f"{average}_recall": float(recall), f"{average}_f1": float(f1)})
    precision, recall, f1, support = precision_recall_fscore_support(
        true_ids, predicted, labels=label_ids, zero_division=0)
    metrics["per_intent"] = {
        label: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
        for label, p, r, f, s in zip(labels, precision, recall, f1, support)}
    metrics["log_loss"] = float(log_loss(true_ids, probabilities, labels=label_ids))
    metrics["expected_calibration_error"] = expected_calibration_error(probabilities, true_ids)
    return metrics


def tfidf_logistic_regression(c):
    """TF-IDF over words 1-2 + logistic regression: the cheap linear baseline."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    return make_pipeline(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True),
                         LogisticRegression(C=c, max_iter=2000))


def fit_best_on_val(make_model, grid, train, val):
    """Fit make_model(value) for each value on (texts, labels) `train`; returns the model with
    the best validation accuracy and its value (the first of equals)."""
    best = None
    for value in grid:
        model = make_model(value).fit(*train)
        val_accuracy = model.score(*val)
        if best is None or val_accuracy > best[0]:
            best = (val_accuracy, model, value)
    return best[1], best[2]


def reference_baseline(split):
    """TF-IDF + logistic regression on the raw training split, C chosen on validation: the
    strong, cheap baseline a deep model must beat, measured in the same run."""
    model, c = fit_best_on_val(tfidf_logistic_regression, (1.0, 10.0, 100.0),
                               (split.train_texts, split.train_labels),
                               (split.val_texts, split.val_labels))
    predicted = model.predict(split.test_texts)
    return {"name": "TF-IDF + logistic regression", "C": c,
            "accuracy": float(accuracy_score(split.test_labels, predicted)),
            "macro_f1": float(precision_recall_fscore_support(
                split.test_labels, predicted, average="macro", zero_division=0)[2])}


def choose_fallback_threshold(probabilities, true_ids, coverage=0.95):
    """Confidence below which an answer becomes the fallback, chosen on validation data.

    Keeps `coverage` of the correctly answered validation rows above the threshold, so in-scope
    users rarely see the fallback while low-confidence guesses do.
    """
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == true_ids
    if not correct.any():
        return 0.0
    return float(np.quantile(confidence[correct], 1 - coverage))
