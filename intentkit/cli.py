"""Command lines of `jobs.py` (train, evaluate) and `predict.py` (one text, a file, a shell)."""
import argparse
import json
import logging
import sys

from .config import TrainConfig, config_fields

log = logging.getLogger("intentkit")

QUICK = {"augmentation_factor": 1, "tuning_epochs": 3, "tuning_patience": 2, "epochs": 6,
         "patience": 3, "ensemble_epochs": 4, "ensemble_patience": 2}


def _setup_logging(verbose):
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(message)s" if verbose
                        else "%(message)s", datefmt="%H:%M:%S")
    if not verbose:
        for noisy in ("absl", "tensorflow", "matplotlib", "h5py"):
            logging.getLogger(noisy).setLevel(logging.ERROR)


def _run(function, verbose):
    """Run a command: user errors become one clear line and exit code 2, never a traceback."""
    from .artifacts import ArtifactError
    from .data import DataError
    from .pretrained import PretrainedUnavailable
    try:
        return function()
    except KeyboardInterrupt:
        log.error("interrupted: nothing was published, the previous model is unchanged")
        return 130
    except (DataError, ArtifactError, PretrainedUnavailable, ValueError, OSError) as error:
        if verbose:
            log.exception("error")
        else:
            log.error("error: %s", error)
        return 2


def _train_parser():
    parser = argparse.ArgumentParser(
        prog="jobs.py", description="Train the intent classifier: split first, augment the "
        "training split, tune the CNN-BiLSTM, train the ensemble, evaluate on the test split. "
        "`jobs.py evaluate --help` scores a saved model; `jobs.py import --help` converts CSV/TSV "
        "or Rasa NLU data to intents JSON.")
    # No argparse defaults: the dataclass holds them, and flags given explicitly override --quick.
    for field in config_fields():
        flag = "--" + field.name.replace("_", "-")
        if isinstance(field.default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction,
                                default=argparse.SUPPRESS,
                                help=f"{field.metadata['help']} (default: {field.default})")
        else:
            parser.add_argument(flag, type=type(field.default), default=argparse.SUPPRESS,
                                help=f"{field.metadata['help']} (default: {field.default})")
    parser.add_argument("--quick", action="store_true",
                        help="a fast smoke run: few epochs, light augmentation (flags given "
                        "explicitly still apply)")
    parser.add_argument("--config", metavar="FILE",
                        help="read options from a .yaml/.yml/.json file (keys: the option names "
                        "above); precedence: defaults < --quick < FILE < flags given explicitly")
    parser.add_argument("--verbose", action="store_true", help="debug logs and tracebacks")
    return parser


def _evaluate_parser():
    parser = argparse.ArgumentParser(
        prog="jobs.py evaluate", description="Score a saved model on labelled data and write "
        "the report (metrics.json, classification report, plots, errors.csv, summary.md).")
    parser.add_argument("--data", required=True, help="intents JSON, or a JSON list of "
                        '{"text": ..., "intent": ...}')
    parser.add_argument("--model-dir", default="filesTech", help="directory of the artifacts")
    parser.add_argument("--report", default=None, help="report directory "
                        "(default: MODEL_DIR/report-evaluate)")
    parser.add_argument("--verbose", action="store_true", help="debug logs and tracebacks")
    return parser


def train_main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["evaluate"]:
        return evaluate_main(argv[1:])
    if argv[:1] == ["import"]:
        return import_main(argv[1:])
    args = vars(_train_parser().parse_args(argv))
    quick, verbose, config_file = args.pop("quick"), args.pop("verbose"), args.pop("config")
    _setup_logging(verbose)

    def run():
        from .config_file import read_config_file
        from_file = read_config_file(config_file) if config_file else {}
        config = TrainConfig(**{**(QUICK if quick else {}), **from_file, **args})
        from .train import train
        train(config)
        return 0
    return _run(run, verbose)


