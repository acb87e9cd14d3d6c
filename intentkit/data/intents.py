"""Load and validate an intents file, then split it (first, before anything learns from it).

The file looks like `{"intents": [{"tag": str, "patterns": [str, ...], "responses": [str, ...]}]}`.
Every problem is reported as a `DataError` naming the file, the entry and what to do.
"""
import json
import logging
import os
import re
import tempfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DataError
from . import importers
from .annotations import (
    EntityTypes,
    Rules,
    parse_pattern,
    spans_from_rows,
    validate_entities,
    validate_rules,
)
from .readers import parse_json, read_text

log = logging.getLogger(__name__)

# A stratified train/validation/test split needs at least this many examples of every intent.
MIN_PATTERNS_PER_INTENT = 5
MAX_PATTERN_CHARS = 10_000
# What training does with a text that is a pattern of two intents (--on-conflict): drop it from
# every intent it is in (Rasa's `data validate` reports such texts and training goes on), keep it
# in the first intent only, or stop with an error.
ON_CONFLICT = ("drop", "keep-first", "error")


@dataclass(frozen=True)
class IntentData:
    texts: list  # one row per pattern
    labels: list  # the intent tag of each row
    responses: dict  # tag -> list of responses
    source: str
    # Texts that were patterns of several intents, left out (--on-conflict drop) or kept in the
    # first (keep-first): ({"text", "intents"}, ...), for the warning and the model card.
    conflicts: tuple = ()
    fallback_responses: tuple = ()  # the document's optional top-level "fallback_responses"
    spans: list = None  # each row's tuple of annotations.Span (character offsets into its text)
    entity_types: EntityTypes = field(default_factory=EntityTypes)  # the "entities" section
    rules: Rules = field(default_factory=Rules)  # the "rules" section

    @property
    def has_entities(self):
        return bool(self.entity_types.types) or any(self.spans or ())

    @property
    def tags(self):
        return sorted(self.responses)


@dataclass(frozen=True)
class Split:
    train_texts: list
    train_labels: list
    val_texts: list
    val_labels: list
    test_texts: list
    test_labels: list
    # Each row's entity spans (tuples of annotations.Span), aligned with its texts; None when
    # the data has no annotations.
    train_spans: list = None
    val_spans: list = None
    test_spans: list = None


def duplicate_key(text):
    """Texts that differ only in case, punctuation or spacing count as the same pattern."""
    words = " ".join(re.sub(r"[^\w\s]", " ", text.casefold()).split())
    return words or " ".join(text.casefold().split())  # all symbols, e.g. only emoji


def _check_intent(path, index, intent):
    where = f"{path}: intents[{index}]"
    if not isinstance(intent, dict):
        raise DataError(f"{where} is a {type(intent).__name__}; each intent must be an object "
                        'like {"tag": ..., "patterns": [...], "responses": [...]}.')
    tag = intent.get("tag")
    if not isinstance(tag, str) or not tag.strip():
        raise DataError(f'{where} has no "tag" (a non-empty string naming the intent).')
    where = f"{where} (tag {tag!r})"
    patterns = intent.get("patterns")
    if not isinstance(patterns, list):
        raise DataError(f'{where}: "patterns" is missing or not a list of example sentences.')
    if not patterns:
        raise DataError(f'{where}: "patterns" is empty; give at least '
                        f"{MIN_PATTERNS_PER_INTENT} example sentences.")
    for position, pattern in enumerate(patterns):
        if not isinstance(pattern, str):
            raise DataError(f"{where}: patterns[{position}] is a {type(pattern).__name__} "
                            f"({pattern!r}); every pattern must be a string.")
        if not pattern.strip():
            raise DataError(f"{where}: patterns[{position}] is empty; remove it or write a "
                            "sentence.")
        if len(pattern) > MAX_PATTERN_CHARS:
            raise DataError(f"{where}: patterns[{position}] is {len(pattern):,} characters long "
                            f"(limit {MAX_PATTERN_CHARS:,}); a pattern is one user message.")
    responses = intent.get("responses", [])
    if not isinstance(responses, list) or not all(isinstance(r, str) for r in responses):
        raise DataError(f'{where}: "responses" must be a list of strings.')
    return tag.strip(), patterns, responses


def read_document(path):
    """An intents document (not yet validated) from JSON, or converted from CSV/TSV/Rasa YAML
    by the suffix."""
    path = Path(path)
    if path.suffix.lower() in importers.IMPORTERS:
        return importers.read_foreign(path)
    return parse_json(read_text(path), path)


def load_intents(path, on_conflict="drop"):
    """Read and validate an intents file (JSON, CSV/TSV or Rasa NLU YAML); raises DataError
    with a precise message."""
    path = Path(path)
    return validate_intents(read_document(path), path, on_conflict)


