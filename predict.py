"""Classify messages: `from predict import predict_intent_improved`, or `python predict.py --help`
(= `intentkit predict --help`)."""
import sys

from intentkit.serving.predictor import Predictor, predict_intent_improved  # noqa: F401

if __name__ == "__main__":
    from intentkit.cli import main
    sys.exit(main(["predict", *sys.argv[1:]], progs={"predict": "predict.py"}))
