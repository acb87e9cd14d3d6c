"""The entity part of a training run: train the labeller, measure it, write its files.

Called once by the pipeline, after the intent models' files are written and before the run is
published (`add_to_run`). Data without entities (no annotation, no "entities" or "rules"
section) gets nothing: no file, and answers carry `entities: []`.

The labeller trains on the annotated training rows and their entity value substitution
variants (training.entity_substitution, `--entity-substitution`: on SNIPS +1.3 to +2.1 points
of micro-F1 on 1,000 and 3,000 training rows, +0.16 on all of them; docs/entities.md). It is
chosen by its entity micro-F1 on the validation split among CRF settings
(sklearn-crfsuite, the labeller of Rasa's CRFEntityExtractor and snips-nlu); the scores of every
candidate go into the manifest. The MiniLM token head (models.entity_tagger.TokenHeadTagger) is
not a candidate of a run: on SNIPS it scored below the CRF (micro-F1 0.818 against 0.864 on the
same 3,000 rows) for 2.6 times its training time and 400 times its latency per message
(docs/benchmarks/entities-3000rows-2026-12-06.json). Beside the labeller, the lookup tables and
regexes of the "entities" section match deterministically, and synonyms (the section's and the
annotations' `[NYC]{"entity": "location", "value": "New York"}`) give canonical values.

The split is the run's: training rows are the intents file's training split (feedback rows carry
no annotation and are left out of the labeller's training), validation and test rows the run's,
with spans from the intents file or from `--val-data` / `--test-data` in the list format.
"""
import json
import logging
import time
from dataclasses import dataclass, replace

import numpy as np

from .. import artifacts
from ..artifacts.model_card import write_model_card
from ..data.annotations import learned_synonyms
from ..data.intents import load_annotated_examples
from ..evaluation.entities import add_entity_report, micro_f1
from ..models.entity_tagger import CrfTagger
from ..serving.entities import EntityExtractor
from .entity_substitution import EntitySubstituter, type_values

log = logging.getLogger(__name__)

# CRF settings tried on validation (L1 c1, L2 c2). Beyond CANDIDATE_ROWS training rows only the
# first is trained: a CRF's training time grows with the rows, and the grid's gain with fewer.
CRF_CANDIDATES = ({"c1": 0.05, "c2": 0.05}, {"c1": 0.15, "c2": 0.01})
CANDIDATE_ROWS = 3000
CRF_ITERATIONS = 150
# The manifest's keys that write_manifest makes itself (the rest are the run's details).
MANIFEST_OWN_KEYS = ("format_version", "versions", "files", "sizes", "manifest_sha256")


@dataclass
class EntityRows:
    """The run's split with each row's entity spans."""
    train_texts: list
    train_spans: list
    val_texts: list
    val_spans: list
    test_texts: list
    test_spans: list


def has_entities(intents):
    return intents.has_entities or bool(intents.rules.rules)


def entity_rows(intents, split, config):
    """The split's rows with their spans: from the intents file (its texts are distinct), or
    from the validation/test file that replaced a carved split."""
    spans_of = dict(zip(intents.texts, intents.spans or [() for _ in intents.texts]))
    train = [(text, spans_of[text]) for text in split.train_texts if text in spans_of]

    def spans(texts, given_file):
        if given_file:
            given_texts, _, given_spans = load_annotated_examples(given_file)
            if list(given_texts) == list(texts):
                return list(given_spans)
        return [spans_of.get(text, ()) for text in texts]
    return EntityRows([t for t, _ in train], [s for _, s in train],
                      list(split.val_texts), spans(split.val_texts, config.val_data),
                      list(split.test_texts), spans(split.test_texts, config.test_data))


def with_substituted_values(rows, entity_types, synonyms, factor, max_rows, seed):
    """The rows with entity value substitution's variants of the training rows added
    (`entity_substitution`); validation and test rows as they were, and never written."""
    def canonical(entity, written):
        return synonyms.get((entity, written.casefold()),
                            entity_types.canonical(entity, written))
    substituter = EntitySubstituter(type_values(rows.train_texts, rows.train_spans,
                                                entity_types), canonical, factor=factor,
                                    max_rows=max_rows, seed=seed)
    texts, spans = substituter.substitute(rows.train_texts, rows.train_spans,
                                          exclude=[*rows.val_texts, *rows.test_texts])
    return replace(rows, train_texts=[*rows.train_texts, *texts],
                   train_spans=[*rows.train_spans, *spans])


def choose_labeller(rows, entity_types):
    """(the labeller with the best validation micro-F1, or None without annotated training
    rows; the candidates' settings, scores and training seconds)."""
    if not any(rows.train_spans):
        return None, []
    settings = CRF_CANDIDATES if len(rows.train_texts) <= CANDIDATE_ROWS else CRF_CANDIDATES[:1]
    best, best_score, candidates = None, -1.0, []
    for params in settings:
        started = time.perf_counter()
        labeller = CrfTagger(entity_types, max_iterations=CRF_ITERATIONS, **params).fit(
            rows.train_texts, rows.train_spans)
        seconds = round(time.perf_counter() - started, 1)
        score = (micro_f1(rows.val_spans, labeller.predict(rows.val_texts))
                 if any(rows.val_spans) else 0.0)
        candidates.append({"labeller": labeller.extractor, **params, "val_micro_f1": score,
                           "train_seconds": seconds})
        log.info("entity labeller %s %s: validation micro-F1 %.4f (%.1f s)",
                 labeller.extractor, params, score, seconds)
        if score > best_score:
            best, best_score = labeller, score
    return best, candidates


