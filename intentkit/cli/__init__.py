"""The `intentkit` command: one subcommand per module of this package (snips-nlu's `cli/`).

`python jobs.py SUBCOMMAND ...`, `python predict.py ...` and `python -m intentkit.serve ...` are
the same commands under the project's historical names.
"""
import argparse

from . import ab, check, cv, evaluate, import_data, predict, review, runs, serve, train
from .common import run_command, setup_logging

COMMANDS = {"train": train, "evaluate": evaluate, "predict": predict, "serve": serve,
            "import": import_data, "check": check, "cv": cv,
            "review": review, "runs": runs, "ab": ab}


class _Subcommands:
    """argparse's subparsers, with the program name each one prints in its usage line."""

    def __init__(self, action, progs):
        self.action, self.progs = action, progs

    def add_parser(self, name, **kwargs):
        return self.action.add_parser(name, prog=self.progs.get(name), **kwargs)


def parser(prog="intentkit", progs=None):
    """The command line; `progs` names a subcommand's program when a script stands for it
    (predict.py for `predict`)."""
    top = argparse.ArgumentParser(prog=prog, description="An intent classifier for chatbots: "
                                  "train it, evaluate it, classify messages, serve it over HTTP.")
    subcommands = _Subcommands(
        top.add_subparsers(dest="command", required=True, metavar="COMMAND"), progs or {})
    for name, module in COMMANDS.items():
        command = module.add_parser(subcommands, name)
        command.add_argument("--verbose", action="store_true",
                             help="debug logs, and tracebacks of errors")
        command.set_defaults(run=module.run)
    return top


def main(argv=None, prog="intentkit", progs=None):
    args = parser(prog, progs).parse_args(argv)
    setup_logging(args.verbose)
    return run_command(lambda: args.run(args), args.verbose)
