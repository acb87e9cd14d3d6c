"""`intentkit cv`: the folds keep their held-out part out of training, and a quick 2-fold run
(with the learning curve) through training's own phases writes cv.json, cv.md and the plots."""
import json
from collections import Counter

import numpy as np
import pytest
from conftest import QUICK_ARGS, ROOT, SMALL_INTENTS, run_script, write_intents

from intentkit.data.intents import load_intents
from intentkit.errors import DataError
from intentkit.training import cv
from intentkit.training.config import TrainConfig
from intentkit.training.cv import fold_indices, fold_split, subsample

pytestmark = pytest.mark.slow  # trains models (minutes)


@pytest.fixture
def intents(tmp_path):
    return load_intents(write_intents(tmp_path / "intents.json"))


def test_each_fold_holds_out_its_part_and_carves_validation_from_the_rest(intents):
    config = TrainConfig(data=intents.source)
    indices = fold_indices(intents, 3, seed=1)
    held_out = []
    for train_rows, test_rows in indices:
        split = fold_split(intents, train_rows, test_rows, config)
        assert not set(split.test_texts) & set(split.train_texts + split.val_texts)
        assert sorted(split.train_texts + split.val_texts) == sorted(
            intents.texts[row] for row in train_rows)
        assert set(split.val_labels) == set(SMALL_INTENTS)  # stratified
        assert Counter(split.test_labels) == Counter({tag: 4 for tag in SMALL_INTENTS})
        held_out += split.test_texts
    assert sorted(held_out) == sorted(intents.texts)  # every pattern held out exactly once


def test_too_many_folds_for_the_smallest_intent_is_a_data_error(intents):
    with pytest.raises(DataError, match="13-fold cross-validation needs at least 13 per intent"):
        fold_indices(intents, 13, seed=1)


def test_subsample_caps_training_patterns_per_intent_only(intents):
    split = fold_split(intents, *fold_indices(intents, 2, seed=1)[0], TrainConfig())
    small = subsample(split, 2, seed=3)
    assert Counter(small.train_labels) == Counter({tag: 2 for tag in SMALL_INTENTS})
    assert set(small.train_texts) <= set(split.train_texts)
    assert (small.val_texts, small.test_texts) == (split.val_texts, split.test_texts)
    assert subsample(split, 2, seed=3) == small
    assert subsample(split, 2, seed=4) != small


def test_quick_two_fold_cv_with_curve(tmp_path):
    data = write_intents(tmp_path / "intents.json")
    out = tmp_path / "cv"
    result = run_script(ROOT / "jobs.py", "cv", "--folds", "2", "--data", data, "--out", out,
                        "--curve", "--curve-sizes", "3", *QUICK_ARGS, "--search", "--epochs", "8",
                        "--ensemble-epochs", "8", "--head-epochs", "8")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert result.stderr.count("best configuration:") == 1  # tuned once, on the first fold

    document = json.loads((out / "cv.json").read_text())
    assert document["folds"] == 2 and len(document["per_fold"]) == 2
    for fold in document["per_fold"]:
        assert sum(fold["rows"].values()) == 48 and fold["rows"]["test"] == 24
        assert fold["metrics"]["default"] == fold["metrics"][fold["default_model"]]
    summary = document["summary"]
    assert list(summary) == ["default", "single", "ensemble", "reference"]
    for name, figures in summary.items():
        accuracies = [fold["metrics"][name]["accuracy"] for fold in document["per_fold"]]
        assert figures["accuracy"]["mean"] == pytest.approx(np.mean(accuracies))
        assert figures["accuracy"]["sd"] == pytest.approx(np.std(accuracies, ddof=1))
    assert sorted(document["per_intent_f1"]) == sorted(SMALL_INTENTS)
    assert all(pair["true"] != pair["predicted"] and pair["count"] > 0
               for pair in document["confused_pairs"])
    assert "fold 2 accuracy" in (out / "cv.md").read_text()
    assert (out / "fold-1" / "metrics.json").exists()
    assert not (out / "enhanced_preprocessor.pickle").exists()  # nothing published

    curve = json.loads((out / "curve.json").read_text())
    assert [point["per_intent"] for point in curve["sizes"]] == [3, "all"]
    assert curve["sizes"][0]["mean_train_rows"] == 3 * len(SMALL_INTENTS)
    assert curve["sizes"][1]["summary"] == summary
    assert sorted(curve["gain_per_pattern"]) == sorted(SMALL_INTENTS)
    for name in ("cv.png", "curve.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_gains_fit_the_whole_curve_not_its_last_two_points():
    def result(f1, counts):
        return cv.FoldResult(rows={}, default_model="ensemble", metrics={}, per_intent_f1=f1,
                             train_per_intent=counts, confusions=Counter())
    # "steady" gains 0.1 F1 per doubling at every step; "few" stops at 6 patterns, and its F1
    # moves by noise once its count no longer does; "flat" never changes count.
    points = {5: [result({"steady": 0.5, "few": 0.50, "flat": 0.7},
                         {"steady": 5, "few": 5, "flat": 4})],
              10: [result({"steady": 0.6, "few": 0.55, "flat": 0.7},
                          {"steady": 10, "few": 6, "flat": 4})],
              "all": [result({"steady": 0.7, "few": 0.60, "flat": 0.8},
                             {"steady": 20, "few": 6, "flat": 4})]}
    gains = cv.gains(points)
    assert gains["steady"]["f1_per_doubling"] == pytest.approx(0.1)
    assert gains["steady"]["f1_per_pattern"] == pytest.approx(0.1 / np.log(2) / 20)
    assert gains["flat"]["f1_per_pattern"] is None
    # The last two points alone would give "few" +0.05 F1 for 0 patterns; fitted over all of
    # them its slope is finite, and the ranking puts it first only for a real slope.
    assert gains["few"]["patterns"] == 6 and gains["few"]["f1"] == pytest.approx(0.6)
    assert list(gains)[-1] == "flat"
