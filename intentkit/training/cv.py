"""Cross-validation and the learning curve: figures a small team can trust.

K stratified folds over all patterns. Each fold's held-out part is the test split of one run of
training's own phases (`train.prepare_split` / `fit_models` / `choose` / `refit` / `score`): it
is never augmented, balanced, used for the vocabulary, for tuning or early stopping; the
validation split is carved from the fold's training part, the same share as `train` carves.
The configuration is tuned once, on the first fold, and reused by the others, so K folds cost
about K fits (each with its refit). Nothing is published.

The learning curve reruns the same folds with each fold's training part subsampled per intent
(seeded; the validation and test parts stay whole), with the configuration the folds chose.
"""
import json
import logging
import random
import tempfile
from collections import Counter, defaultdict
from dataclasses import dataclass, replace
from pathlib import Path

import keras
import numpy as np
from sklearn.model_selection import StratifiedKFold

from .. import artifacts
from ..data import feedback
from ..data.intents import split_data
from ..errors import ConfigError, DataError
from ..evaluation.report import new_figure
from ..progress import Progress
from . import entities, interrupts
from .pipeline import (
    choose,
    fit_models,
    load_checked,
    prepare_split,
    refit,
    resolve_auto,
    score,
    set_seed,
)

log = logging.getLogger(__name__)

DEFAULT_FOLDS = 5
CURVE_SIZES = (5, 10, 20, 40)  # training patterns per intent; "all" is the folds' own result
DEFAULT = "default"  # the default answer: the model type each fold's validation chose
REFERENCE = "reference"  # TF-IDF + logistic regression on the same split
SYSTEMS = (DEFAULT, artifacts.SINGLE, artifacts.ENSEMBLE, REFERENCE)
METRICS = ("accuracy", "macro_f1")
TOP_PAIRS = 10


@dataclass
class FoldResult:
    rows: dict  # train (before augmentation) / val / test rows
    default_model: str
    metrics: dict  # system -> {"accuracy", "macro_f1"}
    per_intent_f1: dict  # intent -> F1 of the default answer
    train_per_intent: dict  # intent -> training patterns (before augmentation)
    confusions: Counter  # (true intent, predicted intent) -> test rows, default answer
    entities: dict = None  # the fold's entity metrics (training.entities); None without


# --- folds ----------------------------------------------------------------------------------


def fold_indices(intents, folds, seed):
    """(training rows, test rows) of each stratified fold."""
    if folds < 2:
        raise ConfigError(f"--folds must be at least 2, not {folds}")
    counts = Counter(intents.labels)
    smallest = min(counts, key=counts.get)
    if counts[smallest] < folds:
        raise DataError(f"{intents.source}: intent {smallest!r} has {counts[smallest]} patterns; "
                        f"{folds}-fold cross-validation needs at least {folds} per intent. Add "
                        "patterns or lower --folds.")
    splitter = StratifiedKFold(folds, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros(len(intents.labels)), intents.labels))


def fold_split(intents, train_rows, test_rows, config):
    """The fold's held-out part as the test split; validation carved from its training part, the
    share of the non-test rows that `train` carves."""
    def pick(rows):
        return [intents.texts[i] for i in rows], [intents.labels[i] for i in rows]
    split = split_data(*pick(train_rows), config.val_size / (1 - config.test_size), 0,
                       config.seed)
    test_texts, test_labels = pick(test_rows)
    return replace(split, test_texts=test_texts, test_labels=test_labels)


def subsample(split, per_intent, seed):
    """The split with at most `per_intent` training patterns of each intent (seeded)."""
    rows = defaultdict(list)
    for row, label in enumerate(split.train_labels):
        rows[label].append(row)
    rng = random.Random(seed)
    kept = sorted(row for label_rows in rows.values()
                  for row in rng.sample(label_rows, min(per_intent, len(label_rows))))
    return replace(split, train_texts=[split.train_texts[row] for row in kept],
                   train_labels=[split.train_labels[row] for row in kept])


# --- one fold: training's phases ----------------------------------------------------------


