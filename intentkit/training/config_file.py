"""Training options from a YAML or JSON file (`--config FILE`).

Keys are TrainConfig field names (`epochs`, `val_size`; `val-size` is accepted too). The file
only holds options: precedence is dataclass defaults < --quick < this file < explicit flags.
"""
import difflib
from pathlib import Path

from ..data.readers import parse_json, parse_yaml, read_text
from ..errors import ConfigError, shorten
from .config import config_fields

SUFFIXES = (".yaml", ".yml", ".json")


def _checked(path, key, value, default):
    """The value if it has the field's type (an int is a fine float; a bool is not an int)."""
    expected = type(default)
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, expected) and not (expected is int and isinstance(value, bool)):
        return value
    raise ConfigError(f"{path}: {shorten(key)} must be {expected.__name__} (like {default!r}), "
                      f"not {type(value).__name__} {shorten(value)}.")


def read_config_file(path):
    """The options in a .yaml/.yml/.json file as {field name: value}, validated."""
    path = Path(path)
    if path.suffix.lower() not in SUFFIXES:
        raise ConfigError(f"{path}: a config file must end in {', '.join(SUFFIXES)}.")
    text = read_text(path, ConfigError, "config file")
    parse = parse_json if path.suffix.lower() == ".json" else parse_yaml
    document = parse(text, path, ConfigError)
    if document is None:
        return {}
    if not isinstance(document, dict):
        raise ConfigError(f"{path}: the config file must be a mapping of option names to "
                          "values, e.g. `epochs: 50`.")
    defaults = {field.name: field.default for field in config_fields()}
    options = {}
    for key, value in document.items():
        name = str(key).replace("-", "_")
        if name not in defaults:
            close = difflib.get_close_matches(name, defaults, n=3)
            hint = (f" Did you mean {', '.join(close)}?" if close
                    else f" Known options: {', '.join(defaults)}.")
            raise ConfigError(f"{path}: unknown option {shorten(key)}.{hint}")
        options[name] = _checked(path, key, value, defaults[name])
    return options
