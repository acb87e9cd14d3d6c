"""Choose on held-out rows, refit on every labelled row, never look at the test split (issue 29)."""
from dataclasses import replace

import numpy as np
import pytest
from conftest import write_intents
from sklearn.linear_model import LogisticRegression

from intentkit import artifacts
from intentkit.training import members
from intentkit.training import pipeline as train
from intentkit.training.config import QUICK, TrainConfig
from intentkit.training.refit import best_epoch, choose_linear_head, fold_count, linear_head_model


class Untouchable:
    """Stands for the test split during the choices: any use of it fails the test."""

    def _refuse(self, *args, **kwargs):
        raise AssertionError("the test split was read before scoring")

    __len__ = __getitem__ = __iter__ = __array__ = __getattr__ = _refuse


def quick_config(tmp_path, **overrides):
    data = write_intents(tmp_path / "intents.json")
    return TrainConfig(**{**QUICK, "data": str(data), "out": str(tmp_path / "model"),
                          "tuning_epochs": 2, "epochs": 4, "ensemble_epochs": 3,
                          "head_epochs": 3, "batch_size": 16, **overrides})


@pytest.fixture(scope="module")
def fitted_quick(tmp_path_factory):
    """Prepared data of a quick run (seed weights: every member is refitted; the rows of a full
    refit prepared)."""
    tmp_path = tmp_path_factory.mktemp("refit")
    config = quick_config(tmp_path, ensemble_weights="seed", refit="full")
    train.set_seed(config.seed)
    prepared = train.prepare(config, tmp_path)
    config = train.resolve_auto(config, len(prepared.dataset.x_train))
    return config, prepared, tmp_path


def rows_of(matrix):
    return {np.asarray(row).tobytes() for row in np.asarray(matrix)}


@pytest.mark.slow  # trains small models
def test_validation_rows_train_every_refitted_member(fitted_quick, monkeypatch):
    config, prepared, tmp_path = fitted_quick
    seen = {}
    real_fit, real_lr = members.fit_on_all_rows, members.fit_logistic_regression

    def recording_fit(model, x, y, *args, **kwargs):
        seen[args[4]] = x  # the member's name
        return real_fit(model, x, y, *args, **kwargs)

    def recording_lr(x, label_ids, c, seed):
        seen.setdefault("linear head fits", []).append(x)
        return real_lr(x, label_ids, c, seed)
    monkeypatch.setattr(members, "fit_on_all_rows", recording_fit)
    monkeypatch.setattr(members, "fit_logistic_regression", recording_lr)
    fitted = train.fit_models(prepared, config, tmp_path)
    choice = train.choose(prepared, fitted, config)
    refitted = train.refit(prepared, fitted, choice, config)

    assert all(report["refitted"] for report in refitted.refit.values()), refitted.refit
    dataset = prepared.dataset
    for name in (artifacts.SINGLE_MEMBER, "cnn"):
        assert rows_of(dataset.x_val) <= rows_of(seen[name]), f"{name} never saw validation"
        assert len(seen[name]) > len(dataset.x_train)
    final_head_rows = rows_of(seen["linear head fits"][-1])
    assert rows_of(dataset.embedded.x_val) <= final_head_rows
    assert rows_of(dataset.embedded.x_train) <= final_head_rows
    # The published models are the refitted ones, not the carve fits.
    for name, member in refitted.members.items():
        assert member.model is not fitted.members[name].model, name
    # Epochs come from early stopping on the carve.
    assert refitted.refit[artifacts.SINGLE_MEMBER]["epochs"] == best_epoch(
        fitted.histories[artifacts.SINGLE_MEMBER])


