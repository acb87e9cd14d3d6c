"""The evaluation report (summary, per-intent scores, errors.csv) and its plots.

Plots are drawn on matplotlib `Figure` objects with their own Agg canvas, not through pyplot: no
backend is chosen and no global state is touched, so a notebook or program that imports
intentkit keeps its own; and matplotlib is imported only when a plot is made."""
import csv
import json
import logging
from pathlib import Path

import numpy as np
from sklearn.metrics import classification_report, confusion_matrix

from .metrics import CALIBRATION_BINS, score

log = logging.getLogger(__name__)


def new_figure(rows=1, columns=1, **options):
    """(figure, axes) drawn off-screen on an Agg canvas, saved with `figure.savefig`; `options`
    go to `Figure` (figsize) and `Figure.subplots` (gridspec_kw).

    The canvas is set here: on a bare Figure, the renderer seaborn's heatmap asks for came from
    matplotlib's fallback, and the confusion matrix of 150 intents took 39 s and 18.7 GB (it
    got trainings on CLINC150 killed for memory); on Agg, 3 s and 0.3 GB."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    figure = Figure(figsize=options.pop("figsize", None))
    FigureCanvasAgg(figure)
    return figure, figure.subplots(rows, columns, **options)

TOP_CONFUSIONS = 10
# A spreadsheet runs a cell starting with one of these as a formula (OWASP: CSV injection).
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value):
    """`value` safe to open in a spreadsheet: text that would start a formula gets a leading
    single quote, shown as text there. Every CSV the project writes passes its cells through it."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def plot_confusion(probabilities, true_ids, labels, path, title):
    """Row-normalised confusion matrix with the largest confusions boxed in red and listed
    beside it, so the picture stays useful at 150 intents where cell labels are unreadable."""
    matrix = confusion_matrix(true_ids, probabilities.argmax(axis=1),
                              labels=np.arange(len(labels)), normalize="true")
    off_diagonal = matrix.copy()
    np.fill_diagonal(off_diagonal, 0)
    top = [divmod(int(flat), len(labels))
           for flat in np.argsort(off_diagonal, axis=None)[::-1][:TOP_CONFUSIONS]]
    top = [(row, column) for row, column in top if off_diagonal[row, column] > 0]

    import seaborn as sns
    from matplotlib.patches import Rectangle
    size = min(40, max(9, len(labels) * 0.25))
    figure, (axes, bars) = new_figure(1, 2, figsize=(size * 1.35, size * 0.85),
                                        gridspec_kw={"width_ratios": [4, 1]})
    small = len(labels) <= 30
    # Numbers only in non-empty cells, and only while they stay legible.
    annotations = np.where(matrix > 0, np.char.mod("%.2f", matrix), "") if small else False
    sns.heatmap(matrix, ax=axes, cmap="Blues", vmin=0, vmax=1, square=True,
                annot=annotations, fmt="", annot_kws={"size": 6},
                xticklabels=labels, yticklabels=labels, cbar_kws={"shrink": 0.6})
    for row, column in top:
        axes.add_patch(Rectangle((column, row), 1, 1, fill=False, edgecolor="red", lw=2))
    axes.set(xlabel="predicted", ylabel="true", title=title)
    axes.tick_params(labelsize=7 if small else 4)

    names = [f"{labels[row]} -> {labels[column]}" for row, column in top][::-1]
    bars.barh(names, [off_diagonal[row, column] for row, column in top][::-1], color="firebrick")
    largest = max((off_diagonal[row, column] for row, column in top), default=1.0)
    bars.set(xlim=(0, min(1.0, largest * 1.3)), xlabel="share of the true intent's test rows",
             title=f"Top {len(top)} confusions")
    bars.tick_params(labelsize=max(7, size * 0.3))
    figure.tight_layout()
    figure.savefig(path, dpi=110 if small else 80)


