"""Classify messages: `from predict import predict_intent_improved`, or `python predict.py --help`."""
import sys

from intentkit.runtime import import_tensorflow_quietly

import_tensorflow_quietly(verbose="--verbose" in sys.argv)

from intentkit.predict import Predictor, predict_intent_improved  # noqa: E402,F401

if __name__ == "__main__":
    from intentkit.cli import predict_main
    sys.exit(predict_main())
