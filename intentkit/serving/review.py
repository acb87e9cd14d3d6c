"""The review queue: messages the model was unsure about, for a person to label.

Opt-in, from the environment of whatever process answers (`predict_intent_improved`,
`predict.py`, the HTTP service: all answer through `Predictor.predict_batch`):

- INTENTKIT_REVIEW_LOG=FILE turns it on: each answer that is the fallback, or whose top two
  confidences are closer than INTENTKIT_REVIEW_MARGIN (default 0.1), appends one JSON line;
- INTENTKIT_REVIEW_TEXT=1 stores the message itself (it may hold personal data); without it a
  row has the message's SHA-256 only, enough to count repeats but not to label;
- INTENTKIT_REVIEW_MAX_BYTES (default 1,000,000): past it the file is rotated to FILE.1 (the
  previous FILE.1 is dropped), so the queue stays bounded.

The settings are parsed once (`configured()`, when a Predictor loads and when the service or a
command starts): a bad value is a ConfigError then, never an error answer to a message.

Each line is one `write` on a file opened with O_APPEND, under a lock (a thread lock and an
flock on FILE.lock, which also serialises rotation between processes). `intentkit review`
ranks the rows and writes the labels a person gives into the feedback file as confirmed rows,
which `--feedback` folds into the next training run. With a model (`intentkit review
--model-dir DIR`, or `explain_rows`), each listed message that has its text also shows why the
model was unsure: its nearest training patterns and the words that carried the answer
(intentkit.serving.explain), so a reviewer sees which intent's data pulled it.
"""
import hashlib
import json
import logging
import math
import os
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from ..data.readers import json_line
from ..errors import ConfigError

try:
    import fcntl
except ImportError:  # not POSIX (Windows): the thread lock alone, one process per file
    fcntl = None

log = logging.getLogger(__name__)

ENV_LOG, ENV_TEXT = "INTENTKIT_REVIEW_LOG", "INTENTKIT_REVIEW_TEXT"
ENV_MARGIN, ENV_MAX_BYTES = "INTENTKIT_REVIEW_MARGIN", "INTENTKIT_REVIEW_MAX_BYTES"
DEFAULT_MARGIN, DEFAULT_MAX_BYTES = 0.1, 1_000_000
# A stored message is cut here: the models read far less, and a row stays one small line.
MAX_STORED_CHARS = 10_000

_lock = threading.Lock()
_failed_paths = set()  # a write that failed is logged once per file, never raised


@dataclass(frozen=True)
class Settings:
    path: Path
    store_text: bool = False
    margin: float = DEFAULT_MARGIN
    max_bytes: int = DEFAULT_MAX_BYTES

    @classmethod
    def from_environment(cls, environ=os.environ):
        """The settings, or None when INTENTKIT_REVIEW_LOG is unset (the queue is off);
        ConfigError naming the variable for a value that is not one."""
        path = environ.get(ENV_LOG)
        if not path:
            return None
        margin = _number(environ, ENV_MARGIN, DEFAULT_MARGIN, float,
                         lambda value: math.isfinite(value) and 0 <= value <= 1,
                         "a number from 0 to 1, e.g. 0.1")
        max_bytes = _number(environ, ENV_MAX_BYTES, DEFAULT_MAX_BYTES, int,
                            lambda value: value >= 1, "a whole number of bytes, e.g. 1000000")
        return cls(Path(path), environ.get(ENV_TEXT) == "1", margin, max_bytes)


def _number(environ, name, default, kind, valid, expected):
    text = environ.get(name)
    if text is None:
        return default
    try:
        value = kind(text)
    except ValueError:
        value = None
    if value is None or not valid(value):
        raise ConfigError(f"{name}={text!r} is not {expected}; fix or unset it")
    return value


_configured = {}  # the environment's review variables -> their Settings (parsed once)


def configured(environ=os.environ):
    """The review queue's settings from the environment, parsed once per distinct value (so a
    bad value is found when a Predictor loads or the service starts, not per message)."""
    key = tuple(environ.get(name) for name in (ENV_LOG, ENV_TEXT, ENV_MARGIN, ENV_MAX_BYTES))
    if key not in _configured:
        _configured[key] = Settings.from_environment(environ)
    return _configured[key]


