"""`intentkit evaluate`: score a published run's models on labelled data."""
from pathlib import Path

import numpy as np

from .. import artifacts
from ..data.intents import load_examples
from ..errors import DataError
from ..serving.predictor import Predictor
from .report import write_report


def evaluate_saved(model_dir, data_path, report_dir=None):
    """Score the published run's models (the single model, and the ensemble if the run has one)
    on labelled data and write a report. Returns (metrics by model type, the run's default)."""
    model_dir = Path(model_dir)
    run = artifacts.open_published(model_dir)
    texts, labels = load_examples(data_path)
    unknown = sorted(set(labels) - set(run.labels))
    if unknown:
        raise DataError(f"{data_path}: intents the model was not trained on: {unknown[:10]}")
    true_ids = np.array([run.labels.index(label) for label in labels])
    results = {}
    for model_type in (artifacts.SINGLE, artifacts.ENSEMBLE) if run.ensemble else (
            artifacts.SINGLE,):
        predictor = Predictor(model_dir / artifacts.MODEL_FILE,
                              model_dir / artifacts.PREPROCESSOR_FILE,
                              use_ensemble=model_type == artifacts.ENSEMBLE)
        results[model_type] = predictor.predict_proba(texts)
    metrics = write_report(report_dir or model_dir / "report-evaluate", results, texts, true_ids,
                           run.labels)
    return metrics, run.default_model
