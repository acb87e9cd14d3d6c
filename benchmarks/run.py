"""Benchmark harness: our pipeline against strong peers on intent data sets, in one run.

    python benchmarks/run.py [--datasets SET ...] [--quick] [--seed 42] [--out PREFIX]
                             [--transformer frozen|finetune|scratch]

A SET is a dataset directory holding `train.json` (intents format), `test.json` and optionally
`val.json` (lists of {"text", "intent"}); without `val.json` a validation split is carved from
the training data, stratified and seeded, exactly as `jobs.py` does. `DIR:N` is its few-shot
version: N training patterns per intent (one random.Random(0) for the set, rng.sample for each
intent in file order), no validation file, the official test rows. `shipped` is
filesTech/final.json with the test split the pipeline carves. For each set:

- ours: the `jobs.py` pipeline (`intentkit.training.pipeline.train`, default configuration but for
  --transformer, the official validation/test files passed as --val-data/--test-data),
  scored as its default answer (the model best on validation), the single CNN-BiLSTM and the
  ensemble, loaded back through the Predictor that a chatbot uses;
- peers, trained in the same run on the same training/validation rows, C chosen on validation:
  TF-IDF words 1-2 + logistic regression, TF-IDF words 1-2 + chars 2-5 + LinearSVC, and frozen
  all-MiniLM-L6-v2 sentence embeddings + logistic regression.

Test rows whose intent is not a training intent (CLINC150's `oos`) are out of scope: accuracy and
macro-F1 are over the in-scope rows; OOS recall and precision use each system's fallback
threshold, chosen on in-scope validation rows by the product's rule (95 % coverage), and so does
the in-scope accuracy beside them (an in-scope row sent to the fallback counts as wrong). Train time
is wall time, the peers' including their C search (and, for MiniLM, embedding the texts).
Latency is a warm single query (p50/p99 over 300 test texts, our message cache off);
throughput is one batch call over up to 2,000 distinct test texts.
Prints a markdown table and writes PREFIX.json and PREFIX.md (default benchmarks/results/run)
after each set.
"""
import argparse
import json
import logging
import random
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from common import ROOT, SHARED, few_shot_document, report, without_contradictions

from intentkit.runtime import import_tensorflow_quietly

import_tensorflow_quietly()

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.pipeline import make_pipeline, make_union
from sklearn.svm import LinearSVC

from intentkit import artifacts
from intentkit.data.intents import load_annotated_examples, load_intents, read_document
from intentkit.encoders import minilm as pretrained
from intentkit.errors import ConfigError
from intentkit.evaluation.metrics import (
    choose_fallback_threshold,
    fit_best_on_val,
    tfidf_logistic_regression,
)
from intentkit.serving.predictor import Predictor
from intentkit.training.config import QUICK, TrainConfig
from intentkit.training.pipeline import split_first, train

log = logging.getLogger(__name__)
DATASETS = [str(SHARED / name) for name in ("clinc150", "banking77")]
COVERAGE = TrainConfig.fallback_coverage
LATENCY_QUERIES, BATCH_ROWS = 300, 2000
QUICK_PER_INTENT, QUICK_TEST_ROWS = 15, 400


def word_char_svm(c):
    return make_pipeline(make_union(
        TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True),
        TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True)),
        LinearSVC(C=c))


def write_json(path, document):
    path.write_text(json.dumps(document, ensure_ascii=False), encoding="utf-8")
    return str(path)


def prepare_files(spec, work, quick, seed):
    """(name, paths for the pipeline, test texts, test labels) of a set: training intents
    (few-shot, or capped per intent in --quick), in-scope validation and test files; the test
    rows include the out-of-scope ones. `shipped` has no test file: its rows come from the
    pipeline's split (None here)."""
    if spec == "shipped":
        return spec, {"data": str(ROOT / "filesTech" / "final.json")}, None, None
    directory, _, shots = spec.partition(":")
    directory = Path(directory)
    name = f"{directory.name} {shots}-shot" if shots else directory.name
    rng = random.Random(seed)
    test = labelled_rows(directory / "test.json")
    if shots:
        document = few_shot_document(directory / "train.json", int(shots))
    else:
        document = read_document(directory / "train.json")
        if quick:
            document = {"intents": [
                {**intent, "patterns": rng.sample(intent["patterns"],
                                                  min(len(intent["patterns"]), QUICK_PER_INTENT))}
                for intent in document["intents"]]}
    train_path = without_contradictions(document, work)
    if quick:
        test = rng.sample(test, min(len(test), QUICK_TEST_ROWS))
    tags = {intent["tag"] for intent in document["intents"]}
    files = {"data": str(train_path), "test_data": write_json(
        work / "test_in_scope.json", [row for row in test if row["intent"] in tags])}
    if (directory / "val.json").exists() and not shots:
        files["val_data"] = write_json(work / "val_in_scope.json", [
            row for row in labelled_rows(directory / "val.json") if row["intent"] in tags])
    return name, files, [row["text"] for row in test], [row["intent"] for row in test]


