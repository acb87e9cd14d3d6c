"""`intentkit check`: what to fix in an intents file before training (see
intentkit.evaluation.data_checks)."""
import argparse
import json

from .common import existing_file

EXAMPLES = """\
examples:
  intentkit check --data intents.json
  intentkit check --data intents.csv --json > findings.json"""


def add_parser(subcommands, name):
    parser = subcommands.add_parser(
        name, help="check an intents file and say what to fix",
        description="Check an intents file beyond 'it loads': the same text in two intents "
        "(an error), near-duplicates across intents, intents a classifier confuses, patterns "
        "that look mislabelled, intents with few patterns, imbalance (warnings). Every finding "
        "is reported, then the exit code: 0 when clean or with warnings only, 2 with errors.",
        epilog=EXAMPLES)
    parser.add_argument("--data", required=True, metavar="FILE",
                        help="intents file (JSON, CSV/TSV or Rasa YAML) (required)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--near-duplicate-threshold", type=float, default=argparse.SUPPRESS,
                        metavar="X", help="cosine of two patterns of different intents that "
                        "counts as a near-duplicate (default: 0.95, "
                        "intentkit.evaluation.data_checks's)")
    return parser


def run(args):
    existing_file(args.data, "--data")
    from ..evaluation.data_checks import check_data
    given = {"near_duplicate_threshold": args.near_duplicate_threshold} if hasattr(
        args, "near_duplicate_threshold") else {}
    report = check_data(args.data, **given)
    print(json.dumps(report.to_json(), indent=2, ensure_ascii=False) if args.json
          else report.format_text())
    return report.exit_code
