"""What every subcommand shares: logging, the error contract, the option conventions (docs/cli.md),
and the checks of paths and extras that answer before anything heavy is imported."""
import argparse
import difflib
import importlib.util
import logging
import os
import socket
import sys
from pathlib import Path

from .. import artifacts
from ..errors import ConfigError, IntentkitError, MissingExtra

log = logging.getLogger("intentkit")


class HelpFormatter(argparse.HelpFormatter):
    """Every default shown (unless the help already says it, or there is none), and the epilog's
    examples (text of several lines) kept as written."""

    def _fill_text(self, text, width, indent):
        if "\n" in text:
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)

    def _get_help_string(self, action):
        help_text = action.help or ""
        if ("default" not in help_text and action.default not in (None, False, "")
                and action.default is not argparse.SUPPRESS and action.option_strings
                and action.nargs != 0):
            help_text += " (default: %(default)s)"
        return help_text


class DeprecatedAlias(argparse.Action):
    """An old spelling of an option, hidden from --help: still works, says what replaced it."""

    def __init__(self, option_strings, dest, replacement, **kwargs):
        self.replacement = replacement
        super().__init__(option_strings, dest, help=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"{parser.prog}: {option_string} is deprecated; use {self.replacement} (it will be "
              "removed in a later release)", file=sys.stderr)
        setattr(namespace, self.dest, values)


def deprecated(parser, old, replacement, dest, **kwargs):
    """Add `old` as a hidden alias of the option `replacement` (same `dest`)."""
    parser.add_argument(old, dest=dest, action=DeprecatedAlias, replacement=replacement,
                        default=argparse.SUPPRESS, **kwargs)


def _closest(path):
    """' (did you mean X?)' naming the closest existing entry of the path's parent, or ''."""
    parent = path.parent if str(path.parent) else Path(".")
    try:
        names = [entry.name for entry in parent.iterdir()]
    except OSError:
        return ""
    close = difflib.get_close_matches(path.name, names, n=1, cutoff=0.6)
    return f" (did you mean {parent / close[0] if str(path.parent) != '.' else close[0]}?)" \
        if close else ""


def existing_file(path, option):
    """`path` if it is a readable file; else a ConfigError naming `option` and the closest
    existing name."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{option} {path}: is a directory; give a file")
    if not path.is_file():
        raise ConfigError(f"{option} {path}: no such file{_closest(path)}")
    return path


def existing_model_dir(directory, option="-m/--model-dir"):
    """A directory holding a published run (its manifest), checked in a few milliseconds."""
    directory = Path(directory)
    if not directory.is_dir():
        what = "is a file, not a directory" if directory.exists() else "no such directory"
        raise ConfigError(f"{option} {directory}: {what}{_closest(directory)}; give the "
                          "directory a model was trained into (`intentkit train --data FILE "
                          f"--out {directory}`)")
    if not (directory / artifacts.MANIFEST_FILE).is_file():
        raise ConfigError(f"{option} {directory}: no published model there (no "
                          f"{artifacts.MANIFEST_FILE}); train one with `intentkit train --data "
                          f"FILE --out {directory}`")
    return directory


def writable_parent(path, option):
    """The directory that will receive `path` exists (the file itself is made later)."""
    parent = Path(path).parent
    if str(parent) and not parent.is_dir():
        raise ConfigError(f"{option} {path}: no such directory {parent}{_closest(parent)}")


def require_extra(module, extra, command):
    """MissingExtra (exit 2) with the pip line when an optional extra's module is missing."""
    if importlib.util.find_spec(module) is None:
        raise MissingExtra(f"`intentkit {command}` needs the {extra} extra ({module} is not "
                           f"installed): pip install 'intentkit[{extra}]'")


def check_port_free(host, port):
    """Refuse a port another process listens on, before the model loads."""
    if not 0 <= port <= 65535:
        raise ConfigError(f"--port {port}: a port is between 0 and 65535")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        if os.name != "nt":
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            raise ConfigError(f"--port {port}: cannot listen on {host}:{port} "
                              f"({error.strerror}); choose another --port") from None


