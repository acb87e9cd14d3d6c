"""Reading the files a user gives (data, config, feedback): text, JSON and YAML, safely.

Every reader raises the caller's error class (a `DataError` for data, a `ConfigError` for a
config file) with one line naming the file. Hostile files are refused rather than obeyed: YAML
aliases (an alias "bomb" of a few hundred bytes expands to gigabytes) and nesting deeper than any
real file has (Python's parsers recurse, and 5,000 levels end in a RecursionError).
"""
import json
import re

import yaml

from ..errors import DataError

MAX_NESTING = 100  # levels of lists/objects; real intents, config and feedback files use < 10
# What json.dumps(ensure_ascii=False) leaves raw though a line reader may split there (U+0085,
# U+2028, U+2029: str.splitlines() and many editors do) or UTF-8 cannot encode it (a lone
# surrogate, which a JSON "\ud800" escape in a request decodes to).
_UNSAFE_IN_A_LINE = re.compile(r"[\u0085\u2028\u2029\ud800-\udfff]")


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


def json_line(value):
    """`value` as one line of JSON lines, without its "\\n": non-ASCII text stays readable, but
    every character a line reader could split at, and every lone surrogate, is a \\u escape,
    so that one row is always one line and always encodes as UTF-8."""
    return _UNSAFE_IN_A_LINE.sub(lambda match: f"\\u{ord(match.group()):04x}",
                                 json.dumps(value, ensure_ascii=False))


def json_lines(text):
    """The lines of a JSON-lines text, split at "\\n" only (JSON escapes every other line end
    it needs; str.splitlines() would also split inside strings at U+2028 and the like)."""
    lines = text.split("\n")
    return lines[:-1] if lines and not lines[-1].strip() else lines


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


class _RefuseAliases:
    """A YAML loader without aliases (`*name`): they are how a tiny file expands without
    bound, and no intents or config file needs them."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None, None, "YAML aliases (*name) are not allowed; write the value out",
                event.start_mark)
        return super().compose_node(parent, index)


class _NoAliasLoader(_RefuseAliases, yaml.SafeLoader):
    """yaml.SafeLoader without aliases."""


class _StringsLoader(_RefuseAliases, yaml.BaseLoader):
    """Every scalar a string, without aliases: in data whose values are all names and texts
    (Rasa NLU), YAML 1.1 must not turn `intent: yes` into True or `intent: 404` into a number."""


def parse_yaml(text, path, error=DataError, strings=False):
    """The YAML document of `text`; `strings`: every scalar read as a string (_StringsLoader)."""
    loader = _StringsLoader if strings else _NoAliasLoader
    try:
        document = yaml.load(text, Loader=loader)  # noqa: S506 (SafeLoader/BaseLoader subclasses)
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
