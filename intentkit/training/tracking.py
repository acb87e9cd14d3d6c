"""Experiment tracking: each training run, and each trial of its search, logged to MLflow (the
`tracking` extra, mlflow-skinny), so that `mlflow ui` shows runs side by side.

Off by default, and then nothing of MLflow is imported. On (`--tracking`, or a
`--tracking-uri`), the run is logged once it is published, from the published run's own files
(manifest, model card, plots): a tracking store that is unreachable or fails costs a warning,
never the model. The default store is a local SQLite file beside the runs (OUT/.mlflow/mlflow.db,
no server): MLflow 3 keeps its plain-file store in maintenance mode and refuses it by default.
"""
import importlib.util
import json
import logging
import os
from pathlib import Path

from .. import artifacts
from ..errors import ConfigError

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install -e '.[tracking]' (mlflow-skinny)"
STORE_DIR = ".mlflow"  # under --out, beside the runs
EXPERIMENT = "intentkit"
# An unreachable server must not hold the run for minutes of retries.
HTTP_SETTINGS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}


def enabled(config):
    return bool(config.tracking or config.tracking_uri)


def available():
    return importlib.util.find_spec("mlflow") is not None


def check(config):
    """Before training: tracking asked for without MLflow installed is a one-line error."""
    if enabled(config) and not available():
        raise ConfigError(f"--tracking needs MLflow: {INSTALL_HINT}, or train without "
                          "--tracking / --tracking-uri")


def store_uri(config):
    if config.tracking_uri:
        return config.tracking_uri
    store = (Path(config.out) / STORE_DIR).resolve()
    store.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{store / 'mlflow.db'}"


def log_published_run(config):
    """The run published in config.out, with its trials as nested runs; a warning on failure."""
    if not enabled(config):
        return None
    uri = store_uri(config)
    try:
        return _log(config, uri)
    except Exception as error:  # noqa: BLE001 (any failure of the store: the model is published)
        log.warning("tracking: the run was not logged to %s (%s: %s); the model is published "
                    "all the same", uri, type(error).__name__, str(error).splitlines()[0][:200]
                    if str(error) else "")
        return None


def _log(config, uri):
    for name, value in HTTP_SETTINGS.items():
        os.environ.setdefault(name, value)
    import mlflow
    for noisy in ("mlflow", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    run_dir = (Path(config.out) / artifacts.RUNS_DIR / artifacts.CURRENT_RUN).resolve()
    manifest = json.loads((run_dir / artifacts.MANIFEST_FILE).read_text())
    client = mlflow.MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    experiment_id = (experiment.experiment_id if experiment else client.create_experiment(
        EXPERIMENT, artifact_location=_artifact_location(config, uri)))
    run = client.create_run(experiment_id, run_name=run_dir.name, tags={
        "intentkit.out": str(Path(config.out).resolve()), "intentkit.run": run_dir.name,
        "intentkit.kind": "finetune" if manifest.get("finetune") else "full",
        "intentkit.default_model": str(manifest.get("default_model"))})
    run_id = run.info.run_id
    client.log_batch(run_id, params=_params(config.to_dict()))
    metrics = []
    for model_type, figures in (manifest.get("metrics") or {}).items():
        metrics += _metrics(figures, f"test_{model_type}_")
    metrics += _metrics(manifest.get("phase_seconds") or {}, "seconds_")
    metrics += _metrics({"training_seconds": manifest.get("training_seconds")}, "")
    for member, history in (manifest.get("histories") or {}).items():
        metrics += _metrics(history, f"{member}_")  # loss, accuracy, val_... per epoch
    for member, weight in (manifest.get("ensemble_weights") or {}).items():
        metrics += _metrics({f"weight_{member}": weight}, "")
    client.log_batch(run_id, metrics=metrics)
    for trial in manifest.get("tuning") or []:
        _log_trial(client, experiment_id, run_id, trial)
    for path in sorted(run_dir.glob("*.png")) + [run_dir / artifacts.MODEL_CARD_FILE,
                                                  run_dir / artifacts.MANIFEST_FILE]:
        if path.is_file():
            client.log_artifact(run_id, str(path))
    report = run_dir / artifacts.REPORT_DIR
    if report.is_dir():
        client.log_artifacts(run_id, str(report), artifact_path=artifacts.REPORT_DIR)
    client.set_terminated(run_id)
    log.info("tracking: logged as MLflow run %s in %s (%d trials)", run_id, uri,
             len(manifest.get("tuning") or []))
    return run_id


def _log_trial(client, experiment_id, parent_id, trial):
    """One trial of the search as a nested run: its configuration as parameters, its figures
    as metrics (lists, e.g. validation accuracy by epoch, as steps)."""
    child = client.create_run(experiment_id, run_name=f"trial {trial.get('name')}", tags={
        "mlflow.parentRunId": parent_id, "intentkit.trial_state": str(trial.get("state"))})
    figures = {k: v for k, v in trial.items() if k in TRIAL_FIGURES}
    client.log_batch(child.info.run_id,
                     params=_params({k: v for k, v in trial.items() if k not in figures}),
                     metrics=_metrics(figures, ""))
    client.set_terminated(child.info.run_id)


TRIAL_FIGURES = ("epochs", "best_epoch", "val_accuracy", "val_loss", "val_accuracy_by_epoch",
                 "seconds")


def _artifact_location(config, uri):
    """Beside the local store; a remote store keeps its own default."""
    if config.tracking_uri:
        return None
    return (Path(config.out) / STORE_DIR / "artifacts").resolve().as_uri()


def _number(value):
    return isinstance(value, (int, float)) and value == value  # not NaN


def _params(values):
    from mlflow.entities import Param
    return [Param(str(key), str(value)[:6000]) for key, value in values.items()]


def _metrics(values, prefix):
    """MLflow metrics of `values`: numbers, and lists of numbers as steps 0, 1, ..."""
    import time

    from mlflow.entities import Metric
    now = int(time.time() * 1000)
    metrics = []
    for key, value in values.items():
        steps = value if isinstance(value, list) else [value]
        metrics += [Metric(f"{prefix}{key}", float(v), now, step) for step, v in enumerate(steps)
                    if _number(v) and not isinstance(v, bool)]
    return metrics