def run_fold(intents, split, config, best_config, report_dir):
    """Fit and score one fold with training's phases; returns (FoldResult, the configuration
    used: tuned here when `best_config` is None)."""
    if config.feedback:
        split, _ = feedback.fold_into_training(split, config.feedback, intents.tags)
    with tempfile.TemporaryDirectory(prefix="intentkit-cv-") as workdir:
        prepared = prepare_split(intents, split, config, Path(workdir))
        config = resolve_auto(config, len(prepared.dataset.x_train))
        fitted = fit_models(prepared, config, Path(workdir), best_config=best_config)
        choice = choose(prepared, fitted, config)
        fitted = refit(prepared, fitted, choice, config)
        scores = score(prepared, fitted, choice, config, report_dir)
        entity_metrics = entities.score_fold(prepared, scores, config, report_dir)
    keras.backend.clear_session()
    return replace(fold_result(prepared, scores), entities=entity_metrics), fitted.best_config


def fold_result(prepared, scores):
    tags, split = prepared.intents.tags, prepared.split
    metrics = {name: {m: scores.metrics[name][m] for m in METRICS} for name in scores.metrics}
    metrics[DEFAULT] = metrics[scores.default_model]
    metrics[REFERENCE] = {m: scores.reference[m] for m in METRICS}
    true = prepared.dataset.y_test.argmax(axis=1)
    predicted = scores.test_results[scores.default_model].argmax(axis=1)
    return FoldResult(
        {"train": len(split.train_texts), "val": len(split.val_texts),
         "test": len(split.test_texts)},
        scores.default_model, metrics,
        {tag: m["f1"] for tag, m in scores.metrics[scores.default_model]["per_intent"].items()},
        dict(Counter(split.train_labels)),
        Counter((tags[t], tags[p]) for t, p in zip(true, predicted) if t != p))


# --- cross-validation -----------------------------------------------------------------------


def load_folds(config, folds):
    if config.finetune or config.val_data or config.test_data:
        raise ConfigError("cross-validation carves its own splits from --data: drop "
                          "--finetune, --val-data and --test-data")
    intents = load_checked(config.data, config.on_conflict)
    return intents, fold_indices(intents, folds, config.seed)


def cross_validate(config, folds=DEFAULT_FOLDS, curve_sizes=None):
    """Cross-validate (and, with `curve_sizes`, the learning curve) into config.out: cv.json,
    cv.md, cv.png and each fold's report (fold-N/); returns the cv.json document."""
    set_seed(config.seed)
    out = Path(config.out)
    intents, indices = load_folds(config, folds)
    with interrupts.interruptible():
        results, best = run_folds(intents, indices, config, out)
        document = cv_document(config, intents, results, best)
        write_cv(out, document)
        if curve_sizes:
            write_curve(out, learning_curve(intents, indices, config, best, results,
                                            curve_sizes))
    return document


def run_folds(intents, indices, config, out):
    progress = Progress("cross-validation", len(indices), unit="fold")
    results, best = [], None
    for number, (train_rows, test_rows) in enumerate(indices, 1):
        split = fold_split(intents, train_rows, test_rows, config)
        result, best = run_fold(intents, split, config, best, out / f"fold-{number}")
        results.append(result)
        progress.update(1, f"fold {number}/{len(indices)}: " + describe(result.metrics))
    progress.close()
    return results, best


def describe(metrics):
    return ", ".join(f"{name} {metrics[name]['accuracy']:.4f}" for name in SYSTEMS
                     if name in metrics)


def mean_sd(values):
    """Mean and sample standard deviation (0 for a single value)."""
    values = np.asarray(values, dtype=float)
    return {"mean": float(values.mean()),
            "sd": float(values.std(ddof=1)) if len(values) > 1 else 0.0}


def summarize(results):
    """Each system's metrics as mean and sd over the folds."""
    systems = [name for name in SYSTEMS if all(name in r.metrics for r in results)]
    return {name: {m: mean_sd([r.metrics[name][m] for r in results]) for m in METRICS}
            for name in systems}