def plot_reliability(results, true_ids, path, bins=CALIBRATION_BINS):
    figure, axes = new_figure(figsize=(5.5, 5))
    axes.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
    edges = np.linspace(0, 1, bins + 1)
    for name, probabilities in results.items():
        confidence = probabilities.max(axis=1)
        correct = probabilities.argmax(axis=1) == true_ids
        which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
        filled = [b for b in range(bins) if (which == b).any()]
        axes.plot([confidence[which == b].mean() for b in filled],
                  [correct[which == b].mean() for b in filled], "o-", label=name)
    axes.set(xlabel="confidence", ylabel="accuracy", xlim=(0, 1), ylim=(0, 1),
             title="Reliability on the test split")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def plot_history(histories, path):
    """Accuracy and loss curves, train vs validation, one line pair per trained model."""
    figure, (accuracy_axes, loss_axes) = new_figure(1, 2, figsize=(12, 4.5))
    for name, history in histories.items():
        for axes, metric in ((accuracy_axes, "accuracy"), (loss_axes, "loss")):
            line, = axes.plot(history[metric], label=f"{name} train")
            axes.plot(history[f"val_{metric}"], "--", color=line.get_color(),
                      label=f"{name} val")
    accuracy_axes.set(xlabel="epoch", ylabel="accuracy", title="Accuracy")
    loss_axes.set(xlabel="epoch", ylabel="loss", title="Loss")
    accuracy_axes.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def write_errors(path, texts, true_ids, probabilities, labels):
    """Misclassified test rows, the most confidently wrong first."""
    predicted = probabilities.argmax(axis=1)
    wrong = np.flatnonzero(predicted != true_ids)
    wrong = wrong[np.argsort(-probabilities[wrong, predicted[wrong]])]
    with open(path, "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(["text", "true", "predicted", "confidence"])
        for row in wrong:
            writer.writerow(map(csv_cell, [texts[row], labels[true_ids[row]],
                                           labels[predicted[row]],
                                           f"{probabilities[row, predicted[row]]:.4f}"]))


def _summary(metrics, reference=None):
    lines = ["# Evaluation on the held-out test split", "",
             "| model | accuracy | macro-F1 | weighted-F1 | log-loss | ECE |",
             "|---|---|---|---|---|---|"]
    for name, m in metrics.items():
        lines.append(f"| {name} | {m['accuracy']:.4f} | {m['macro_f1']:.4f} | "
                     f"{m['weighted_f1']:.4f} | {m['log_loss']:.4f} | "
                     f"{m['expected_calibration_error']:.4f} |")
    if reference:
        lines.append(f"| reference: {reference['name']} | {reference['accuracy']:.4f} | "
                     f"{reference['macro_f1']:.4f} | – | – | – |")
    if len(metrics) > 1:
        names = list(metrics)
        gain = metrics[names[-1]]["accuracy"] - metrics[names[0]]["accuracy"]
        lines += ["", f"{names[-1]} vs {names[0]}: {gain * 100:+.2f} accuracy points "
                      f"on {metrics[names[0]]['n']} test patterns."]
    return "\n".join(lines) + "\n"


def write_report(report_dir, results, texts, true_ids, labels, reference=None):
    """Write metrics.json, classification_report.txt, plots, errors.csv and summary.md.

    `results` maps a model name ("single", "ensemble") to its test probabilities; the last
    entry's errors go to errors.csv. `reference`: a baseline's scores, shown beside them.
    """
    report_dir = Path(report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    metrics = {name: score(p, true_ids, labels) for name, p in results.items()}
    (report_dir / "metrics.json").write_text(json.dumps(
        {**metrics, "reference": reference} if reference else metrics, indent=2))
    with open(report_dir / "classification_report.txt", "w", encoding="utf-8") as file:
        for name, probabilities in results.items():
            file.write(f"== {name} ==\n")
            file.write(classification_report(true_ids, probabilities.argmax(axis=1),
                                              labels=np.arange(len(labels)), target_names=labels,
                                              digits=4, zero_division=0))
            file.write("\n")
    for name, probabilities in results.items():
        plot_confusion(probabilities, true_ids, labels, report_dir / f"confusion_{name}.png",
                       f"{name}: confusion on the test split (row-normalised)")
    plot_reliability(results, true_ids, report_dir / "reliability.png")
    write_errors(report_dir / "errors.csv", texts, true_ids, list(results.values())[-1], labels)
    (report_dir / "summary.md").write_text(_summary(metrics, reference))
    return metrics