def _fallback_responses(document, path):
    responses = document.get("fallback_responses", [])
    if not isinstance(responses, list) or not all(isinstance(r, str) for r in responses):
        raise DataError(f'{path}: "fallback_responses" must be a list of strings (what a bot '
                        "says when it is not sure).")
    return tuple(responses)


def validate_intents(document, path, on_conflict="drop", problems=None):
    """The IntentData of an intents document read from `path` (see load_intents).

    `on_conflict` (ON_CONFLICT) says what becomes of a text that is a pattern of several intents.
    `problems`: a list that receives the DataError of each invalid intent instead of raising at
    the first (the intent is left out), so that `intentkit check` reports them all."""
    if on_conflict not in ON_CONFLICT:
        raise DataError(f"--on-conflict must be one of {', '.join(ON_CONFLICT)}, "
                        f"not {on_conflict!r}")
    if not isinstance(document, dict) or not isinstance(document.get("intents"), list):
        raise DataError(f'{path}: the top level must be an object with an "intents" list, '
                        'e.g. {"intents": [{"tag": "greeting", "patterns": ["hi"], '
                        '"responses": ["Hello!"]}]}.')

    def report(error):
        if problems is None:
            raise error
        problems.append(error)

    # (index, tag, patterns parsed into plain text + entity spans, responses) of the intents
    # that are well-formed
    checked = []
    first_index = {}  # tag -> index of the intent that defined it
    owners = defaultdict(dict)  # duplicate_key -> {tag: the pattern as written there}
    for index, intent in enumerate(document["intents"]):
        try:
            tag, patterns, intent_responses = _check_intent(path, index, intent)
            if tag in first_index:
                raise DataError(f"{path}: intents[{index}] repeats tag {tag!r} of "
                                f"intents[{first_index[tag]}]; merge their patterns into one "
                                "entry.")
            annotated = [parse_pattern(pattern, f"{path}: intents[{index}] (tag {tag!r})")
                         for pattern in patterns]
        except DataError as error:
            report(error)
            continue
        first_index[tag] = index
        checked.append((index, tag, annotated, intent_responses))
        for pattern in annotated:
            owners[duplicate_key(pattern.text)].setdefault(tag, pattern.text.strip())
    conflicts = tuple({"text": next(iter(written.values())), "intents": list(written)}
                      for written in owners.values() if len(written) > 1)
    if conflicts and on_conflict == "error":
        shown = "; ".join(f"{c['text']!r} is a pattern of {', '.join(c['intents'])}"
                          for c in conflicts[:5])
        raise DataError(f"{path}: {len(conflicts)} text(s) labelled with several intents: "
                        f"{shown}{' ...' if len(conflicts) > 5 else ''}. Delete the copies from "
                        "the wrong intents, or train with --on-conflict drop.")
    conflicting = {duplicate_key(c["text"]) for c in conflicts}

    texts, labels, spans, responses = [], [], [], {}
    seen = set()
    repeated = []
    for index, tag, annotated, intent_responses in checked:
        kept = 0
        for pattern in annotated:
            key = duplicate_key(pattern.text)
            if key in seen or (key in conflicting and on_conflict == "drop"):
                if key not in conflicting:
                    repeated.append((pattern.text, tag))
                continue
            seen.add(key)
            texts.append(pattern.text)
            labels.append(tag)
            spans.append(pattern.spans)
            kept += 1
        if kept < MIN_PATTERNS_PER_INTENT:
            report(DataError(
                f"{path}: intents[{index}] (tag {tag!r}) has {kept} distinct pattern(s); at "
                f"least {MIN_PATTERNS_PER_INTENT} are needed so that every intent appears in the "
                "train, validation and test splits. Add more example sentences."))
            texts, labels, spans = (texts[:len(texts) - kept], labels[:len(labels) - kept],
                                    spans[:len(spans) - kept])
            continue
        responses[tag] = intent_responses
    if len(responses) < 2:
        report(DataError(f"{path}: found {len(responses)} usable intent(s); a classifier needs "
                         "at least 2 intents."))
    if conflicts:
        what = ("dropped from all of them" if on_conflict == "drop"
                else "kept in the first intent only")
        examples = "; ".join(f"{c['text']!r} ({', '.join(c['intents'])})" for c in conflicts[:5])
        log.warning("%s: %d text(s) are patterns of several intents, %s (--on-conflict %s): "
                    "%s%s", path, len(conflicts), what, on_conflict, examples,
                    " ..." if len(conflicts) > 5 else "")
    if repeated:
        examples = "; ".join(f"{text!r} ({tag})" for text, tag in repeated[:5])
        log.warning("%s: dropped %d repeated pattern(s), keeping the first of each: %s%s",
                    path, len(repeated), examples, " ..." if len(repeated) > 5 else "")
    entity_types = validate_entities(document.get("entities"), path,
                                     base=Path(path).parent if path else None)
    rules = validate_rules(document.get("rules"), path, set(responses))
    return IntentData(texts, labels, responses, str(path), conflicts,
                      _fallback_responses(document, path), spans, entity_types, rules)


