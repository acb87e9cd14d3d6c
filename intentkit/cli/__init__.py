"""The `intentkit` command: one subcommand per module of this package (snips-nlu's `cli/`).

`python jobs.py SUBCOMMAND ...`, `python predict.py ...` and `python -m intentkit.serve ...` are
the same commands under the project's historical names. The option conventions (one name per
concept, the deprecated spellings) are in docs/cli.md.
"""
import argparse

from .. import __version__
from . import (
    ab,
    check,
    cv,
    evaluate,
    explain,
    export,
    import_data,
    predict,
    review,
    runs,
    serve,
    train,
)
from .common import HelpFormatter, run_command, setup_logging

COMMANDS = {"train": train, "evaluate": evaluate, "predict": predict, "serve": serve,
            "import": import_data, "check": check, "cv": cv,
            "review": review, "explain": explain, "runs": runs, "ab": ab, "export": export}

EXAMPLES = """\
examples:
  intentkit check --data intents.json
  intentkit train --data intents.json -o models/bot
  intentkit predict -m models/bot "where is my order"
  intentkit serve -m models/bot --port 8000

`intentkit COMMAND --help` shows each command's options and examples."""


class _Subcommands:
    """argparse's subparsers, with the program name each one prints in its usage line, the
    help formatter of the convention and the global -v/-q (also accepted after the command)."""

    def __init__(self, action, progs):
        self.action, self.progs = action, progs

    def add_parser(self, name, **kwargs):
        command = self.action.add_parser(name, prog=self.progs.get(name),
                                         formatter_class=HelpFormatter, **kwargs)
        add_verbosity(command, argparse.SUPPRESS)
        return command


def add_verbosity(parser, default):
    loudness = parser.add_mutually_exclusive_group()
    loudness.add_argument("-v", "--verbose", action="store_true", default=default,
                          help="debug logs, and tracebacks of errors")
    loudness.add_argument("-q", "--quiet", action="store_true", default=default,
                          help="warnings and errors only")


def parser(prog="intentkit", progs=None):
    """The command line; `progs` names a subcommand's program when a script stands for it
    (predict.py for `predict`)."""
    top = argparse.ArgumentParser(prog=prog, description="An intent classifier for chatbots: "
                                  "train it, evaluate it, classify messages, serve it over HTTP.",
                                  epilog=EXAMPLES, formatter_class=HelpFormatter)
    top.add_argument("--version", action="version", version=f"intentkit {__version__}")
    add_verbosity(top, False)
    subcommands = _Subcommands(
        top.add_subparsers(dest="command", metavar="COMMAND"), progs or {})
    for name, module in COMMANDS.items():
        command = module.add_parser(subcommands, name)
        command.set_defaults(run=module.run)
    return top


def main(argv=None, prog="intentkit", progs=None):
    command_line = parser(prog, progs)
    args = command_line.parse_args(argv)
    if args.command is None:  # bare `intentkit`: the help, not an error
        command_line.print_help()
        return 0
    setup_logging(args.verbose, args.quiet)
    return run_command(lambda: args.run(args), args.verbose)
