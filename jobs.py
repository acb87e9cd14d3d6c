"""Retrain the intent classifier: `python jobs.py --help` (= `intentkit train --help`).

`python jobs.py SUBCOMMAND ...` is `intentkit SUBCOMMAND ...` for every subcommand
(`python jobs.py evaluate ...`, `python jobs.py import ...`); without one, it trains.
"""
import sys

from intentkit.cli import COMMANDS, main

if __name__ == "__main__":
    argv = sys.argv[1:]
    sys.exit(main(argv if argv[:1] and argv[0] in COMMANDS else ["train", *argv],
                  prog="jobs.py", progs={"train": "jobs.py"}))