@pytest.mark.slow  # trains small models
def test_a_head_refit_refits_the_linear_head_alone_on_validation_rows_too(fitted_quick,
                                                                         monkeypatch):
    config, prepared, tmp_path = fitted_quick
    fitted = train.fit_models(prepared, config, tmp_path)
    choice = train.choose(prepared, fitted, config)
    fits, real_lr = [], members.fit_logistic_regression
    monkeypatch.setattr(members, "fit_logistic_regression",
                        lambda x, *args: fits.append(x) or real_lr(x, *args))
    refitted = train.refit(prepared, fitted, choice, replace(config, refit="head"))

    assert refitted.refit["transformer"]["refitted"] and len(fits) == 1
    embedded = prepared.dataset.embedded
    assert rows_of(embedded.x_val) | rows_of(embedded.x_train) <= rows_of(fits[0])
    assert refitted.members["transformer"].model is not fitted.members["transformer"].model
    for name in (artifacts.SINGLE_MEMBER, "cnn"):
        assert not refitted.refit[name]["refitted"]
        assert refitted.members[name].model is fitted.members[name].model


@pytest.mark.slow  # trains small models
def test_the_test_split_is_never_read_for_a_choice(fitted_quick):
    config, prepared, tmp_path = fitted_quick
    untouchable = replace(prepared.dataset, x_test=Untouchable(), y_test=Untouchable(),
                          embedded=replace(prepared.dataset.embedded, x_test=Untouchable(),
                                           y_test=Untouchable()))
    blind = replace(prepared, dataset=untouchable,
                    split=replace(prepared.split, test_texts=Untouchable(),
                                  test_labels=Untouchable()))
    fitted = train.fit_models(blind, replace(config, ensemble_weights="fitted"), tmp_path)
    choice = train.choose(blind, fitted, replace(config, ensemble_weights="fitted"))
    refitted = train.refit(blind, fitted, choice, config)
    assert refitted.refit and choice.thresholds and choice.weights
    # Scoring is the first phase allowed to read it.
    with pytest.raises(AssertionError, match="test split was read"):
        train.score(blind, refitted, choice, config, tmp_path / "report")


@pytest.mark.slow  # trains small models
def test_the_ensemble_is_never_below_the_linear_head_where_it_chooses(fitted_quick):
    config, prepared, tmp_path = fitted_quick
    config = replace(config, ensemble_weights="fitted")
    fitted = train.fit_models(prepared, config, tmp_path)
    choice = train.choose(prepared, fitted, config)
    val_true = prepared.dataset.y_val.argmax(axis=1)
    mixed = train.combine(choice.val_probs, choice.weights)
    head = fitted.linear_head.val_probabilities
    assert (mixed.argmax(1) == val_true).mean() >= (head.argmax(1) == val_true).mean()


def embedded_blobs(per_class, classes, seed=0, dim=8):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, dim)) * 3
    ids = np.repeat(np.arange(classes), per_class)
    return centres[ids] + rng.normal(size=(len(ids), dim)), ids


@pytest.mark.parametrize("classes", [2, 4])
def test_the_linear_head_as_a_keras_model_gives_the_regressions_probabilities(classes):
    x, ids = embedded_blobs(10, classes)
    model = LogisticRegression(C=1.0, max_iter=1000).fit(x, ids)
    keras_model = linear_head_model(model, x.shape[1], classes + 1)  # one class never seen
    probabilities = keras_model(x.astype(np.float32), training=False).numpy()
    np.testing.assert_allclose(probabilities[:, :classes], model.predict_proba(x), atol=1e-5)
    assert probabilities[:, classes].max() < 1e-6


def test_small_data_chooses_c_on_folds_and_large_on_validation():
    x, ids = embedded_blobs(10, 3)
    small = choose_linear_head(x[:24], ids[:24], x[24:], ids[24:], 3, seed=0)
    assert small.chosen_on.startswith("out-of-fold") and small.folds >= 2
    assert small.val_probabilities.shape == (6, 3)
    large = choose_linear_head(x[:24], ids[:24], x[24:], ids[24:], 3, seed=0, max_rows=10)
    assert large.chosen_on == "validation" and large.folds == 0
    assert fold_count(np.array([0, 0, 1])) == 0  # an intent with one row: no folds
    assert fold_count(np.array([0] * 9 + [1] * 3)) == 3

