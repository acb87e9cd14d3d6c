"""Entity extraction on SNIPS: our MiniLM token head against the CRF baseline, in one run.

    python benchmarks/entities.py [--epochs 10] [--crf-iterations 100] [--latency-rows 200]
    python benchmarks/entities.py --run-extractor [--train-rows N]
        [--entity-substitution F] [--entity-substitution-max-rows M] [--no-baseline]

`--run-extractor` measures what a training run trains and serves (intentkit.training.entities:
the labeller chosen on the validation rows, with the synonyms learned from the annotations,
answering through serving.entities.EntityExtractor) against the plain CRF baseline, without
the MiniLM head (too slow for the full set here); the intent beside them is TF-IDF + logistic
regression (C chosen on validation), the pipeline's reference model. Its training rows get the
run's entity value substitution (training.entity_substitution; `--entity-substitution 0` turns
it off, so two runs measure it); `--no-baseline` leaves out the CRF baseline's second process.

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
from intentkit.training.config import TrainConfig


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


def systems(test, intents, named):
    """Each (name, predicted entities, train s, latency) scored on the test rows."""
    out = {}
    for name, predicted, train_s, latency in named:
        scores = entity_scores(test[2], predicted)
        out[name] = {"entity_micro": scores["micro"],
                     "whole_message_accuracy": whole_message_accuracy(test[1], intents, test[2],
                                                                      predicted),
                     "train_s": train_s, "latency_ms": latency, "per_type": scores["per_type"]}
    return out


def run_extractor(args, train, val, test, queue, crf_process):
    """--run-extractor: the run's entity part against the CRF baseline (see the docstring)."""
    from intentkit.data.annotations import learned_synonyms
    from intentkit.evaluation.metrics import fit_best_on_val, tfidf_logistic_regression
    from intentkit.serving.entities import EntityExtractor
    from intentkit.training.entities import EntityRows, choose_labeller, with_substituted_values
    started = time.perf_counter()
    rows = EntityRows(train.texts, train.spans, val[0], val[2], test[0], test[2])
    synonyms = learned_synonyms(train.texts, train.spans)
    trained_on = with_substituted_values(rows, train.entity_types, synonyms,
                                         args.entity_substitution,
                                         args.entity_substitution_max_rows, args.seed)
    labeller, candidates = choose_labeller(trained_on, train.entity_types)
    extractor = EntityExtractor(labeller, train.entity_types, synonyms)
    ours_train_s = time.perf_counter() - started
    ours_predicted = extractor.extract(test[0])
    ours_latency = latency_ms(extractor.extract, test[0][:args.latency_rows])
    started = time.perf_counter()
    intent, c = fit_best_on_val(tfidf_logistic_regression, (1.0, 10.0, 100.0),
                                (train.texts, train.labels), (val[0], val[1]))
    intent_train_s = time.perf_counter() - started
    intents = list(intent.predict(test[0]))
    results = {"data": "SNIPS (Goo et al. 2018 split)", "train_rows": len(train.texts),
               "test_rows": len(test[0]),
               "intent": {"model": f"TF-IDF words 1-2 + logistic regression (C={c}, chosen on "
                          "validation)",
                          "accuracy": round(float(np.mean(np.array(intents) == test[1])), 4),
                          "train_s": round(intent_train_s, 1)},
               "systems": {}}
    named = [("run extractor (ours: training.entities)", ours_predicted, round(ours_train_s, 1),
              ours_latency)]
    if crf_process is not None:
        crf = queue.get()
        crf_process.join()
        named.append(("crf (sklearn-crfsuite baseline)", crf["predicted"], crf["train_s"],
                      crf["latency_ms"]))
    results["systems"] = systems(test, intents, named)
    ours = results["systems"]["run extractor (ours: training.entities)"]
    ours["candidates"] = candidates
    ours["substituted_rows"] = len(trained_on.train_texts) - len(train.texts)
    results["settings"] = {"train_rows": args.train_rows or "all",
                           "entity_substitution": args.entity_substitution,
                           "entity_substitution_max_rows": args.entity_substitution_max_rows,
                           "seed": args.seed}
    if crf_process is not None:
        results["settings"]["crf_iterations (baseline)"] = args.crf_iterations
    return results


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
    parser.add_argument("--run-extractor", action="store_true",
                        help="the run's entity extractor against the CRF baseline, no MiniLM "
                        "head (see above)")
    defaults = TrainConfig()
    parser.add_argument("--entity-substitution", type=int, default=defaults.entity_substitution,
                        help="--run-extractor: the run's entity value substitution factor "
                        "(0: off; default: the training default)")
    parser.add_argument("--entity-substitution-max-rows", type=int,
                        default=defaults.entity_substitution_max_rows)
    parser.add_argument("--seed", type=int, default=defaults.seed,
                        help="--run-extractor: the run's seed (substitution)")
    parser.add_argument("--baseline", action=argparse.BooleanOptionalAction, default=True,
                        help="--run-extractor: train the CRF baseline in a second process "
                        "meanwhile (--no-baseline: ours only)")
    parser.add_argument("--out", type=Path,
                        default=ROOT / "docs" / "benchmarks" / f"entities-{date.today()}.json")
    args = parser.parse_args()
    load_at_start = os.getloadavg()
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
    if args.run_extractor and not args.baseline:
        crf_process = None
    else:
        crf_process.start()
    if args.run_extractor:
        results = run_extractor(args, train, val, test, queue, crf_process)
        write(results, args.out, load_at_start)
        return

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
    results["systems"] = systems(test, intents, (
        ("minilm_bilstm (ours)", head_predicted, round(head_train_s, 1), head_latency),
        ("crf (sklearn-crfsuite baseline)", crf["predicted"], crf["train_s"],
         crf["latency_ms"])))
    results["systems"]["minilm_bilstm (ours)"]["epochs_run"] = head.epochs_run
    results["settings"] = {"train_rows": args.train_rows or "all", "epochs": args.epochs,
                           "patience": args.patience, "crf_iterations": args.crf_iterations,
                           **head.settings}
    write(results, args.out, load_at_start)
    print("intent", results["intent"])


def write(results, out, load_at_start):
    """The run's provenance (commit, load average at its start and end, machine) added; JSON
    written; a summary printed."""
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                            capture_output=True, text=True).stdout.strip()
    results["run"] = {"date": str(date.today()), "commit": commit,
                      "load_average_at_start": load_at_start,
                      "load_average": os.getloadavg(), "machine": platform.processor() or
                      platform.machine(), "cpus": os.cpu_count(),
                      "note": ("the CRF trained in a second process at the same time"
                               if "crf (sklearn-crfsuite baseline)" in results["systems"]
                               else "one process")}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n")
    for name, system in results["systems"].items():
        print(name, system["entity_micro"], system["whole_message_accuracy"],
              system["train_s"], system["latency_ms"])


if __name__ == "__main__":
    main()
