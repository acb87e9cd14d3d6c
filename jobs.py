"""Retrain the intent classifier: `python jobs.py --help`."""
import sys

from intentkit.runtime import import_tensorflow_quietly

import_tensorflow_quietly(verbose="--verbose" in sys.argv)

from intentkit.cli import train_main  # noqa: E402

if __name__ == "__main__":
    sys.exit(train_main())
