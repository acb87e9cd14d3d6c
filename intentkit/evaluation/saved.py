"""`intentkit evaluate`: score a published run's models on labelled data."""
import logging
from pathlib import Path

import numpy as np

from .. import artifacts
from ..data.intents import load_annotated_examples
from ..errors import DataError
from ..serving.predictor import Predictor
from .entities import add_entity_report
from .report import write_report

log = logging.getLogger(__name__)


def evaluate_saved(model_dir, data_path, report_dir=None):
    """Score the published run's models (the single model, and the ensemble if the run has one)
    on labelled data and write a report. Returns (metrics by model type, the run's default).

    A run trained with entities is also scored on the data's entities (annotations in an
    intents file, or "entities": [{"start", "end", "entity"}] rows in a list file) as it
    answers: the default model, its rules, its extractor. The report gets them (metrics.json's
    "entities", summary.md, errors.csv)."""
    model_dir = Path(model_dir)
    run = artifacts.open_published(model_dir)
    texts, labels, spans = load_annotated_examples(data_path)
    unknown = sorted(set(labels) - set(run.labels))
    if unknown:
        raise DataError(f"{data_path}: intents the model was not trained on: {unknown[:10]}")
    true_ids = np.array([run.labels.index(label) for label in labels])
    results, predictors = {}, {}
    for model_type in (artifacts.SINGLE, artifacts.ENSEMBLE) if run.ensemble else (
            artifacts.SINGLE,):
        predictor = Predictor(model_dir / artifacts.MODEL_FILE,
                              model_dir / artifacts.PREPROCESSOR_FILE,
                              use_ensemble=model_type == artifacts.ENSEMBLE)
        results[model_type] = predictor.predict_proba(texts)
        predictors[model_type] = predictor
    report_dir = report_dir or model_dir / "report-evaluate"
    metrics = write_report(report_dir, results, texts, true_ids, run.labels)
    served = predictors[run.default_model]
    if served.entities is not None or served.rules.rules:
        # As the run answers: the default model's top intent, a matching rule's over it.
        probabilities = results[run.default_model]
        best = probabilities.argmax(axis=1)
        rules = [served.rules.match(text) for text in texts]
        extracted = (served.entities.extract(texts) if served.entities is not None
                     else [[] for _ in texts])
        entities = add_entity_report(
            report_dir, texts, labels,
            [rule or run.labels[i] for rule, i in zip(rules, best)],
            [1.0 if rule else float(row[i]) for rule, row, i in zip(rules, probabilities, best)],
            spans, extracted)
        log.info("entities: micro-F1 %.4f (%d entities), intent and all entities right in "
                 "%.4f of the messages", entities["micro"]["f1"], entities["micro"]["support"],
                 entities["whole_message_accuracy"])
    return metrics, run.default_model
