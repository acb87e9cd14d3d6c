"""What every subcommand shares: logging, the error contract, the model options."""
import argparse
import logging
import sys

from .. import artifacts
from ..errors import IntentkitError

log = logging.getLogger("intentkit")


def setup_logging(verbose):
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
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


def add_model_arguments(parser):
    """Which published run answers, with which model and runtime (predict and serve)."""
    from ..serving.predictor import DEFAULT_CACHE_SIZE, RUNTIMES
    parser.add_argument("--model-dir", default=None, metavar="DIR",
                        help="directory of a published run (default: "
                        f"{artifacts.DEFAULT_DIR}); sets --model and --preprocessor")
    parser.add_argument("--model", default=None, help="the .h5 model (default: "
                        f"MODEL_DIR/{artifacts.MODEL_FILE})")
    parser.add_argument("--preprocessor", default=None, help="the pickle (default: "
                        f"MODEL_DIR/{artifacts.PREPROCESSOR_FILE})")
    choice = parser.add_mutually_exclusive_group()
    choice.add_argument("--ensemble", dest="use_ensemble", action="store_const", const=True,
                        default=None, help="answer with the ensemble")
    choice.add_argument("--single", dest="use_ensemble", action="store_const", const=False,
                        help="answer with the single CNN-BiLSTM")
    parser.add_argument("--runtime", choices=RUNTIMES, default="keras",
                        help="numpy: same answers without importing TensorFlow (fast start)")
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
    """(model path, preprocessor path) from --model-dir / --model / --preprocessor."""
    directory = args.model_dir or artifacts.DEFAULT_DIR
    return (args.model or f"{directory}/{artifacts.MODEL_FILE}",
            args.preprocessor or f"{directory}/{artifacts.PREPROCESSOR_FILE}")


def import_tensorflow_for(runtime, verbose):
    """TensorFlow, imported without its start-up banner, when the Keras runtime needs it."""
    if runtime == "keras":
        from ..runtime import import_tensorflow_quietly
        import_tensorflow_quietly(verbose=verbose)