def split_data(texts, labels, val_size=0.15, test_size=0.15, seed=42, spans=None):
    """Stratified train/validation/test split, seeded. Done before augmentation or fitting.

    A size of 0 leaves that split empty, for a caller that has its own validation or test file.
    `spans` (each row's entity spans) are split with their rows: the rows are the same as
    without them.
    """
    if spans is not None:
        # Split row numbers like the texts would be, then pick texts and spans by them.
        rows = split_data(list(range(len(texts))), labels, val_size, test_size, seed)
        parts = (rows.train_texts, rows.val_texts, rows.test_texts)
        text_parts = [[texts[r] for r in part] for part in parts]
        span_parts = [[spans[r] for r in part] for part in parts]
        return Split(text_parts[0], rows.train_labels, text_parts[1], rows.val_labels,
                     text_parts[2], rows.test_labels, *span_parts)
    if not (0 <= val_size < 1 and 0 <= test_size < 1 and val_size + test_size < 1):
        raise DataError("val_size and test_size must be in [0, 1) and sum to less than 1.")
    # Here, not at the top: the service imports this module for its limits, without sklearn.
    from sklearn.model_selection import train_test_split
    rest_texts, rest_labels, test_texts, test_labels = list(texts), list(labels), [], []
    try:
        if test_size:
            rest_texts, test_texts, rest_labels, test_labels = train_test_split(
                rest_texts, rest_labels, test_size=test_size, stratify=rest_labels,
                random_state=seed)
        train_texts, train_labels, val_texts, val_labels = rest_texts, rest_labels, [], []
        if val_size:
            train_texts, val_texts, train_labels, val_labels = train_test_split(
                rest_texts, rest_labels, test_size=val_size / (1 - test_size),
                stratify=rest_labels, random_state=seed)
    except ValueError as error:
        raise DataError(f"cannot split {len(texts)} patterns of {len(set(labels))} intents into "
                        f"train/validation/test ({error}). Add patterns or change "
                        "--val-size/--test-size.") from None
    return Split(train_texts, train_labels, val_texts, val_labels, test_texts, test_labels)


def load_examples(path):
    """Labelled messages from an intents file or a JSON list of {"text", "intent"} (eval files)."""
    texts, labels, _ = load_annotated_examples(path)
    return texts, labels


def load_annotated_examples(path):
    """(texts, labels, spans) of an intents file or a JSON list of {"text", "intent"} rows that
    may carry "entities": [{"start", "end", "value", "entity"}] (the SNIPS files' format)."""
    path = Path(path)
    document = read_document(path)
    if isinstance(document, dict):
        data = load_intents(path)
        return data.texts, data.labels, data.spans
    if not isinstance(document, list):
        raise DataError(f'{path}: expected an intents object or a list of {{"text", "intent"}}.')
    texts, labels, spans = [], [], []
    for index, row in enumerate(document):
        if not (isinstance(row, dict) and isinstance(row.get("text"), str)
                and isinstance(row.get("intent"), str)):
            raise DataError(f'{path}: entry [{index}] must be {{"text": str, "intent": str}}.')
        texts.append(row["text"])
        labels.append(row["intent"])
        spans.append(spans_from_rows(row["text"], row.get("entities", []),
                                     f"{path}: entry [{index}]"))
    return texts, labels, spans


def convert(source, destination):
    """Validate `source` like training does and write it as intents JSON, atomically."""
    destination = Path(destination)
    if destination.suffix.lower() != ".json":
        raise DataError(f"{destination}: the destination must be a .json file.")
    if destination.is_dir():
        raise DataError(f"{destination}: is a directory; give the file to write, e.g. "
                        f"{destination / 'intents.json'}.")
    if not destination.parent.is_dir():
        raise DataError(f"{destination}: the directory {destination.parent} does not exist; "
                        "create it first or write elsewhere.")
    data = load_intents(source)
    patterns = defaultdict(list)
    for text, label in zip(data.texts, data.labels):
        patterns[label].append(text)
    document = {"intents": [{"tag": tag, "patterns": tag_patterns,
                             "responses": data.responses[tag]}
                            for tag, tag_patterns in patterns.items()]}
    try:
        handle, temporary = tempfile.mkstemp(prefix=f".{destination.name}.",
                                             dir=destination.parent)
    except OSError as error:
        raise DataError(f"{destination}: cannot write there ({error.strerror}).") from None
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            json.dump(document, file, indent=2, ensure_ascii=False)
        os.chmod(temporary, 0o644)  # mkstemp made it private; a data file is for everyone
        os.replace(temporary, destination)
    except OSError as error:
        Path(temporary).unlink(missing_ok=True)
        raise DataError(f"{destination}: cannot write it ({error.strerror}).") from None
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return data