def setup_logging(verbose, quiet=False):
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING if quiet
                        else logging.INFO,
                        format="%(asctime)s %(levelname)s %(message)s" if verbose
                        else "%(message)s", datefmt="%H:%M:%S", stream=sys.stderr)
    if not verbose:
        for noisy in ("absl", "tensorflow", "matplotlib", "h5py"):
            logging.getLogger(noisy).setLevel(logging.ERROR)


def run_command(function, verbose):
    """Run a command. A problem the user can fix (errors.IntentkitError) is one line and exit
    code 2; Ctrl-C is exit 130; anything else is a bug: exit 1, and the traceback with
    --verbose."""
    try:
        return function()
    except KeyboardInterrupt:
        log.error("interrupted")
        return 130
    except IntentkitError as error:
        if verbose:
            log.exception("error")
        else:
            log.error("error: %s", error)
        return 2
    except Exception as error:
        if verbose:
            log.exception("internal error")
        else:
            log.error("internal error (%s: %s); rerun with --verbose for the traceback and "
                      "report it", type(error).__name__, error)
        return 1


def add_model_dir(parser):
    parser.add_argument("-m", "--model-dir", default=artifacts.DEFAULT_DIR, metavar="DIR",
                        help="directory of a published run (what `intentkit train --out DIR` "
                        "wrote)")


def add_model_arguments(parser):
    """Which published run answers, with which model and runtime (predict and serve)."""
    from ..serving.predictor import DEFAULT_CACHE_SIZE, DEFAULT_RUNTIME, RUNTIMES
    add_model_dir(parser)
    # Older spellings: the two files of a run named one by one.
    deprecated(parser, "--model", "-m/--model-dir", "model", metavar="FILE")
    deprecated(parser, "--preprocessor", "-m/--model-dir", "preprocessor", metavar="FILE")
    choice = parser.add_mutually_exclusive_group()
    choice.add_argument("--ensemble", dest="use_ensemble", action="store_const", const=True,
                        default=None, help="answer with the ensemble")
    choice.add_argument("--single", dest="use_ensemble", action="store_const", const=False,
                        help="answer with the single CNN-BiLSTM")
    parser.add_argument("--runtime", choices=RUNTIMES, default=DEFAULT_RUNTIME,
                        help="auto: NumPy (same answers without importing TensorFlow, a fast "
                        "start) where it runs the model, else Keras; keras: TensorFlow always")
    parser.add_argument("--cache-size", type=count, default=DEFAULT_CACHE_SIZE, metavar="N",
                        help="answers of the N most recent distinct messages kept in memory "
                        f"(default: {DEFAULT_CACHE_SIZE:,}; 0: off)")


def count(text):
    """argparse type: an integer >= 0 (argparse names it in its error: "invalid count value")."""
    value = int(text)
    if value < 0:
        raise ValueError(text)
    return value


def positive(text):
    """argparse type: an integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def model_paths(args):
    """(model path, preprocessor path) from -m/--model-dir (or the deprecated --model /
    --preprocessor), checked to exist before anything heavy is imported."""
    model, preprocessor = getattr(args, "model", None), getattr(args, "preprocessor", None)
    if model is None or preprocessor is None:
        existing_model_dir(args.model_dir)
    for path, option in ((model, "--model"), (preprocessor, "--preprocessor")):
        if path is not None:
            existing_file(path, option)
    return (model or f"{args.model_dir}/{artifacts.MODEL_FILE}",
            preprocessor or f"{args.model_dir}/{artifacts.PREPROCESSOR_FILE}")


def import_tensorflow_for(runtime, verbose):
    """TensorFlow, imported without its start-up banner, when the Keras runtime needs it (the
    "auto" runtime imports it quietly itself if it falls back to Keras)."""
    if runtime == "keras":
        from ..runtime import import_tensorflow_quietly
        import_tensorflow_quietly(verbose=verbose)