def labelled_rows(path):
    """A list file's {"text", "intent"} rows, with their "entities" spans where they have them
    (SNIPS): the pipeline scores and chooses its entity labeller on them."""
    texts, labels, spans = load_annotated_examples(path)
    return [{"text": text, "intent": label,
             **({"entities": [asdict(span) for span in row_spans]} if row_spans else {})}
            for text, label, row_spans in zip(texts, labels, spans)]


def timed(function):
    started = time.perf_counter()
    result = function()
    return result, time.perf_counter() - started


def speed(predict_one, predict_many, texts):
    """Warm single-query latency (ms, p50/p99) and batch throughput (texts per second)."""
    for text in texts[:20]:
        predict_one(text)
    times = []
    for text in texts[:LATENCY_QUERIES]:
        started = time.perf_counter()
        predict_one(text)
        times.append((time.perf_counter() - started) * 1000)
    # Distinct texts: our batch call answers a repeated text once.
    batch = list(dict.fromkeys(texts))[:BATCH_ROWS]
    _, seconds = timed(lambda: predict_many(batch))
    return {"latency_p50_ms": float(np.percentile(times, 50)),
            "latency_p99_ms": float(np.percentile(times, 99)),
            "batch_texts_per_second": len(batch) / seconds}


def val_threshold(val_scores, val_labels, tags):
    """The fallback threshold by the product's rule, on in-scope validation rows."""
    return choose_fallback_threshold(
        val_scores, np.array([tags.index(label) for label in val_labels]), COVERAGE)


def scores(test_scores, test_labels, tags, threshold):
    """In-scope accuracy and macro-F1; OOS recall/precision at the fallback threshold.
    Score matrices have one column per tag, in `tags` order."""
    predicted = np.array(tags, dtype=object)[test_scores.argmax(axis=1)]
    labels = np.array(test_labels, dtype=object)
    in_scope = np.isin(labels, tags)
    result = {"accuracy": float((predicted[in_scope] == labels[in_scope]).mean()),
              "macro_f1": float(f1_score(labels[in_scope], predicted[in_scope],
                                         average="macro")),
              "threshold": float(threshold), "test_rows": int(in_scope.sum())}
    if not in_scope.all():
        said_oos = test_scores.max(axis=1) < threshold
        result["oos_recall"] = float(said_oos[~in_scope].mean())
        result["oos_precision"] = float((~in_scope)[said_oos].mean()) if said_oos.any() else 0.0
        # The in-scope accuracy that goes with that recall: a fallback answer is a wrong one.
        result["in_scope_accuracy_at_threshold"] = float(
            ((predicted == labels) & ~said_oos)[in_scope].mean())
    return result


def sklearn_scores(model, inputs, tags):
    """Probabilities (or SVM decision values) in `tags` order."""
    raw = (model.predict_proba(inputs) if hasattr(model, "predict_proba")
           else model.decision_function(inputs))
    return raw[:, [list(model.classes_).index(tag) for tag in tags]]


def run_ours(files, test_texts, test_labels, work, seed, quick, transformer, embedding_cache):
    config = TrainConfig(**{**(QUICK if quick else {}), **files, "out": str(work / "model"),
                            "seed": seed, "transformer": transformer,
                            "embedding_cache": embedding_cache})
    _, seconds = timed(lambda: train(config))
    intents = load_intents(config.data)
    split = split_first(intents, config)  # the rows the pipeline used, for the peers
    if test_texts is None:
        test_texts, test_labels = split.test_texts, split.test_labels
    results = {}
    for name, ensemble in (("ours: default answer (best on validation)", None),
                           ("ours: single CNN-BiLSTM", False),
                           ("ours: ensemble (CNN-BiLSTM + MiniLM head + CNN)", True)):
        predictor = Predictor(work / "model" / artifacts.MODEL_FILE,
                              work / "model" / artifacts.PREPROCESSOR_FILE, use_ensemble=ensemble,
                              cache_size=0)  # every timed call runs the model
        results[name] = {
            **scores(predictor.predict_proba(test_texts), test_labels, predictor.labels,
                     predictor.threshold),  # chosen on validation at training time
            "train_seconds": seconds,
            **speed(predictor.predict, predictor.predict_batch, test_texts)}
    return intents.tags, split, results, test_texts, test_labels


SPARSE_PEERS = {  # name -> (pipeline of C, the C values tried on validation)
    "TF-IDF words + logistic regression": (tfidf_logistic_regression, (1.0, 10.0, 100.0)),
    "TF-IDF words + chars + LinearSVC": (word_char_svm, (0.1, 0.3, 1.0, 3.0))}


