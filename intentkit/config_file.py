"""Training options from a YAML or JSON file (`jobs.py --config FILE`).

Keys are TrainConfig field names (`epochs`, `val_size`; `val-size` is accepted too). The file
only holds options: precedence is dataclass defaults < --quick < this file < explicit flags.
"""
import difflib
import json
from pathlib import Path

import yaml

from .config import config_fields
from .data import yaml_error

SUFFIXES = (".yaml", ".yml", ".json")


def _parse(path):
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ValueError(f"{path}: config file not found.") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not UTF-8. Save the config file as UTF-8.") from None
    if path.suffix.lower() == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: invalid JSON at line {error.lineno}, column "
                             f"{error.colno}: {error.msg}.") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ValueError(yaml_error(path, error)) from None


def _checked(path, key, value, default):
    """The value if it has the field's type (an int is a fine float; a bool is not an int)."""
    expected = type(default)
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, expected) and not (expected is int and isinstance(value, bool)):
        return value
    raise ValueError(f"{path}: {key!r} must be {expected.__name__} (like {default!r}), not "
                     f"{type(value).__name__} {value!r}.")


def read_config_file(path):
    """The options in a .yaml/.yml/.json file as {field name: value}, validated."""
    path = Path(path)
    if path.suffix.lower() not in SUFFIXES:
        raise ValueError(f"{path}: a config file must end in {', '.join(SUFFIXES)}.")
    document = _parse(path)
    if document is None:
        return {}
    if not isinstance(document, dict):
        # ValueError, not TypeError: the CLI reports ValueErrors as one line, exit code 2.
        raise ValueError(f"{path}: the config file must be a mapping of option names to values, "  # noqa: TRY004
                         "e.g. `epochs: 50`.")
    defaults = {field.name: field.default for field in config_fields()}
    options = {}
    for key, value in document.items():
        name = str(key).replace("-", "_")
        if name not in defaults:
            close = difflib.get_close_matches(name, defaults, n=3)
            hint = (f" Did you mean {', '.join(close)}?" if close
                    else f" Known options: {', '.join(defaults)}.")
            raise ValueError(f"{path}: unknown option {key!r}.{hint}")
        options[name] = _checked(path, key, value, defaults[name])
    return options