def review_row(text, result, settings):
    """The queue's row for one answer, or None when the answer needs no review."""
    ranked = result.get("top_k") or []
    if not ranked:  # no words to classify, or an error
        return None
    margin = ranked[0]["confidence"] - (ranked[1]["confidence"] if len(ranked) > 1 else 0.0)
    if not result["fallback"] and margin >= settings.margin:
        return None
    row = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "nearest": ranked[0]["intent"], "confidence": round(ranked[0]["confidence"], 4),
           "margin": round(margin, 4), "fallback": result["fallback"],
           "model_type": result.get("model_type"),
           # surrogatepass: a lone surrogate (a "\ud800" escape in a JSON request) has a hash
           # too, instead of failing the answer.
           "text_sha256": hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()}
    if settings.store_text:
        row["text"] = text[:MAX_STORED_CHARS]
    return row


def record_uncertain(texts, results, settings=None):
    """Append the rows of the answers that need review (a no-op while the queue is off)."""
    settings = settings or configured()
    if settings is None:
        return
    rows = [row for row in (review_row(t, r, settings) for t, r in zip(texts, results)) if row]
    try:
        for row in rows:
            append_line(settings.path, json_line(row), settings.max_bytes)
    except OSError as error:  # the answer matters more than the queue
        if settings.path not in _failed_paths:
            _failed_paths.add(settings.path)
            log.warning("review queue %s not written: %s", settings.path, error)


def append_line(path, line, max_bytes):
    """One O_APPEND write of `line`, after rotating `path` to `path`.1 when it would pass
    `max_bytes`; under a thread lock and an flock, so threads and processes never interleave."""
    data = (line + "\n").encode("utf-8")
    path = Path(path)
    with _lock, open(f"{path}.lock", "a", encoding="utf-8") as lock_file:
        if fcntl:
            fcntl.flock(lock_file, fcntl.LOCK_EX)  # released when lock_file closes
        size = path.stat().st_size if path.exists() else 0
        if size and size + len(data) > max_bytes:
            os.replace(path, f"{path}.1")
        handle = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(handle, data)
        finally:
            os.close(handle)


def read_queue(path):
    """The rows of FILE.1 then FILE; a line that is not a JSON object is skipped with a log."""
    rows = []
    for part in (Path(f"{path}.1"), Path(path)):
        if not part.exists():
            continue
        # Split at b"\n" only: U+2028 and the like inside a message do not end a row.
        for number, raw in enumerate(part.read_bytes().split(b"\n"), 1):
            line = raw.decode("utf-8", "replace")
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                row = None
            if isinstance(row, dict) and "nearest" in row and "margin" in row:
                rows.append(row)
            elif line.strip():
                log.warning("%s: line %d is not a review row; skipped", part, number)
    return rows


def ranked_groups(rows):
    """{nearest intent: [rows, the most uncertain (smallest margin) first]}, repeats of a
    message merged (with "count"), the intents with the most rows first."""
    merged = {}
    for row in rows:
        key = row["text_sha256"]
        if key in merged:
            merged[key]["count"] += 1
        else:
            merged[key] = {**row, "count": 1}
    groups = defaultdict(list)
    for row in sorted(merged.values(), key=lambda r: (r["margin"], r["confidence"])):
        groups[row["nearest"]].append(row)
    return dict(sorted(groups.items(), key=lambda item: -sum(r["count"] for r in item[1])))


def explain_rows(rows, predictor, neighbours=3, words=4):
    """The rows, each one with its text given an "explanation" by `predictor`: its
    `neighbours` nearest training patterns and its `words` words of largest effect (see
    intentkit.serving.explain). Rows without text (not stored) are returned as they are."""
    explained = []
    for row in rows:
        if "text" in row:
            explanation = predictor.explain(row["text"], neighbours=neighbours)["explanation"]
            row = {**row, "explanation": {
                "answer": explanation["answer"],
                "nearest_patterns": explanation["nearest_patterns"],
                "words": sorted(explanation["words"], key=lambda w: -abs(w["effect"]))[:words]}}
        explained.append(row)
    return explained