def run_sparse_peer(name, split, test_texts, test_labels, tags):
    """One of SPARSE_PEERS trained on the split's training rows, C chosen on its validation."""
    make, grid = SPARSE_PEERS[name]
    (model, c), seconds = timed(lambda: fit_best_on_val(
        make, grid, (split.train_texts, split.train_labels), (split.val_texts, split.val_labels)))
    return {**scores(sklearn_scores(model, test_texts, tags), test_labels, tags,
                     val_threshold(sklearn_scores(model, split.val_texts, tags),
                                   split.val_labels, tags)),
            "C": c, "train_seconds": seconds,
            **speed(lambda text: model.predict([text]), model.predict, test_texts)}


def run_peers(split, test_texts, test_labels, tags):
    results = {name: run_sparse_peer(name, split, test_texts, test_labels, tags)
               for name in SPARSE_PEERS}
    encoder = pretrained.sentence_encoder()

    def fit_minilm():
        embedded = (encoder.embed(split.train_texts), split.train_labels)
        return fit_best_on_val(lambda c: LogisticRegression(C=c, max_iter=3000),
                               (1.0, 10.0, 100.0), embedded,
                               (encoder.embed(split.val_texts), split.val_labels))
    (model, c), seconds = timed(fit_minilm)
    results["frozen MiniLM embeddings + logistic regression"] = {
        **scores(sklearn_scores(model, encoder.embed(test_texts), tags), test_labels, tags,
                 val_threshold(sklearn_scores(model, encoder.embed(split.val_texts), tags),
                               split.val_labels, tags)),
        "C": c, "train_seconds": seconds,
        **speed(lambda text: model.predict(encoder.embed([text])),
                lambda texts: model.predict(encoder.embed(texts)), test_texts)}
    return results


HEADER = ["dataset", "system", "accuracy", "macro-F1", "train time", "latency p50 / p99 ms",
          "batch texts/s", "OOS recall / precision / in-scope accuracy at that threshold"]


def table_rows(results):
    rows = []
    for dataset, systems in results.items():
        best = max(systems, key=lambda name: systems[name]["accuracy"])
        for name, r in systems.items():
            oos = (f"{r['oos_recall']:.3f} / {r['oos_precision']:.3f} / "
                   f"{r['in_scope_accuracy_at_threshold'] * 100:.2f} %" if "oos_recall" in r
                   else "–")
            accuracy = f"{r['accuracy'] * 100:.2f} %"
            rows.append([dataset, name, f"**{accuracy}**" if name == best else accuracy,
                         f"{r['macro_f1']:.4f}", f"{r['train_seconds']:.0f} s",
                         f"{r['latency_p50_ms']:.2f} / {r['latency_p99_ms']:.2f}",
                         f"{r['batch_texts_per_second']:.0f}", oos])
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=DATASETS, metavar="SET",
                        help="dataset directories, DIR:N for N patterns per intent, or "
                        "`shipped` (default: CLINC150 and Banking77 in ../shared/datasets)")
    parser.add_argument("--quick", action="store_true", help=f"a smoke run: {QUICK_PER_INTENT} "
                        f"training rows per intent, {QUICK_TEST_ROWS} test rows, jobs.py --quick")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--transformer", default=TrainConfig.transformer,
                        help="our MiniLM member, as jobs.py's --transformer (default: "
                        f"{TrainConfig.transformer})")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "run",
                        help="prefix of the .json and .md results")
    parser.add_argument("--embedding-cache", default="", metavar="DIR",
                        help="our runs' sentence-embedding cache, kept between benchmark runs "
                        "(default: none kept: each run embeds from scratch, as a first "
                        "training does, so that times compare)")
    args = parser.parse_args()
    try:
        TrainConfig(transformer=args.transformer)
    except ConfigError as error:
        parser.error(str(error))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    for noisy in ("absl", "tensorflow", "h5py", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    try:  # ours and a peer need it: fail now, not after the first training run
        pretrained.sentence_encoder()
    except pretrained.PretrainedUnavailable as error:
        parser.error(str(error))

    results, details = {}, {}
    for spec in args.datasets:
        with tempfile.TemporaryDirectory() as scratch:
            work = Path(scratch)
            name, files, test_texts, test_labels = prepare_files(spec, work, args.quick,
                                                                 args.seed)
            tags, split, ours, test_texts, test_labels = run_ours(
                files, test_texts, test_labels, work, args.seed, args.quick, args.transformer,
                args.embedding_cache)
            results[name] = {**ours, **run_peers(split, test_texts, test_labels, tags)}
            details[name] = {
                "intents": len(tags), "train_rows": len(split.train_texts),
                "val_rows": len(split.val_texts), "val_source": "val.json" if "val_data" in files
                else "carved from train.json", "test_rows": len(test_texts),
                "manifest": json.loads((work / "model" / artifacts.MANIFEST_FILE).read_text())}
        # Written after each set: an interrupted run keeps the sets it finished.
        table = report(HEADER, table_rows(results), {
            "quick": args.quick, "seed": args.seed, "transformer": args.transformer,
            "results": results, "datasets": details}, args.out.with_suffix(".json"))
        args.out.with_suffix(".md").write_text(table + "\n")


if __name__ == "__main__":
    main()
