"""`intentkit runs list|show|promote|rollback|prune`: the versions of a published model."""
import json

from .. import artifacts
from .common import HelpFormatter, add_model_dir, existing_model_dir, positive

EXAMPLES = """\
examples:
  intentkit runs list -m models/bot
  intentkit runs show -m models/bot 20261206T101500123456-1a2b3c4d
  intentkit runs promote -m models/bot 20261206T101500123456-1a2b3c4d
  intentkit runs rollback -m models/bot
  intentkit runs prune -m models/bot --keep 5

Serving workers reload the live run within a second (docs/lifecycle.md)."""


def add_parser(subcommands, name):
    parser = subcommands.add_parser(
        name, help="list the published versions of a model, promote one, roll back",
        description="Versions of a published model (OUT/.runs/): list them, show one, make one "
        "live (serving workers reload it within a second), go back to the run live before.",
        epilog=EXAMPLES)
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    for action, help_text in (("list", "every kept run: id, date, data, model, accuracy, live"),
                              ("show", "one run's manifest summary and model card"),
                              ("promote", "make run ID the live run (verified first)"),
                              ("rollback", "make the run live before the current one live again"),
                              ("prune", "remove runs beyond the --keep newest")):
        sub = actions.add_parser(action, help=help_text, description=help_text,
                                 formatter_class=HelpFormatter)
        add_model_dir(sub)
        if action in ("show", "promote"):
            sub.add_argument("run_id", metavar="ID", help="a run id of `intentkit runs list` "
                             "(or `current`)")
        if action in ("list", "show"):
            sub.add_argument("--json", action="store_true", help="print JSON")
        if action == "prune":
            sub.add_argument("--keep", type=positive, default=artifacts.RUNS_KEPT, metavar="N",
                             help=f"runs to keep (default: {artifacts.RUNS_KEPT}); the live "
                             "run, the rollback target and pinned runs always stay")
    return parser


def _percent(value):
    return "-" if value is None else f"{100 * value:.2f} %"


def run(args):
    from ..artifacts import runs as versions
    out = args.model_dir
    existing_model_dir(out)
    if args.action == "list":
        rows = versions.list_runs(out)
        if args.json:
            print(json.dumps(rows, indent=2))
        elif not rows:
            print(f"{out}: no published runs")
        else:
            print(f"{'':2}{'ID':<32}{'CREATED':<27}{'MODEL':<10}{'TEST ACC':>10}  DATA")
            for row in reversed(rows):
                mark = "*" if row["live"] else "p" if row["pinned"] else " "
                print(f"{mark:<2}{row['id']:<32}{row['created'] or '-':<27}"
                      f"{row['default_model'] or '-':<10}{_percent(row['test_accuracy']):>10}  "
                      f"{row['data'] or '-'}")
            print("* live   p: pinned by a serving process (A/B variant)")
    elif args.action == "show":
        run_id = versions.run_directory(out, args.run_id).name
        manifest = versions.manifest_of(out, run_id)
        summary = {**versions.describe(out, run_id, manifest),
                   "labels": manifest.get("labels"), "metrics": manifest.get("metrics"),
                   "fallback_thresholds": manifest.get("fallback_thresholds"),
                   "command_line": manifest.get("command_line")}
        if args.json:
            print(json.dumps(summary, indent=2))
        else:
            for key, value in summary.items():
                print(f"{key}: {json.dumps(value) if isinstance(value, (dict, list)) else value}")
            card = versions.run_directory(out, run_id) / artifacts.MODEL_CARD_FILE
            if card.is_file():
                print()
                print(card.read_text(encoding="utf-8"))
    elif args.action == "promote":
        print(f"live: {versions.promote(out, args.run_id)}")
    elif args.action == "rollback":
        print(f"live: {versions.rollback(out)}")
    else:
        removed = versions.prune(out, args.keep)
        print(f"removed {len(removed)} run(s){': ' + ', '.join(removed) if removed else ''}")
    return 0
