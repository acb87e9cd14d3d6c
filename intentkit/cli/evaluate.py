"""`intentkit evaluate`: score a published run on labelled data and write the report."""
import logging

from .common import (
    add_model_dir,
    deprecated,
    existing_file,
    existing_model_dir,
    import_tensorflow_for,
)

log = logging.getLogger("intentkit")

EXAMPLES = """\
examples:
  intentkit evaluate -m models/bot --data test.json
  intentkit evaluate -m models/bot --data test.csv -o reports/test"""


def add_parser(subcommands, name):
    parser = subcommands.add_parser(
        name, help="score a published model on labelled data",
        description="Score a published run's models on labelled data and write the report "
        "(metrics.json, classification report, plots, errors.csv, summary.md).",
        epilog=EXAMPLES)
    parser.add_argument("--data", required=True, metavar="FILE",
                        help="intents file (any --data format of train), or a JSON list of "
                        '{"text": ..., "intent": ...} (required)')
    add_model_dir(parser)
    parser.add_argument("-o", "--out", default=None, metavar="DIR", help="report directory "
                        "(default: MODEL_DIR/report-evaluate)")
    deprecated(parser, "--report", "-o/--out", "out", metavar="DIR")
    return parser


def run(args):
    existing_file(args.data, "--data")
    existing_model_dir(args.model_dir)
    import_tensorflow_for("keras", args.verbose)
    from ..evaluation.saved import evaluate_saved
    metrics, default = evaluate_saved(args.model_dir, args.data, args.out)
    for name, m in metrics.items():
        log.info("%-8s accuracy %.4f  macro-F1 %.4f  (%d patterns)%s", name, m["accuracy"],
                 m["macro_f1"], m["n"], "  <- the default answer" if name == default else "")
    return 0
