"""What the benchmarks share: the data sets (few-shot sets built, never stored) and the report."""
import json
import logging
import random
from pathlib import Path

from intentkit.artifacts.model_card import markdown_table
from intentkit.data.annotations import annotate, parse_pattern
from intentkit.data.intents import duplicate_key, load_examples, read_document
from intentkit.errors import DataError
from intentkit.evaluation.data_checks import check_data

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "datasets"
SETS = ("shipped", "banking77", "clinc150")


def few_shot_document(train_path, per_intent, seed=0):
    """`per_intent` training patterns of every intent: one random.Random(seed) for the set,
    rng.sample(patterns, per_intent) for each intent in file order."""
    rng = random.Random(seed)
    document = read_document(train_path)
    return {"intents": [{**intent, "patterns": rng.sample(intent["patterns"], per_intent)}
                        for intent in document["intents"]]}


def without_contradictions(document, work):
    """The path of `document` (a public set's plain patterns) written without the texts it labels
    with several intents (training refuses those: Banking77's train.json has one), saying which
    were dropped."""
    path = work / "train.json"
    write_plain_patterns(document, path)
    contradictions = {duplicate_key(finding.details["text"])
                      for finding in check_data(path, embedding_checks=False).errors
                      if finding.code == "duplicate-across-intents"}
    if contradictions:
        log.warning("%s: dropped %d text(s) labelled with several intents before training: %s",
                    path, len(contradictions), sorted(contradictions)[:5])
        write_plain_patterns({"intents": [
            {**intent, "patterns": [p for p in intent["patterns"]
                                    if duplicate_key(p) not in contradictions]}
            for intent in document["intents"]]}, path)
    return str(path)


def write_plain_patterns(document, path):
    """Writes an intents document in the intents file's notation: a pattern that parses as one
    (SNIPS's `[value](entity)` annotations) is kept, and in any other a bracket is literal text
    (CLINC150's "is there a travel alert for [country]", which the notation would refuse as an
    annotation without its type)."""
    path.write_text(json.dumps({**document, "intents": [
        {**intent, "patterns": [in_notation(pattern) for pattern in intent["patterns"]]}
        for intent in document["intents"]]}, ensure_ascii=False), encoding="utf-8")


def in_notation(pattern):
    try:
        parse_pattern(pattern)
        return pattern
    except DataError:
        return annotate(pattern, ())


def load_set(name, work):
    """(training data path, test path or None) of a set named like "shipped", "banking77" or
    "clinc150:10" (10 patterns per intent, no validation file, the official in-scope test rows).
    "shipped" has no test file: the pipeline carves its test split."""
    if name == "shipped":
        return ROOT / "filesTech" / "final.json", None
    base, _, shots = name.partition(":")
    directory = SHARED / base
    document = (few_shot_document(directory / "train.json", int(shots)) if shots
                else read_document(directory / "train.json"))
    tags = {intent["tag"] for intent in document["intents"]}
    train_path = without_contradictions(document, work)
    texts, labels = load_examples(directory / "test.json")
    test_path = work / "test_in_scope.json"
    test_path.write_text(json.dumps([{"text": t, "intent": i} for t, i in zip(texts, labels)
                                     if i in tags]))
    return train_path, test_path


def report(header, rows, payload, out):
    """Print `rows` (lists of cells) under `header` as a markdown table; write `payload` to out.
    Returns the table."""
    table = markdown_table(header, rows)
    print(table)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=2))
    return table
