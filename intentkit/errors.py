"""The one error base for problems a user can fix.

Every error that a person can act on (bad data, a bad option or config file, missing or damaged
artifacts, a missing pretrained encoder) derives from `IntentkitError`, and its message names the
file, the entry and the fix. The command line reports these, and only these, as one line with
exit code 2; anything else is a bug (exit 1, traceback with --verbose).
"""
import reprlib

_short = reprlib.Repr()
_short.maxstring = _short.maxother = 60
_short.maxlist = _short.maxdict = 5
_short.maxlevel = 2


def shorten(value):
    """repr(value), bounded: a message never carries an unbounded value (a file can hold a
    value of millions of characters)."""
    return _short.repr(value)


class IntentkitError(Exception):
    """A problem the user can fix; the message says where and how."""


class DataError(IntentkitError):
    """The training or evaluation data cannot be used."""


class ConfigError(IntentkitError):
    """An option or a config file is invalid."""


class ArtifactError(IntentkitError):
    """Saved artifacts are missing, damaged or do not belong together."""


class ArtifactMismatch(ArtifactError):
    """Files of different runs side by side (or one changed): reading them again can help while
    a retrain is switching runs."""


class PretrainedUnavailable(IntentkitError):
    """The pretrained encoder's package or files are missing or not the expected ones."""


class MissingExtra(IntentkitError):
    """An optional extra (`pip install 'intentkit[serve]'`, ...) is not installed."""