def mean_over_folds(results, field):
    """{intent: the mean over the folds of a FoldResult's per-intent `field`}."""
    return {tag: float(np.mean([getattr(r, field)[tag] for r in results]))
            for tag in getattr(results[0], field)}


def per_intent_f1(results):
    """Each intent's F1 (default answer) averaged over the folds, the weakest first."""
    means = mean_over_folds(results, "per_intent_f1")
    return dict(sorted(means.items(), key=lambda item: item[1]))


def confused_pairs(results, top=TOP_PAIRS):
    total = sum((r.confusions for r in results), Counter())
    return [{"true": true, "predicted": predicted, "count": count}
            for (true, predicted), count in total.most_common(top)]


def cv_document(config, intents, results, best):
    return {"created": artifacts.now(), "data": str(config.data),
            "data_sha256": artifacts.sha256(config.data), "patterns": len(intents.texts),
            "intents": len(intents.tags), "folds": len(results), "seed": config.seed,
            "config": config.to_dict(), "best_config": best,
            "summary": summarize(results),
            "per_fold": [{"fold": number, "rows": r.rows, "default_model": r.default_model,
                          "metrics": r.metrics} for number, r in enumerate(results, 1)],
            "per_intent_f1": per_intent_f1(results),
            "confused_pairs": confused_pairs(results),
            "entities": entity_summary(results)}


def entity_summary(results):
    """Entity micro P/R/F1 and whole-message accuracy as mean and sd over the folds, and each
    type's F1 averaged over the folds that hold it; None for data without entities."""
    folds = [r.entities for r in results if r.entities]
    if not folds:
        return None
    types = sorted({name for fold in folds for name in fold["per_type"]})
    return {"micro_" + m: mean_sd([fold["micro"][m] for fold in folds])
            for m in ("precision", "recall", "f1")} | {
        "whole_message_accuracy": mean_sd([fold["whole_message_accuracy"] for fold in folds]),
        "per_type_f1": {name: float(np.mean([fold["per_type"][name]["f1"] for fold in folds
                                             if name in fold["per_type"]]))
                        for name in types}}


def write_cv(out, document):
    out.mkdir(parents=True, exist_ok=True)
    (out / "cv.json").write_text(json.dumps(document, indent=2))
    (out / "cv.md").write_text(cv_markdown(document))
    plot_folds(document, out / "cv.png")
    for name, figures in document["summary"].items():
        log.info("CV %-9s accuracy %s  macro-F1 %s", name, plus_minus(figures["accuracy"]),
                 plus_minus(figures["macro_f1"]))
    if document.get("entities"):
        log.info("CV entities  micro-F1 %s  whole-message accuracy %s",
                 plus_minus(document["entities"]["micro_f1"]),
                 plus_minus(document["entities"]["whole_message_accuracy"]))
    log.info("wrote %s, cv.md and cv.png", out / "cv.json")


def plus_minus(figure):
    return f"{figure['mean']:.4f} +- {figure['sd']:.4f}"


