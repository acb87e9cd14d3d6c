"""The configuration search: trials start together, Optuna's successive halving stops the weak
ones early, every trial is recorded (issue 25)."""
import numpy as np
import pytest
from conftest import write_intents

from intentkit.training import members
from intentkit.training import pipeline as train
from intentkit.training.config import QUICK, TrainConfig

pytestmark = pytest.mark.slow  # trains small models


def test_a_configuration_that_cannot_learn_is_stopped_early_and_still_recorded(
        tmp_path, monkeypatch):
    # Three ordinary configurations, then one whose learning rate is zero: it stays at chance.
    hopeless = {"name": "Cannot learn", "embedding_dim": 32, "learning_rate": 0.0,
                "dropout": 0.0}
    configs = tuple({**c, "embedding_dim": 32} for c in members.SEED_CONFIGS[:3]) + (hopeless,)
    monkeypatch.setattr(members, "SEED_CONFIGS", configs)
    data = write_intents(tmp_path / "intents.json")
    config = TrainConfig(**{**QUICK, "data": str(data), "out": str(tmp_path / "model"),
                            "word_vectors": "scratch", "ensemble": False, "tuning_epochs": 8,
                            "tuning_patience": 8, "search_min_epochs": 1, "batch_size": 8})
    train.set_seed(config.seed)
    prepared = train.prepare(config, tmp_path)
    config = train.resolve_auto(config, len(prepared.dataset.x_train))
    best, trials = members.tune(prepared.dataset, prepared.preprocessor,
                                len(prepared.intents.tags), config)

    assert [t["name"] for t in trials] == [c["name"] for c in configs]  # every trial recorded
    stopped = {t["name"]: t for t in trials}["Cannot learn"]
    assert stopped["state"] == "pruned"
    assert stopped["epochs"] < config.tuning_epochs
    assert len(stopped["val_accuracy_by_epoch"]) == stopped["epochs"]
    assert best["name"] != "Cannot learn" and best["state"] != "pruned"
    assert sum(t["epochs"] for t in trials) < len(trials) * config.tuning_epochs
    for t in trials:
        assert t["state"] in ("pruned", "early-stopped", "completed")
        assert np.isclose(t["val_accuracy"], max(t["val_accuracy_by_epoch"]), atol=1e-4)