def evaluate_main(argv):
    args = _evaluate_parser().parse_args(argv)
    _setup_logging(args.verbose)

    def run():
        from .evaluate import evaluate_saved
        for name, m in evaluate_saved(args.model_dir, args.data, args.report).items():
            log.info("%-8s accuracy %.4f  macro-F1 %.4f  (%d patterns)", name, m["accuracy"],
                     m["macro_f1"], m["n"])
        return 0
    return _run(run, args.verbose)


def import_main(argv):
    parser = argparse.ArgumentParser(
        prog="jobs.py import", description="Convert a CSV/TSV of text,intent or a Rasa NLU YAML "
        "file into an intents JSON file, with the same checks as training.")
    parser.add_argument("source", help=".csv, .tsv, .yml/.yaml (Rasa NLU) or .json")
    parser.add_argument("destination", help="the intents JSON file to write")
    parser.add_argument("--verbose", action="store_true", help="debug logs and tracebacks")
    args = parser.parse_args(argv)
    _setup_logging(args.verbose)

    def run():
        from .importers import convert
        data = convert(args.source, args.destination)
        log.info("wrote %s: %d intents, %d patterns", args.destination, len(data.tags),
                 len(data.texts))
        return 0
    return _run(run, args.verbose)


def add_model_arguments(parser):
    """--model, --preprocessor, --ensemble, --runtime: which trained model answers, and how
    (predict.py and the HTTP service)."""
    from .predict import DEFAULT_MODEL_PATH, DEFAULT_PREPROCESSOR_PATH, RUNTIMES
    parser.add_argument("--model", default=DEFAULT_MODEL_PATH)
    parser.add_argument("--preprocessor", default=DEFAULT_PREPROCESSOR_PATH)
    parser.add_argument("--ensemble", action="store_true", help="use the ensemble")
    parser.add_argument("--runtime", choices=RUNTIMES, default="keras",
                        help="numpy: same answers without importing TensorFlow (fast start)")


def predict_main(argv=None):
    parser = argparse.ArgumentParser(
        prog="predict.py", description="Classify messages with a trained model. With TEXT, one "
        "message; with --file, one message per line (JSON lines out); with neither, a shell.")
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
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    if (args.correct is None) != (args.feedback_file is None) or (
            args.correct is not None and args.text is None):
        parser.error("--correct INTENT and --feedback-file FILE go together, with one TEXT")
    _setup_logging(args.verbose)

    def run():
        from .predict import get_predictor
        from .runtime import import_tensorflow_quietly
        if args.runtime == "keras":
            import_tensorflow_quietly(verbose=args.verbose)
        predictor = get_predictor(args.model, args.preprocessor, args.ensemble, args.runtime)

        def answer(texts):
            for result in predictor.predict_batch(texts, args.top_k, args.threshold,
                                                  args.margin):
                print(json.dumps(result, ensure_ascii=False))
        if args.correct is not None:
            from .feedback import record_feedback
            result = predictor.predict(args.text, args.top_k, args.threshold, args.margin)
            row = record_feedback(args.feedback_file, args.text, result["intent"], args.correct,
                                  predictor.labels, predictor.run_info["run"])
            print(json.dumps(row, ensure_ascii=False))
        elif args.text is not None:
            answer([args.text])
        elif args.file:
            stream = sys.stdin if args.file == "-" else open(args.file, encoding="utf-8")
            with stream:
                answer([line.rstrip("\n") for line in stream if line.strip()])
        else:
            print("Type a message (empty line or Ctrl-D to quit).")
            for line in iter(lambda: input("> "), ""):
                result = predictor.predict(line, args.top_k, args.threshold, args.margin)
                ranked = ", ".join(f"{c['intent']} {c['confidence']:.2f}" for c in result["top_k"])
                print(f"{result['intent']}  ({ranked})")
        return 0
    try:
        return _run(run, args.verbose)
    except EOFError:
        return 0
