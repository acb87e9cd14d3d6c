"""Load and validate an intents file, then split it (first, before anything learns from it).

The file looks like `{"intents": [{"tag": str, "patterns": [str, ...], "responses": [str, ...]}]}`.
Every problem is reported as a `DataError` naming the file, the entry and what to do.
"""
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path

from sklearn.model_selection import train_test_split

log = logging.getLogger(__name__)

# A stratified train/validation/test split needs at least this many examples of every intent.
MIN_PATTERNS_PER_INTENT = 5
MAX_PATTERN_CHARS = 10_000


class DataError(ValueError):
    """The training data cannot be used; the message says where and how to fix it."""


@dataclass(frozen=True)
class IntentData:
    texts: list  # one row per pattern
    labels: list  # the intent tag of each row
    responses: dict  # tag -> list of responses
    source: str

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


def duplicate_key(text):
    """Texts that differ only in case, punctuation or spacing count as the same pattern."""
    words = " ".join(re.sub(r"[^\w\s]", " ", text.casefold()).split())
    return words or " ".join(text.casefold().split())  # all symbols, e.g. only emoji


def yaml_error(path, error):
    """One line for a yaml.YAMLError: the file, the line and column, the problem."""
    mark = getattr(error, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    return f"{path}: invalid YAML{where}: {getattr(error, 'problem', None) or error}."


def read_text(path):
    """The file's text; a missing, unreadable or non-UTF-8 file is a DataError."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found. Pass an intents JSON file with --data.") from None
    except OSError as error:
        raise DataError(f"{path}: cannot read the file ({error.strerror}).") from None
    try:
        return raw.decode("utf-8-sig")  # tolerates a byte-order mark
    except UnicodeDecodeError as error:
        raise DataError(f"{path}: not UTF-8 (byte {error.start} is 0x{raw[error.start]:02x}). "
                        "Save the file as UTF-8.") from None


def _read_json(path):
    text = read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise DataError(f"{path}: invalid JSON at line {error.lineno}, column {error.colno}: "
                        f"{error.msg}.") from None


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


def _read_document(path):
    """An intents document from JSON, or converted from CSV/TSV/Rasa YAML by the suffix."""
    from .importers import IMPORTERS, read_foreign  # importers build on this module
    if path.suffix.lower() in IMPORTERS:
        return read_foreign(path)
    return _read_json(path)


def load_intents(path):
    """Read and validate an intents file (JSON, CSV/TSV or Rasa NLU YAML); raises DataError
    with a precise message."""
    path = Path(path)
    document = _read_document(path)
    if not isinstance(document, dict) or not isinstance(document.get("intents"), list):
        raise DataError(f'{path}: the top level must be an object with an "intents" list, '
                        'e.g. {"intents": [{"tag": "greeting", "patterns": ["hi"], '
                        '"responses": ["Hello!"]}]}.')

    texts, labels, responses = [], [], {}
    first_index = {}  # tag -> index of the intent that defined it
    first_owner = {}  # duplicate_key -> tag of the first pattern with that text
    dropped = []
    for index, intent in enumerate(document["intents"]):
        tag, patterns, intent_responses = _check_intent(path, index, intent)
        if tag in first_index:
            raise DataError(f"{path}: intents[{index}] repeats tag {tag!r} of "
                            f"intents[{first_index[tag]}]; merge their patterns into one entry.")
        first_index[tag] = index
        responses[tag] = intent_responses
        kept = 0
        for pattern in patterns:
            key = duplicate_key(pattern)
            if key in first_owner:
                dropped.append((pattern, first_owner[key], tag))
                continue
            first_owner[key] = tag
            texts.append(pattern.strip())
            labels.append(tag)
            kept += 1
        if kept < MIN_PATTERNS_PER_INTENT:
            raise DataError(
                f"{path}: intents[{index}] (tag {tag!r}) has {kept} distinct pattern(s); at "
                f"least {MIN_PATTERNS_PER_INTENT} are needed so that every intent appears in the "
                "train, validation and test splits. Add more example sentences.")
    if len(responses) < 2:
        raise DataError(f"{path}: found {len(responses)} intent(s); a classifier needs at least "
                        "2 intents.")
    if dropped:
        examples = "; ".join(f"{text!r} ({new} repeats {old})" for text, old, new in dropped[:5])
        log.warning("%s: dropped %d duplicate pattern(s), keeping the first of each: %s%s",
                    path, len(dropped), examples, " ..." if len(dropped) > 5 else "")
    return IntentData(texts, labels, responses, str(path))


def split_data(texts, labels, val_size=0.15, test_size=0.15, seed=42):
    """Stratified train/validation/test split, seeded. Done before augmentation or fitting.

    A size of 0 leaves that split empty, for a caller that has its own validation or test file.
    """
    if not (0 <= val_size < 1 and 0 <= test_size < 1 and val_size + test_size < 1):
        raise ValueError("val_size and test_size must be in [0, 1) and sum to less than 1.")
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
    path = Path(path)
    document = _read_document(path)
    if isinstance(document, dict):
        data = load_intents(path)
        return data.texts, data.labels
    if not isinstance(document, list):
        raise DataError(f'{path}: expected an intents object or a list of {{"text", "intent"}}.')
    texts, labels = [], []
    for index, row in enumerate(document):
        if not (isinstance(row, dict) and isinstance(row.get("text"), str)
                and isinstance(row.get("intent"), str)):
            raise DataError(f'{path}: entry [{index}] must be {{"text": str, "intent": str}}.')
        texts.append(row["text"])
        labels.append(row["intent"])
    return texts, labels
