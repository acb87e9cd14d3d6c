"""`intentkit predict` (= `python predict.py`): classify one message, a file, or a shell."""
import json
import sys

from ..errors import ConfigError, DataError
from .common import add_model_arguments, import_tensorflow_for, model_paths


def add_parser(subcommands, name):
    parser = subcommands.add_parser(
        name, help="classify messages with a published model",
        description="Classify messages with a trained model. With TEXT, one message; with "
        "--file, one message per line (JSON lines out); with neither, a shell.")
    parser.add_argument("text", nargs="?", help="the message to classify")
    parser.add_argument("--file", help="a text file, one message per line ('-' = stdin)")
    add_model_arguments(parser)
    parser.add_argument("--top-k", type=int, default=3)
    parser.add_argument("--threshold", type=float, default=None,
                        help="fallback confidence threshold (default: the trained one)")
    parser.add_argument("--margin", type=float, default=None,
                        help="fallback when the top two are closer than this (default: trained)")
    parser.add_argument("--correct", metavar="INTENT", help="record that TEXT's right intent "
                        "is INTENT (with the prediction) in --feedback-file, for retraining")
    parser.add_argument("--feedback-file", help="JSON-lines file that --correct appends to")
    return parser


def _open_messages(path):
    if path == "-":
        return sys.stdin
    try:
        return open(path, encoding="utf-8")  # noqa: SIM115 (closed by the caller)
    except OSError as error:
        raise DataError(f"{path}: cannot read the file ({error.strerror}).") from None


def run(args):
    if (args.correct is None) != (args.feedback_file is None) or (
            args.correct is not None and args.text is None):
        raise ConfigError("--correct INTENT and --feedback-file FILE go together, with one TEXT")
    import_tensorflow_for(args.runtime, args.verbose)
    from ..predict import get_predictor
    predictor = get_predictor(*model_paths(args), args.use_ensemble, args.runtime)

    def answer(texts):
        for result in predictor.predict_batch(texts, args.top_k, args.threshold, args.margin):
            print(json.dumps(result, ensure_ascii=False))
    if args.correct is not None:
        from ..feedback import record_feedback
        result = predictor.predict(args.text, args.top_k, args.threshold, args.margin)
        try:
            row = record_feedback(args.feedback_file, args.text, result["intent"], args.correct,
                                  predictor.labels, predictor.run_info["run"])
        except (TypeError, ValueError) as error:
            raise DataError(f"--correct: {error}") from None
        except OSError as error:
            raise DataError(f"{args.feedback_file}: cannot write ({error.strerror})") from None
        print(json.dumps(row, ensure_ascii=False))
    elif args.text is not None:
        answer([args.text])
    elif args.file:
        with _open_messages(args.file) as stream:
            answer([line.rstrip("\n") for line in stream if line.strip()])
    else:
        print("Type a message (empty line or Ctrl-D to quit).")
        try:
            for line in iter(lambda: input("> "), ""):
                result = predictor.predict(line, args.top_k, args.threshold, args.margin)
                ranked = ", ".join(f"{c['intent']} {c['confidence']:.2f}"
                                   for c in result["top_k"])
                print(f"{result['intent']}  ({ranked})")
        except EOFError:
            pass
    return 0
