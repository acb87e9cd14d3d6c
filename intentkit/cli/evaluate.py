"""`intentkit evaluate`: score a published run on labelled data and write the report."""
import logging

from .. import artifacts
from .common import import_tensorflow_for

log = logging.getLogger("intentkit")


def add_parser(subcommands, name):
    parser = subcommands.add_parser(
        name, help="score a published model on labelled data",
        description="Score a published run's models on labelled data and write the report "
        "(metrics.json, classification report, plots, errors.csv, summary.md).")
    parser.add_argument("--data", required=True, help="intents file (any --data format of "
                        'train), or a JSON list of {"text": ..., "intent": ...}')
    parser.add_argument("--model-dir", default=artifacts.DEFAULT_DIR,
                        help="directory of the published run (default: %(default)s)")
    parser.add_argument("--report", default=None, help="report directory "
                        "(default: MODEL_DIR/report-evaluate)")
    return parser


def run(args):
    import_tensorflow_for("keras", args.verbose)
    from ..evaluation.saved import evaluate_saved
    metrics, default = evaluate_saved(args.model_dir, args.data, args.report)
    for name, m in metrics.items():
        log.info("%-8s accuracy %.4f  macro-F1 %.4f  (%d patterns)%s", name, m["accuracy"],
                 m["macro_f1"], m["n"], "  <- the default answer" if name == default else "")
    return 0
