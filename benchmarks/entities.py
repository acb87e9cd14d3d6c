"""Entity extraction on SNIPS: our MiniLM token head against the CRF baseline, in one run.

    python benchmarks/entities.py [--epochs 10] [--crf-iterations 100] [--latency-rows 200]

SNIPS (../shared/datasets/snips: 13,084 training rows annotated inline, 700 validation and 700
test rows with character spans, 39 entity types). Both labellers train on the same training rows
(after intentkit's duplicate check) and are scored on the test rows: entity precision / recall /
F1 (exact span and type, micro and per type), whole-message accuracy (intent and every entity
right), train time and per-message latency (one message at a time, NumPy forward, features
included). The intent beside them is a logistic regression over the frozen MiniLM sentence
embedding, computed from the same forward as the token states (not the full intentkit ensemble,
too costly to train here beside both labellers). The CRF trains in a second process meanwhile.
Writes docs/benchmarks/entities-DATE.json.
"""
import argparse
import json
import multiprocessing
import os
import platform
import random
import subprocess
import time
from dataclasses import replace
from datetime import date
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SNIPS = ROOT.parent / "shared" / "datasets" / "snips"

from intentkit.data.intents import load_annotated_examples, load_intents
from intentkit.evaluation.entities import (
    entity_scores,
    micro_f1,
    whole_message_accuracy,
)
from intentkit.models.entity_tagger import CrfTagger, TokenHeadTagger


def latency_ms(predict, texts):
    times = []
    for text in texts:
        started = time.perf_counter()
        predict([text])
        times.append((time.perf_counter() - started) * 1000)
    return {"p50": round(float(np.percentile(times, 50)), 2),
            "p95": round(float(np.percentile(times, 95)), 2), "messages": len(texts)}


def run_crf(train, test, iterations, latency_rows, queue):
    started = time.perf_counter()
    crf = CrfTagger(max_iterations=iterations).fit(train.texts, train.spans)
    train_s = time.perf_counter() - started
    predicted = crf.predict(test[0])
    queue.put({"train_s": round(train_s, 1), "predicted": predicted,
               "latency_ms": latency_ms(crf.predict, test[0][:latency_rows])})


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=SNIPS)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--patience", type=int, default=2)
    parser.add_argument("--crf-iterations", type=int, default=100)
    parser.add_argument("--latency-rows", type=int, default=200)
    parser.add_argument("--train-rows", type=int, default=0,
                        help="train both labellers on this many training rows, drawn with "
                        "random.Random(0) (0: all); for a machine too busy for the whole set")
    parser.add_argument("--out", type=Path,
                        default=ROOT / "docs" / "benchmarks" / f"entities-{date.today()}.json")
    args = parser.parse_args()
    from sklearn.linear_model import LogisticRegression

    from intentkit.encoders.minilm import SentenceEncoder
    train = load_intents(args.data / "train.json")
    if args.train_rows:
        rows = sorted(random.Random(0).sample(range(len(train.texts)), args.train_rows))
        train = replace(train, texts=[train.texts[r] for r in rows],
                        labels=[train.labels[r] for r in rows],
                        spans=[train.spans[r] for r in rows])
    val = load_annotated_examples(args.data / "val.json")
    test = load_annotated_examples(args.data / "test.json")
    queue = multiprocessing.get_context("fork").Queue()
    crf_process = multiprocessing.get_context("fork").Process(
        target=run_crf, args=(train, test, args.crf_iterations, args.latency_rows, queue))
    crf_process.start()

    encoder = SentenceEncoder(backend="numpy")
    started = time.perf_counter()
    head = TokenHeadTagger(encoder, epochs=args.epochs, patience=args.patience)

    def progress(epoch, score):
        print(f"epoch {epoch + 1}: validation entity F1 {score:.4f}", flush=True)
    head.fit(train.texts, train.spans, val[0], val[2], val_score=micro_f1, progress=progress)
    head_train_s = time.perf_counter() - started
    head_predicted = head.predict(test[0])
    test_embeddings = head.last_sentence_embeddings
    # The intent classifier over the sentence embeddings the head's forward also gives.
    started = time.perf_counter()
    intent = LogisticRegression(C=10, max_iter=1000).fit(head.train_sentence_embeddings,
                                                         train.labels)
    intent_train_s = time.perf_counter() - started
    intents = list(intent.predict(test_embeddings))
    head_latency = latency_ms(head.predict, test[0][:args.latency_rows])

    crf = queue.get()
    crf_process.join()
    results = {"data": "SNIPS (Goo et al. 2018 split)", "train_rows": len(train.texts),
               "test_rows": len(test[0]),
               "intent": {"model": "logistic regression over frozen MiniLM sentence embedding",
                          "accuracy": round(float(np.mean(np.array(intents) == test[1])), 4),
                          "train_s": round(intent_train_s, 1)},
               "systems": {}}
    for name, predicted, train_s, latency in (
            ("minilm_bilstm (ours)", head_predicted, round(head_train_s, 1), head_latency),
            ("crf (sklearn-crfsuite baseline)", crf["predicted"], crf["train_s"],
             crf["latency_ms"])):
        scores = entity_scores(test[2], predicted)
        results["systems"][name] = {
            "entity_micro": scores["micro"],
            "whole_message_accuracy": whole_message_accuracy(test[1], intents, test[2],
                                                             predicted),
            "train_s": train_s, "latency_ms": latency, "per_type": scores["per_type"]}
    results["systems"]["minilm_bilstm (ours)"]["epochs_run"] = head.epochs_run
    results["settings"] = {"train_rows": args.train_rows or "all", "epochs": args.epochs,
                           "patience": args.patience, "crf_iterations": args.crf_iterations,
                           **head.settings}
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                            capture_output=True, text=True).stdout.strip()
    results["run"] = {"date": str(date.today()), "commit": commit,
                      "load_average": os.getloadavg(), "machine": platform.processor() or
                      platform.machine(), "cpus": os.cpu_count(),
                      "note": "the CRF trained in a second process at the same time"}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    for name, system in results["systems"].items():
        print(name, system["entity_micro"], system["whole_message_accuracy"],
              system["train_s"], system["latency_ms"])
    print("intent", results["intent"])


if __name__ == "__main__":
    main()
