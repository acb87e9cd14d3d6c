"""`intentkit cv`: K-fold cross-validation of the training pipeline, and its learning curve."""
import argparse
from dataclasses import replace
from pathlib import Path

from .. import artifacts
from .common import import_tensorflow_for
from .train import add_training_options, options

DEFAULT_OUT = str(Path(artifacts.DEFAULT_DIR) / "cv")
EXAMPLES = f"""\
examples:
  intentkit cv --data intents.json --quick
  intentkit cv --data intents.json -o cv-report --folds 10 --curve

Without -o/--out, the report goes to {DEFAULT_OUT}."""


def add_parser(subcommands, name):
    parser = subcommands.add_parser(
        name, help="cross-validate the training pipeline (and its learning curve)",
        description="Stratified K-fold cross-validation over all patterns, each fold through "
        "the training pipeline (its held-out part never augmented, tuned on or used for the "
        "vocabulary; tuning once, on the first fold). Writes cv.json, cv.md, cv.png and each "
        f"fold's report into -o/--out (here: default {DEFAULT_OUT}); publishes nothing.",
        epilog=EXAMPLES)
    parser.add_argument("--folds", type=int, default=argparse.SUPPRESS,
                        help="number of folds (default: 5)")
    parser.add_argument("--curve", action="store_true",
                        help="also the learning curve: the same folds with each fold's training "
                        "part subsampled per intent (curve.json, curve.md, curve.png)")
    parser.add_argument("--curve-sizes", default=argparse.SUPPRESS, metavar="N,N,...",
                        type=lambda text: [int(size) for size in text.split(",")],
                        help="training patterns per intent of the curve's points, before all "
                        "(default: 5,10,20,40)")
    return add_training_options(parser)


def run(args):
    config = options(args)
    if config.out == artifacts.DEFAULT_DIR:  # not the published model's directory
        config = replace(config, out=DEFAULT_OUT)
    import_tensorflow_for("keras", args.verbose)
    from ..progress import terminal_logging
    from ..training.cv import CURVE_SIZES, DEFAULT_FOLDS, cross_validate
    with terminal_logging():
        cross_validate(config, getattr(args, "folds", DEFAULT_FOLDS),
                       getattr(args, "curve_sizes", CURVE_SIZES) if args.curve else None)
    return 0