def cv_markdown(document):
    systems = list(document["summary"])
    lines = [f"# {document['folds']}-fold cross-validation of {document['data']}", "",
             f"{document['patterns']} patterns, {document['intents']} intents, seed "
             f"{document['seed']}; mean +- sample standard deviation over the folds. `default` is "
             "the model each fold's validation split chose.", "",
             "| | " + " | ".join(systems) + " |", "|---" * (len(systems) + 1) + "|"]
    for metric in METRICS:
        lines.append(f"| {metric} (mean +- sd) | " + " | ".join(
            plus_minus(document["summary"][name][metric]) for name in systems) + " |")
    for fold in document["per_fold"]:
        lines.append(f"| fold {fold['fold']} accuracy | " + " | ".join(
            f"{fold['metrics'][name]['accuracy']:.4f}" for name in systems) + " |")
    lines += ["", "## Per-intent F1 (default answer, mean over folds; weakest first)", "",
              "| intent | F1 |", "|---|---|"]
    lines += [f"| {tag} | {f1:.3f} |" for tag, f1 in document["per_intent_f1"].items()]
    lines += ["", "## Most confused pairs (test rows, summed over folds)", "",
              "| true | predicted | rows |", "|---|---|---|"]
    lines += [f"| {pair['true']} | {pair['predicted']} | {pair['count']} |"
              for pair in document["confused_pairs"]]
    entity_figures = document.get("entities")
    if entity_figures:
        lines += ["", "## Entities (exact span and type; mean +- sd over the folds)", "",
                  "| micro precision | micro recall | micro F1 | intent and all entities right |",
                  "|---|---|---|---|",
                  "| " + " | ".join(plus_minus(entity_figures[m]) for m in (
                      "micro_precision", "micro_recall", "micro_f1",
                      "whole_message_accuracy")) + " |", "", "| type | F1 (mean) |", "|---|---|"]
        lines += [f"| {name} | {f1:.3f} |" for name, f1 in entity_figures["per_type_f1"].items()]
    return "\n".join(lines) + "\n"


def plot_folds(document, path):
    """Per-fold accuracy bars of each system, with the mean."""
    systems = list(document["summary"])
    folds = document["per_fold"]
    figure, axes = new_figure(figsize=(max(6, 1.6 * len(systems) * len(folds) / 3), 4.5))
    width = 0.8 / len(folds)
    for index, fold in enumerate(folds):
        axes.bar(np.arange(len(systems)) + (index - (len(folds) - 1) / 2) * width,
                 [fold["metrics"][name]["accuracy"] for name in systems], width,
                 label=f"fold {fold['fold']}")
    means = [document["summary"][name]["accuracy"]["mean"] for name in systems]
    axes.scatter(np.arange(len(systems)), means, color="black", marker="_", s=800, zorder=3,
                 label="mean")
    axes.set(xticks=np.arange(len(systems)), xticklabels=systems, ylabel="test accuracy",
             ylim=(max(0, min(means) - 0.2), 1), title=f"{len(folds)}-fold cross-validation")
    axes.legend(fontsize=7, ncol=2)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


# --- learning curve -------------------------------------------------------------------------


def learning_curve(intents, indices, config, best, full_results, sizes):
    """Each size's fold results (subsampled training parts), the folds' own results as "all"."""
    most = max(max(r.train_per_intent.values()) for r in full_results)
    sizes = sorted(size for size in set(sizes) if 0 < size < most)
    if not sizes:
        raise ConfigError(f"--curve-sizes: give sizes between 1 and {most - 1}, the most "
                          "training patterns an intent has in a fold")
    log.info("learning curve: %s training patterns per intent, then all (up to %d)", sizes,
             most)
    progress = Progress("learning curve", len(sizes) * len(indices), unit="fit")
    points = {}
    with tempfile.TemporaryDirectory(prefix="intentkit-curve-") as reports:
        for size in sizes:
            points[size] = []
            for number, (train_rows, test_rows) in enumerate(indices, 1):
                split = subsample(fold_split(intents, train_rows, test_rows, config), size,
                                  config.seed + number)
                result, _ = run_fold(intents, split, config, best, Path(reports) / str(size))
                points[size].append(result)
                progress.update(1, f"{size} per intent, fold {number}: "
                                f"{describe(result.metrics)}")
    progress.close()
    return {**points, "all": full_results}


