"""Reading the files a user gives (data, config, feedback): text, JSON and YAML, safely.

Every reader raises the caller's error class (a `DataError` for data, a `ConfigError` for a
config file) with one line naming the file. Hostile files are refused rather than obeyed: YAML
aliases (an alias "bomb" of a few hundred bytes expands to gigabytes) and nesting deeper than any
real file has (Python's parsers recurse, and 5,000 levels end in a RecursionError).
"""
import json

import yaml

from ..errors import DataError

MAX_NESTING = 100  # levels of lists/objects; real intents, config and feedback files use < 10


def read_text(path, error=DataError, what="file"):
    """The file's text; a missing, unreadable or non-UTF-8 file is an `error`."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise error(f"{path}: {what} not found.") from None
    except OSError as problem:
        raise error(f"{path}: cannot read the file ({problem.strerror}).") from None
    try:
        return raw.decode("utf-8-sig")  # tolerates a byte-order mark
    except UnicodeDecodeError as problem:
        raise error(f"{path}: not UTF-8 (byte {problem.start} is 0x{raw[problem.start]:02x}). "
                    "Save the file as UTF-8.") from None


def _too_deep(path, error):
    return error(f"{path}: nested more than {MAX_NESTING} levels deep; this is not a file "
                 "intentkit writes or reads (check that it is the right file).")


def _depth_exceeds(value, limit=MAX_NESTING):
    """Whether lists/dicts nest deeper than `limit` (iterative: no recursion of our own)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = (item.values() if isinstance(item, dict)
                    else item if isinstance(item, list) else ())
        for child in children:
            if isinstance(child, (dict, list)):
                if depth + 1 > limit:
                    return True
                stack.append((child, depth + 1))
    return False


def parse_json(text, path, error=DataError):
    try:
        document = json.loads(text)
    except json.JSONDecodeError as problem:
        raise error(f"{path}: invalid JSON at line {problem.lineno}, column {problem.colno}: "
                    f"{problem.msg}.") from None
    except RecursionError:
        raise _too_deep(path, error) from None
    if _depth_exceeds(document):
        raise _too_deep(path, error)
    return document


class _NoAliasLoader(yaml.SafeLoader):
    """yaml.SafeLoader without aliases (`*name`): they are how a tiny file expands without
    bound, and no intents or config file needs them."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None, None, "YAML aliases (*name) are not allowed; write the value out",
                event.start_mark)
        return super().compose_node(parent, index)


def parse_yaml(text, path, error=DataError):
    try:
        document = yaml.load(text, Loader=_NoAliasLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as problem:
        mark = getattr(problem, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        what = getattr(problem, "problem", None) or str(problem).splitlines()[0]
        raise error(f"{path}: invalid YAML{where}: {what}.") from None
    except RecursionError:
        raise _too_deep(path, error) from None
    if _depth_exceeds(document):
        raise _too_deep(path, error)
    return document
