"""Report numbers agree with scikit-learn; ensemble weights and thresholds behave."""
import csv
import json

import numpy as np
from sklearn.metrics import accuracy_score, f1_score, log_loss

from intentkit.data.intents import load_intents, split_data
from intentkit.evaluation.metrics import (
    choose_fallback_threshold,
    expected_calibration_error,
    score,
)
from intentkit.evaluation.report import write_errors
from intentkit.serving.predictor import Predictor
from intentkit.training.pipeline import combine, fit_ensemble_weights


def test_report_metrics_agree_with_sklearn_on_the_test_split(trained):
    data = load_intents(trained["data"])
    split = split_data(data.texts, data.labels, seed=42)  # jobs.py's default split
    metrics = json.loads((trained["out"] / "report" / "metrics.json").read_text())
    for name, ensemble in (("single", False), ("ensemble", True)):
        predictor = Predictor(trained["model"], trained["preprocessor"], use_ensemble=ensemble)
        probabilities = predictor.predict_proba(split.test_texts)
        predicted = [predictor.labels[i] for i in probabilities.argmax(axis=1)]
        true_ids = [predictor.labels.index(t) for t in split.test_labels]
        assert metrics[name]["n"] == len(split.test_texts)
        assert np.isclose(metrics[name]["accuracy"], accuracy_score(split.test_labels, predicted))
        assert np.isclose(metrics[name]["macro_f1"],
                          f1_score(split.test_labels, predicted, average="macro"))
        assert np.isclose(metrics[name]["log_loss"],
                          log_loss(true_ids, probabilities, labels=range(4)), atol=1e-4)
    errors = (trained["out"] / "report" / "errors.csv").read_text().splitlines()
    wrong = round((1 - metrics["ensemble"]["accuracy"]) * metrics["ensemble"]["n"])
    assert len(errors) == 1 + wrong


def test_score_and_calibration_on_a_known_case():
    probabilities = np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8], [0.7, 0.3]])
    true_ids = np.array([0, 1, 1, 0])
    metrics = score(probabilities, true_ids, ["a", "b"])
    assert metrics["accuracy"] == 0.75
    assert metrics["per_intent"]["b"]["recall"] == 0.5
    # Bins: 0.9 right, 0.6 wrong, 0.8 right, 0.7 right -> each gap |acc - conf| weighted 1/4.
    expected = (0.1 + 0.6 + 0.2 + 0.3) / 4
    assert np.isclose(expected_calibration_error(probabilities, true_ids), expected)


def test_fitted_weights_sum_to_one_and_prefer_the_better_member():
    true_ids = np.array([0, 1, 0, 1])
    good = np.array([[0.9, 0.1], [0.1, 0.9], [0.8, 0.2], [0.2, 0.8]])
    noisy = np.full((4, 2), 0.5)
    weights = fit_ensemble_weights({"good": good, "noisy": noisy, "other": noisy}, true_ids)
    assert np.isclose(sum(weights.values()), 1.0)
    assert weights["good"] > 0.5
    assert np.allclose(combine({"good": good, "noisy": noisy}, {"good": 1.0, "noisy": 0.0}), good)


def test_threshold_keeps_the_requested_share_of_correct_answers():
    confidence = np.linspace(0.5, 1.0, 100)
    probabilities = np.stack([confidence, 1 - confidence], axis=1)
    threshold = choose_fallback_threshold(probabilities, np.zeros(100, int), coverage=0.9)
    assert np.isclose((confidence >= threshold).mean(), 0.9, atol=0.01)


def test_errors_csv_defuses_spreadsheet_formulas(tmp_path):
    """Cells that a spreadsheet would run as a formula get a leading quote (OWASP CSV injection);
    other cells, commas and quotes included, read back unchanged."""
    texts = ['=HYPERLINK("http://example.com","click")', "+1+1", "-2+3", "@SUM(A1:A9)",
             "\tcmd", "\rcmd", 'plain, "quoted" text', "a = b"]
    labels = ["=cmd|' /C calc'!A0", "salary"]
    confidence = np.linspace(0.9, 0.6, len(texts))  # the most confidently wrong first
    probabilities = np.stack([confidence, 1 - confidence], axis=1)
    write_errors(tmp_path / "errors.csv", texts, np.ones(len(texts), int), probabilities, labels)
    with open(tmp_path / "errors.csv", newline="", encoding="utf-8") as file:
        rows = list(csv.reader(file))
    assert rows[0] == ["text", "true", "predicted", "confidence"]
    assert [row[0] for row in rows[1:]] == [
        "'" + text for text in texts[:6]] + ['plain, "quoted" text', "a = b"]
    assert {(row[1], row[2]) for row in rows[1:]} == {("salary", "'=cmd|' /C calc'!A0")}
    assert rows[1][3] == "0.9000"


def test_fitted_weights_never_score_below_the_best_member_on_validation():
    """Log-loss alone would mix in the confident but often wrong member."""
    rng = np.random.default_rng(0)
    true_ids = rng.integers(0, 3, 60)
    right = np.eye(3)[true_ids]
    honest = 0.5 * right + 0.5 / 3  # always right, never sure
    wrong_ids = np.where(rng.random(60) < 0.4, (true_ids + 1) % 3, true_ids)
    bold = 0.97 * np.eye(3)[wrong_ids] + 0.01  # sure of itself, wrong 40 % of the time
    members = {"honest": honest, "bold": bold}
    weights = fit_ensemble_weights(members, true_ids)
    mixed = combine(members, weights)
    assert (mixed.argmax(axis=1) == true_ids).mean() >= max(
        (p.argmax(axis=1) == true_ids).mean() for p in members.values())


def test_the_confusion_matrix_of_150_intents_is_drawn_within_2_gb(tmp_path):
    """On a bare matplotlib Figure, seaborn's heatmap of 150 intents took 18.7 GB (trainings on
    CLINC150 were killed for memory); in a process limited to 2 GB of address space beyond
    what its imports take, it is drawn and saved."""
    import subprocess
    import sys
    code = """
import resource, sys
import numpy as np, seaborn, sklearn.metrics
from intentkit.evaluation.report import plot_confusion
with open("/proc/self/status") as status:
    size = next(int(line.split()[1]) for line in status if line.startswith("VmSize"))
limit = size * 1024 + 2 * 1024 ** 3
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
rng = np.random.default_rng(0)
plot_confusion(rng.random((4500, 150)), rng.integers(0, 150, 4500),
               [f"intent_{i}" for i in range(150)], sys.argv[1], "150 intents")
"""
    path = tmp_path / "confusion.png"
    result = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert path.stat().st_size > 10_000