def gains(points):
    """Each intent's F1 (default answer) against its training patterns over the whole curve:
    a line fitted to F1 against the log of the patterns (learning curves are about straight
    there), read as the gain per doubling and, at today's count, per added pattern; largest
    gain per pattern first. Every point, not the last two: an intent with few patterns reaches
    its count at a small size, and a difference of a pattern or two between two points turned
    noise into the largest "gains". None where the count never changed (no slope to fit)."""
    counts_by_size = [mean_over_folds(results, "train_per_intent") for results in points.values()]
    f1_by_size = [mean_over_folds(results, "per_intent_f1") for results in points.values()]
    slopes = {}
    for tag in f1_by_size[-1]:
        counts = np.array([size_counts[tag] for size_counts in counts_by_size])
        f1 = np.array([size_f1[tag] for size_f1 in f1_by_size])
        slope = (np.polyfit(np.log(counts), f1, 1)[0] if np.ptp(np.log(counts)) > 1e-9
                 else None)
        slopes[tag] = {"patterns": float(counts[-1]), "f1": float(f1[-1]),
                       "f1_per_doubling": None if slope is None else float(slope * np.log(2)),
                       "f1_per_pattern": None if slope is None else float(slope / counts[-1])}
    return dict(sorted(slopes.items(), key=lambda item: -(item[1]["f1_per_pattern"] or 0)))


def curve_document(points):
    return {"sizes": [{"per_intent": size, "mean_train_rows": float(np.mean(
                           [r.rows["train"] for r in results])), "summary": summarize(results),
                       "per_intent_f1": per_intent_f1(results),
                       "train_per_intent": mean_over_folds(results, "train_per_intent")}
                      for size, results in points.items()],
            "gain_per_pattern": gains(points)}


def write_curve(out, points):
    document = curve_document(points)
    (out / "curve.json").write_text(json.dumps(document, indent=2))
    (out / "curve.md").write_text(curve_markdown(document))
    plot_curve(document, out / "curve.png")
    log.info("wrote %s, curve.md and curve.png", out / "curve.json")


def _signed(value, digits):
    return "-" if value is None else f"{value:+.{digits}f}"


def curve_markdown(document):
    systems = list(document["sizes"][0]["summary"])
    lines = ["# Learning curve: test accuracy against training patterns per intent", "",
             "Same folds as cv.md; each fold's training part subsampled per intent (seeded), "
             "validation and test parts whole, the configuration the folds chose.", "",
             "| patterns per intent | training rows | " + " | ".join(systems) + " |",
             "|---" * (len(systems) + 2) + "|"]
    for point in document["sizes"]:
        lines.append(f"| {point['per_intent']} | {point['mean_train_rows']:.0f} | " + " | ".join(
            plus_minus(point["summary"][name]["accuracy"]) for name in systems) + " |")
    lines += ["", "## Which intents would gain most from new examples", "",
              "A line fitted to each intent's F1 (default answer) against the log of its "
              "training patterns over the whole curve: its gain if its patterns doubled, and "
              "per added pattern at today's count (largest first).", "",
              "| intent | training patterns (all) | F1 (all) | F1 gain per doubling | "
              "F1 gain per added pattern |", "|---|---|---|---|---|"]
    for tag, gain in document["gain_per_pattern"].items():
        lines.append(f"| {tag} | {gain['patterns']:.1f} | {gain['f1']:.3f} | "
                     f"{_signed(gain['f1_per_doubling'], 3)} | "
                     f"{_signed(gain['f1_per_pattern'], 4)} |")
    return "\n".join(lines) + "\n"


def plot_curve(document, path):
    points = document["sizes"]
    figure, (axes, bars) = new_figure(1, 2, figsize=(12, 4.5))
    rows = [point["mean_train_rows"] for point in points]
    for name in points[0]["summary"]:
        axes.errorbar(rows, [p["summary"][name]["accuracy"]["mean"] for p in points],
                      yerr=[p["summary"][name]["accuracy"]["sd"] for p in points], marker="o",
                      capsize=3, label=name)
    axes.set_xscale("log")
    axes.set_xticks(rows, [str(point["per_intent"]) for point in points])
    axes.minorticks_off()
    axes.set(xlabel="training patterns per intent", ylabel="test accuracy (mean +- sd)",
             title="Learning curve")
    axes.legend(fontsize=7)
    top = list(document["gain_per_pattern"].items())[:TOP_PAIRS][::-1]
    bars.barh([tag for tag, _ in top], [gain["f1_per_pattern"] or 0 for _, gain in top],
              color="seagreen")
    bars.set(xlabel="F1 gain per added pattern (fitted over the curve)",
             title="Intents that would gain most")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
