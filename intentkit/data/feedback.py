"""Corrected predictions: recorded as JSON lines, folded into the next run's training split.

A row is `{"time", "text", "predicted", "correct", "confirmed", "model", "model_version",
"variant"}` ("model" and "model_version" both name the run; "variant" the A/B variant that
answered). Only confirmed rows are used for training (a chatbot can record end-user corrections as
unconfirmed, for a person to review and flip to true; the HTTP service records every row so).
Folding happens after the split and touches the training split only: a row whose text is a
validation or test pattern is skipped, since training on it would leak into the held-out evaluation
(the split is seeded, so the same data and seed give the same test split).
"""
import logging
import os
import threading
from datetime import UTC, datetime
from pathlib import Path

from ..errors import DataError
from .intents import MAX_PATTERN_CHARS, Split, duplicate_key
from .readers import json_line, json_lines, parse_json, read_text

try:
    import fcntl
except ImportError:  # not POSIX (Windows): the thread lock alone, one process per file
    fcntl = None

log = logging.getLogger(__name__)

# Why a row is not added to the training split (report keys).
SKIP_REASONS = {
    "unconfirmed": "not confirmed",
    "unknown_intent": "intent not in the training data",
    "in_val_or_test": "text is a validation or test pattern",
    "in_training": "text already in the training split",
    "conflicts_with_training": "text is a training pattern of another intent: fix the data file",
    "repeated": "text repeats an earlier feedback row",
}

_write_lock = threading.Lock()


class FeedbackFileFull(Exception):
    """The row would take the feedback file past its size cap; nothing was written."""


def check_text(text, what="text"):
    """A message usable as a training pattern; raises TypeError or ValueError saying why not."""
    if not isinstance(text, str):
        raise TypeError(f"{what} must be a string, not {type(text).__name__}")
    if not text.strip():
        raise ValueError(f"{what} is empty; give the message that was misclassified")
    if len(text) > MAX_PATTERN_CHARS:
        raise ValueError(f"{what} is {len(text):,} characters long (limit "
                         f"{MAX_PATTERN_CHARS:,}); a feedback row is one user message")


def record_feedback(path, text, predicted, correct, labels=None, model_version=None,
                    confirmed=True, max_file_bytes=None, variant=None):
    """Append one correction to the JSON-lines file `path` and return the row.

    `labels`, when given, are the model's intents: `correct` must be one of them. The line is
    written with one `write` on a file opened for appending, under a thread lock and (on POSIX)
    an exclusive `flock` on the file, so concurrent writers (threads, or the processes of
    `intentkit serve --workers N`) never interleave inside a line nor pass the cap together.
    `max_file_bytes`, when given, caps the file's size: a row that would pass it raises
    FeedbackFileFull.
    """
    check_text(text)
    for name, value in (("predicted", predicted), ("correct", correct)):
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"{name} must be a non-empty intent name, not {value!r}")
    if labels is not None and correct not in labels:
        raise ValueError(f"correct intent {correct!r} is not one of the model's intents: "
                         f"{', '.join(sorted(labels))}")
    if not isinstance(confirmed, bool):
        raise TypeError(f"confirmed must be true or false, not {confirmed!r}")
    row = {"time": datetime.now(UTC).isoformat(timespec="seconds"), "text": text,
           "predicted": predicted, "correct": correct, "confirmed": confirmed,
           "model": model_version, "model_version": model_version, "variant": variant}
    line = (json_line(row) + "\n").encode("utf-8")
    # The size check and the write together, so that neither threads nor processes pass the cap.
    with _write_lock:
        # 0600: the rows are users' messages (as the review queue's are).
        descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            if fcntl is not None:
                fcntl.flock(descriptor, fcntl.LOCK_EX)  # released when the descriptor closes
            size = os.fstat(descriptor).st_size
            if max_file_bytes is not None and size + len(line) > max_file_bytes:
                raise FeedbackFileFull(f"{path} holds {size:,} bytes; a row of {len(line):,} "
                                       f"would pass the cap of {max_file_bytes:,}")
            written = os.write(descriptor, line)
        finally:
            os.close(descriptor)
    if written != len(line):
        raise OSError(f"{path}: only {written} of {len(line)} bytes written (disk full?)")
    return row


def read_feedback(path):
    """Every row of a feedback file, validated; DataError names the file and line."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: feedback file not found. Record feedback first "
                        "(`python predict.py --feedback-file FILE --correct INTENT TEXT`) or "
                        "drop --feedback.")
    rows = []
    for number, line in enumerate(json_lines(read_text(path)), start=1):
        if not line.strip():
            continue
        where = f"{path}: line {number}"
        row = parse_json(line, where)
        if not isinstance(row, dict):
            raise DataError(f'{where}: expected an object like {{"text": ..., "correct": ...,'
                            ' "confirmed": true}.')
        try:
            check_text(row.get("text"))
            if not isinstance(row.get("correct"), str) or not row["correct"].strip():
                raise ValueError('"correct" must be a non-empty intent name')
            if not isinstance(row.get("confirmed", False), bool):
                raise TypeError('"confirmed" must be true or false')
        except (TypeError, ValueError) as error:
            raise DataError(f"{where}: {error}.") from None
        rows.append(row)
    return rows


def load_feedback(path):
    """The confirmed rows of a feedback file (see read_feedback for errors)."""
    return [row for row in read_feedback(path) if row.get("confirmed") is True]


def fold_into_training(split, path, tags):
    """Add the confirmed feedback rows of `path` to the training split only.

    Returns the new Split and a report `{"file", "rows", "added", "skipped": {reason: n}}`.
    """
    rows = read_feedback(path)
    held_out = {duplicate_key(text) for text in split.val_texts + split.test_texts}
    training_label = {duplicate_key(text): label
                      for text, label in zip(split.train_texts, split.train_labels)}
    added_keys = set()
    known = set(tags)
    texts, labels = list(split.train_texts), list(split.train_labels)
    skipped = dict.fromkeys(SKIP_REASONS, 0)
    examples = []
    for row in rows:
        key = duplicate_key(row["text"])
        if row.get("confirmed") is not True:
            reason = "unconfirmed"
        elif row["correct"] not in known:
            reason = "unknown_intent"
        elif key in held_out:
            reason = "in_val_or_test"
        elif key in training_label:
            reason = ("in_training" if training_label[key] == row["correct"]
                      else "conflicts_with_training")
        elif key in added_keys:
            reason = "repeated"
        else:
            added_keys.add(key)
            texts.append(row["text"].strip())
            labels.append(row["correct"])
            continue
        skipped[reason] += 1
        examples.append(f"{row['text'][:60]!r} ({SKIP_REASONS[reason]})")
    added = len(texts) - len(split.train_texts)
    report = {"file": str(path), "rows": len(rows), "added": added,
              "skipped": {reason: n for reason, n in skipped.items() if n}}
    log.info("feedback: %d added to the training split, %d skipped%s", added,
             len(rows) - added, "".join(f"; {n} {SKIP_REASONS[r]}"
                                        for r, n in report["skipped"].items()))
    if examples:
        log.info("feedback skipped: %s%s", "; ".join(examples[:5]),
                 " ..." if len(examples) > 5 else "")
    return Split(texts, labels, split.val_texts, split.val_labels, split.test_texts,
                 split.test_labels), report