def served_intents(prepared, scores):
    """(intent, confidence) of each test row as the run answers: its default model's top
    intent, a matching rule's over it (confidence 1)."""
    tags = prepared.intents.tags
    probabilities = scores.test_results[scores.default_model]
    rules = prepared.intents.rules
    out = []
    for text, row in zip(prepared.split.test_texts, probabilities):
        rule = rules.match(text)
        best = int(np.argmax(row))
        out.append((rule, 1.0) if rule else (tags[best], float(row[best])))
    return out


@dataclass
class Trained:
    """The entity part of a run or a fold: its labeller and synonyms, and its test scores."""
    labeller: object  # CrfTagger or None
    synonyms: dict
    candidates: list
    rows: EntityRows  # as split, without the substituted variants
    substituted_rows: int
    metrics: dict  # evaluation.entities.add_entity_report's


def fit_and_score(prepared, scores, config, report_dir):
    """Train the labeller of a split's training rows, answer its test rows like serving does,
    and add the entity scores to the split's report (metrics.json, summary.md, errors.csv)."""
    intents = prepared.intents
    rows = entity_rows(intents, prepared.split, config)
    synonyms = learned_synonyms(rows.train_texts, rows.train_spans)
    trained_on = with_substituted_values(rows, intents.entity_types, synonyms,
                                         config.entity_substitution,
                                         config.entity_substitution_max_rows, config.seed)
    labeller, candidates = choose_labeller(trained_on, intents.entity_types)
    predicted = EntityExtractor(labeller, intents.entity_types, synonyms).extract(
        rows.test_texts)
    answered = served_intents(prepared, scores)
    metrics = add_entity_report(report_dir, rows.test_texts, prepared.split.test_labels,
                                [intent for intent, _ in answered],
                                [confidence for _, confidence in answered], rows.test_spans,
                                predicted)
    log.info("TEST entities: micro-F1 %.4f (%d entities), whole-message accuracy %.4f",
             metrics["micro"]["f1"], metrics["micro"]["support"],
             metrics["whole_message_accuracy"])
    return Trained(labeller, synonyms, candidates, rows,
                   len(trained_on.train_texts) - len(rows.train_texts), metrics)


def score_fold(prepared, scores, config, report_dir):
    """A cross-validation fold's entity metrics (None for data without entities)."""
    if not has_entities(prepared.intents):
        return None
    return fit_and_score(prepared, scores, config, report_dir).metrics


def write_entity_files(staging, labeller, intents, synonyms):
    """entities.json (types, synonyms, rules, the labeller's file) and the labeller's model."""
    described = None
    if labeller is not None:
        (staging / artifacts.ENTITY_LABELLER_FILE).write_bytes(labeller.model_bytes)
        described = {"kind": labeller.extractor, "file": artifacts.ENTITY_LABELLER_FILE,
                     "params": labeller.params, "match_types": labeller.match_types}
    document = {"labeller": described, "entity_types": intents.entity_types.to_json(),
                "synonyms": [[entity, written, canonical]
                             for (entity, written), canonical in sorted(synonyms.items())],
                "rules": intents.rules.rules}
    (staging / artifacts.ENTITIES_FILE).write_text(json.dumps(document, ensure_ascii=False,
                                                              indent=1), encoding="utf-8")


def rewrite_manifest(staging, entities):
    """The manifest again, with the entity files listed and `entities` in its details; the
    model card from the same details."""
    path = staging / artifacts.MANIFEST_FILE
    manifest = json.loads(path.read_text(encoding="utf-8"))
    details = {key: value for key, value in manifest.items() if key not in MANIFEST_OWN_KEYS}
    details["entities"] = entities
    path.unlink()
    write_model_card(staging / artifacts.MODEL_CARD_FILE, details)
    artifacts.write_manifest(staging, details)


def add_to_run(staging, prepared, scores, config):
    """Train and measure the entity extractor of a run and add its files to the staged run
    (the report, the manifest and the model card included); nothing for data without
    entities. Returns the manifest's `entities` details, or None."""
    intents = prepared.intents
    if not has_entities(intents):
        return None
    started = time.perf_counter()
    trained = fit_and_score(prepared, scores, config, staging / artifacts.REPORT_DIR)
    write_entity_files(staging, trained.labeller, intents, trained.synonyms)
    rows = trained.rows
    entities = {
        "labeller": trained.labeller.extractor if trained.labeller else None,
        "chosen_by": "validation entity micro-F1", "candidates": trained.candidates,
        "types": sorted({span.entity for row in rows.train_spans for span in row}
                        | set(intents.entity_types.types)),
        "annotated_rows": {"train": sum(map(bool, rows.train_spans)),
                           "val": sum(map(bool, rows.val_spans)),
                           "test": sum(map(bool, rows.test_spans))},
        "substituted_rows": trained.substituted_rows,
        "rules": len(intents.rules.rules), "test": trained.metrics,
        "training_seconds": round(time.perf_counter() - started, 1)}
    rewrite_manifest(staging, entities)
    return entities
