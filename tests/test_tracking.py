"""Experiment tracking (intentkit.training.tracking, the `tracking` extra): a published run and
its search's trials logged to a local MLflow store; an unreachable store is a warning; off costs
nothing."""
import shutil
import subprocess
import sys

import pytest

from intentkit.errors import ConfigError
from intentkit.training import tracking
from intentkit.training.config import TrainConfig

needs_mlflow = pytest.mark.skipif(not tracking.available(), reason=tracking.INSTALL_HINT)


def published_copy(trained, tmp_path):
    out = tmp_path / "model"
    shutil.copytree(trained["out"], out, symlinks=True)
    return out


@needs_mlflow
@pytest.mark.slow  # the session's trained model
def test_a_run_and_its_trials_land_in_the_local_store(trained, tmp_path):
    import json

    import mlflow
    out = published_copy(trained, tmp_path)
    run_id = tracking.log_published_run(TrainConfig(data="x", out=str(out), tracking=True))
    assert run_id and (out / tracking.STORE_DIR / "mlflow.db").is_file()

    client = mlflow.MlflowClient(tracking_uri=tracking.store_uri(TrainConfig(out=str(out))))
    run = client.get_run(run_id)
    manifest = json.loads((out / "manifest.json").read_text())
    assert run.data.metrics["test_ensemble_accuracy"] == pytest.approx(
        manifest["metrics"]["ensemble"]["accuracy"])
    assert run.data.params["seed"] == str(manifest["config"]["seed"] if "config" in manifest
                                          else json.loads((out / "training_config.json")
                                                          .read_text())["seed"])
    epochs = client.get_metric_history(run_id, "cnn_bilstm_val_loss")
    assert len(epochs) == len(manifest["histories"]["cnn_bilstm"]["val_loss"]) > 1
    logged = {a.path for a in client.list_artifacts(run_id)}
    assert {"model_card.md", "manifest.json", "report"} <= logged
    trials = client.search_runs([run.info.experiment_id],
                                f"tags.mlflow.parentRunId = '{run_id}'")
    assert sorted(t.info.run_name for t in trials) == sorted(
        f"trial {trial['name']}" for trial in manifest["tuning"])
    by_epoch = client.get_metric_history(trials[0].info.run_id, "val_accuracy_by_epoch")
    assert len(by_epoch) >= 1 and {t.data.tags["intentkit.trial_state"] for t in trials} <= {
        "pruned", "early-stopped", "completed"}


@needs_mlflow
@pytest.mark.slow  # the session's trained model
def test_an_unreachable_store_is_a_warning(trained, tmp_path, caplog):
    out = published_copy(trained, tmp_path)
    config = TrainConfig(data="x", out=str(out), tracking_uri="http://127.0.0.1:9")
    assert tracking.log_published_run(config) is None
    assert "tracking: the run was not logged to http://127.0.0.1:9" in caplog.text
    assert "\n" not in caplog.records[-1].getMessage()


def test_tracking_without_mlflow_is_one_line_before_training(monkeypatch):
    monkeypatch.setattr(tracking, "available", lambda: False)
    with pytest.raises(ConfigError, match=r"--tracking needs MLflow: pip install"):
        tracking.check(TrainConfig(data="x", tracking=True))
    tracking.check(TrainConfig(data="x"))  # off: nothing asked of MLflow


def test_off_imports_nothing_of_mlflow(tmp_path):
    script = ("import sys\n"
              "from intentkit.training import pipeline, tracking\n"
              "from intentkit.training.config import TrainConfig\n"
              f"assert tracking.log_published_run(TrainConfig(out={str(tmp_path)!r})) is None\n"
              "assert pipeline.phase_plan(TrainConfig(out='x'), None).get('track') is None\n"
              "assert not [m for m in sys.modules if m.split('.')[0] == 'mlflow']\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / tracking.STORE_DIR).exists()
