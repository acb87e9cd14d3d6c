"""The configuration search: trials start together, Optuna's successive halving stops the weak
ones early, every trial is recorded (issue 25)."""
import numpy as np
import pytest
from conftest import write_intents

from intentkit import artifacts
from intentkit.training import members
from intentkit.training import pipeline as train
from intentkit.training.config import QUICK, TrainConfig

pytestmark = pytest.mark.slow  # trains small models


def search(tmp_path, monkeypatch, reuse_configs=False, **options):
    """The search over three ordinary configurations and one whose learning rate is zero (it
    stays at chance; last, unless the test set its own order), on the small test data:
    (prepared, config, tune's answer)."""
    if not reuse_configs:
        hopeless = {"name": "Cannot learn", "embedding_dim": 32, "learning_rate": 0.0,
                    "dropout": 0.0}
        monkeypatch.setattr(members, "SEED_CONFIGS", tuple(
            {**c, "embedding_dim": 32} for c in members.SEED_CONFIGS[:3]) + (hopeless,))
    data = write_intents(tmp_path / "intents.json")
    config = TrainConfig(**{**QUICK, "data": str(data), "out": str(tmp_path / "model"),
                            "word_vectors": "scratch", "ensemble": False, "tuning_epochs": 8,
                            "tuning_patience": 8, "search_min_epochs": 1, "batch_size": 8,
                            **options})
    train.set_seed(config.seed)
    prepared = train.prepare(config, tmp_path)
    config = train.resolve_auto(config, len(prepared.dataset.x_train))
    return prepared, config, members.tune(prepared.dataset, prepared.preprocessor,
                                          len(prepared.intents.tags), config)


def test_a_configuration_that_cannot_learn_is_stopped_early_and_still_recorded(
        tmp_path, monkeypatch):
    # On a sample of the training rows: every surviving trial runs to its end.
    _, config, (best, trials, winner) = search(tmp_path, monkeypatch, tuning_max_rows=30)

    assert [t["name"] for t in trials] == [c["name"] for c in members.SEED_CONFIGS]  # all
    stopped = {t["name"]: t for t in trials}["Cannot learn"]
    assert stopped["state"] == "pruned"
    assert stopped["epochs"] < config.tuning_epochs
    assert len(stopped["val_accuracy_by_epoch"]) == stopped["epochs"]
    assert best["name"] != "Cannot learn" and best["state"] != "pruned"
    assert sum(t["epochs"] for t in trials) < len(trials) * config.tuning_epochs
    for t in trials:
        assert t["state"] in ("pruned", "early-stopped", "completed")
        assert np.isclose(t["val_accuracy"], max(t["val_accuracy_by_epoch"]), atol=1e-4)
    assert winner is None, "a winner searched on a sample is trained anew on every row"


def test_the_first_configuration_to_report_is_pruned_like_any_other(tmp_path, monkeypatch):
    # The configuration that cannot learn goes first: judged before the others had reported,
    # it was always promoted (the only value at its rung).
    hopeless = {"name": "Cannot learn", "embedding_dim": 32, "learning_rate": 0.0,
                "dropout": 0.0}
    monkeypatch.setattr(members, "SEED_CONFIGS", (hopeless, *(
        {**c, "embedding_dim": 32} for c in members.SEED_CONFIGS[:3])))
    _, _, (best, trials, _) = search(tmp_path, monkeypatch, search_min_epochs=3,
                                     reuse_configs=True)
    assert trials[0]["name"] == "Cannot learn" and trials[0]["state"] == "pruned"
    assert best["name"] != "Cannot learn"


def test_the_winner_of_a_search_on_every_row_trains_on_as_the_final_model(
        tmp_path, monkeypatch):
    prepared, config, (best, trials, winner) = search(tmp_path, monkeypatch,
                                                      search_min_epochs=3)

    assert winner is not None and winner.configuration["name"] == best["name"]
    assert {t["name"]: t for t in trials}["Cannot learn"]["state"] == "pruned"
    assert [t["state"] for t in trials].count("pruned") == len(trials) - 1
    # The search ends once one trial is left: it is not run to the epoch limit.
    assert best["state"] == "selected" and best["epochs"] < config.tuning_epochs
    searched = winner.history_of_weights()["val_accuracy"]
    optimizer, steps = winner.model.optimizer, int(winner.model.optimizer.iterations)
    fitted, histories, _ = members.fit_members(
        prepared.dataset, prepared.preprocessor, len(prepared.intents.tags), best, config,
        tmp_path, winner)
    assert fitted[artifacts.SINGLE_MEMBER].model is winner.model  # trained on, not built again
    history = histories[artifacts.SINGLE_MEMBER]["val_accuracy"]
    assert history[:len(searched)] == searched and len(history) > len(searched)
    # ... with the optimizer it was compiled with: compiling again would trace its training
    # step again (seconds) and restart Adam's moments.
    assert winner.model.optimizer is optimizer and int(optimizer.iterations) > steps


def test_without_the_search_the_baseline_configuration_trains_alone(tmp_path, monkeypatch):
    """--no-search (and --quick): no trial is run, the seed's Baseline configuration trains,
    the run's phases have no search; --quick --search searches again."""
    def no_search(*args):
        raise AssertionError("the search ran")
    monkeypatch.setattr(train, "tune", no_search)
    data = write_intents(tmp_path / "intents.json")
    config = TrainConfig.quick(data=str(data), out=str(tmp_path / "model"), ensemble=False)
    assert not config.search and "search" not in train.phase_plan(config, None)
    assert "search" in train.phase_plan(TrainConfig.quick(search=True, out=config.out), None)
    train.set_seed(config.seed)
    prepared = train.prepare(config, tmp_path)
    config = train.resolve_auto(config, len(prepared.dataset.x_train))
    fitted = train.fit_models(prepared, config, tmp_path)
    assert fitted.trials == [] and fitted.best_config["name"] == members.SEED_CONFIGS[0]["name"]
    # The pretrained word vectors set the embedding's width, as in the search.
    assert fitted.best_config["embedding_dim"] == prepared.dataset.word_vectors.shape[1]
