"""Retrain the intent classifier: `python jobs.py --help` (= `intentkit train --help`).

`python jobs.py SUBCOMMAND ...` is `intentkit SUBCOMMAND ...` for every subcommand
(`python jobs.py evaluate ...`, `python jobs.py import ...`); without one, it trains, by default
on the shipped filesTech/final.json (this script's contract; `intentkit train` requires --data).
"""
import sys

from intentkit.cli import COMMANDS, main
from intentkit.training.config import SHIPPED_DATA

if __name__ == "__main__":
    argv = sys.argv[1:]
    if not (argv[:1] and argv[0] in COMMANDS):
        given = {arg.split("=")[0] for arg in argv}
        argv = ["train", *([] if given & {"--data", "--config", "-h", "--help"}
                           else ["--data", SHIPPED_DATA]), *argv]
    sys.exit(main(argv, prog="jobs.py", progs={"train": "jobs.py"}))
