"""`intentkit predict` (= `python predict.py`): classify one message, a file, or a shell."""
import contextlib
import json
import sys
import time

from ..data.intents import MAX_PATTERN_CHARS
from ..errors import ConfigError, DataError
from ..progress import Progress, on_terminal
from .common import (
    add_model_arguments,
    deprecated,
    existing_file,
    existing_model_dir,
    import_tensorflow_for,
    model_paths,
    writable_parent,
)

EXAMPLES = """\
examples:
  intentkit predict -m models/bot "where is my order"
  intentkit predict -m models/bot --file messages.txt -o answers.jsonl
  intentkit predict -m models/bot "wher is my ordr" --correct track_order --feedback-out fb.jsonl
  intentkit predict -m models/bot            (a shell: type messages)
  intentkit predict -m models/bot --spark --file chats.parquet -o labelled.parquet"""

# Off a terminal, progress is a log line: one every so many seconds, not one per chunk.
LOG_EVERY_S = 30
# The models read far less than this of a message (Predictor cuts each one to what they read):
# a longer line is read up to here and the rest skipped in chunks, so that one line of 50 MB
# costs neither minutes nor gigabytes.
MAX_LINE_CHARS = MAX_PATTERN_CHARS
SKIP_CHUNK_CHARS = 1 << 20


def add_parser(subcommands, name):
    parser = subcommands.add_parser(
        name, help="classify messages with a published model",
        description="Classify messages with a trained model. With TEXT, one message; with "
        "--file, one message per line (JSON lines out); with neither, a shell. Each answer "
        "carries a `response` from the intents file.", epilog=EXAMPLES)
    parser.add_argument("text", nargs="?", help="the message to classify")
    parser.add_argument("--file", metavar="FILE", help="a text file, one message per line "
                        "('-' = stdin); answered in chunks on both cores, JSON lines out in "
                        "input order")
    parser.add_argument("-o", "--out", metavar="FILE", help="write the JSON lines of --file "
                        "there (default: standard output)")
    add_model_arguments(parser)
    parser.add_argument("--top-k", type=int, default=3, help="candidates listed in top_k")
    parser.add_argument("--threshold", type=float, default=None,
                        help="fallback confidence threshold (default: the trained one)")
    parser.add_argument("--margin", type=float, default=None,
                        help="fallback when the top two are closer than this (default: trained)")
    parser.add_argument("--correct", metavar="INTENT", help="record that TEXT's right intent "
                        "is INTENT (with the prediction) in --feedback-out, for retraining")
    parser.add_argument("--feedback-out", metavar="FILE",
                        help="JSON-lines file that --correct appends to")
    deprecated(parser, "--feedback-file", "--feedback-out", "feedback_out", metavar="FILE")
    spark = parser.add_argument_group("Spark (extra `spark`: docs/export.md)")
    spark.add_argument("--spark", action="store_true", help="label --file (Parquet, CSV with a "
                       "header, JSON lines or text) with Spark into -o/--out (.parquet, .csv "
                       "or .jsonl: a Spark output directory)")
    spark.add_argument("--master", help="--spark: the Spark master (default: the one "
                       "spark-submit was given, else local[2])")
    spark.add_argument("--executor-model-dir", metavar="DIR", help="--spark: where executors "
                       "already find the run (spark-submit --archives run.tar.gz#run: DIR run); "
                       "nothing is shipped (default: ship --model-dir with the job)")
    spark.add_argument("--text-column", default="text", help="--spark: the column to label "
                       "(default: text; a text file's lines are it)")
    return parser


def _open_messages(path):
    if path == "-":
        return sys.stdin
    try:
        return open(path, encoding="utf-8")
    except OSError as error:
        raise DataError(f"{path}: cannot read the file ({error.strerror}).") from None


def _messages(stream, path):
    """The non-blank lines of `stream`, each cut at MAX_LINE_CHARS; DataError for text that is
    not UTF-8 (UTF-16, binary data), naming the line."""
    number = 0
    try:
        while line := stream.readline(MAX_LINE_CHARS + 1):
            number += 1
            if len(line) > MAX_LINE_CHARS and not line.endswith("\n"):
                line = line[:MAX_LINE_CHARS]
                # The rest of the line, read and dropped a chunk at a time.
                while (rest := stream.readline(SKIP_CHUNK_CHARS)) and not rest.endswith("\n"):
                    pass
            if "\x00" in line:
                raise DataError(f"{path}: line {number} holds NUL characters: this is UTF-16 or "
                                "binary data, not text. Save the messages as UTF-8 text, one a "
                                "line.")
            if line.strip():
                yield line.rstrip("\r\n")
    except UnicodeDecodeError as error:
        raise DataError(f"{path}: line {number + 1} is not UTF-8 text ({error.reason} at byte "
                        f"{error.start} of its chunk): UTF-16 or binary data? Save the messages "
                        "as UTF-8 text, one a line.") from None


def _count_messages(path):
    """Non-blank lines of a file, for the ETA (None for stdin, which can be read only once)."""
    if path == "-":
        return None
    count, has_words = 0, False
    with open(path, "rb") as file:
        # In chunks, not lines: a line of 50 MB is never held whole.
        while chunk := file.read(SKIP_CHUNK_CHARS):
            for part in chunk.split(b"\n")[:-1]:
                count += has_words or bool(part.strip())
                has_words = False
            has_words = has_words or bool(chunk.rsplit(b"\n", 1)[-1].strip())
    return count + has_words


def _answer_stream(predictor, stream, total, args, output=sys.stdout):
    """JSON lines of the non-blank lines of `stream`, in order, read lazily chunk by chunk."""
    texts = _messages(stream, stream.name if stream is not sys.stdin else "stdin")
    results = predictor.predict_stream(texts, args.top_k, args.threshold, args.margin)
    progress = Progress("predict", total, unit="msg")
    started = last = time.monotonic()
    done = reported = 0
    try:
        for result in results:
            output.write(json.dumps(result, ensure_ascii=False) + "\n")
            done += 1
            now = time.monotonic()
            if done % 1000 == 0 and (on_terminal() or now - last >= LOG_EVERY_S):
                progress.update(done - reported, _rate_and_eta(done, total, now - started))
                reported, last = done, now
        progress.update(done - reported, _rate_and_eta(done, total, time.monotonic() - started))
    finally:
        progress.close()


def _rate_and_eta(done, total, seconds):
    rate = done / max(seconds, 1e-9)
    if not total:
        return f"{done:,} messages, {rate:,.0f}/s"
    return (f"{done:,}/{total:,} messages, {rate:,.0f}/s, "
            f"ETA {max(total - done, 0) / max(rate, 1e-9):,.0f} s")


def _run_spark(args):
    if not args.file or not args.out or args.text is not None or args.file == "-":
        raise ConfigError("--spark labels a file: give --file IN and -o/--out OUT, no TEXT")
    if args.correct is not None or args.feedback_out is not None:
        raise ConfigError("--correct and --feedback-out record one TEXT's correction; they do "
                          "not go with --spark")
    if getattr(args, "model", None) or getattr(args, "preprocessor", None):
        raise ConfigError("--spark ships a whole published run: use -m/--model-dir, not "
                          "--model/--preprocessor")
    # Every path and the Java runtime checked before a JVM starts (tens of seconds).
    from ..serving import spark
    if args.executor_model_dir is None:
        existing_model_dir(args.model_dir)
    spark.check_files(args.file, args.out)
    spark.check_java()
    import warnings

    from pyspark.sql import SparkSession
    # pyspark 4.3 warns on every DataFrame-to-pandas step that pandas 3 is "not yet fully
    # supported"; intentkit's use of it is tested (docs/export.md): not the user's concern.
    warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas",
                            category=FutureWarning)
    # In a process that already has a session (a notebook, the tests), that one is used and
    # left running; a session started here is stopped here.
    started_here = SparkSession.getActiveSession() is None
    session = spark.session(args.master, quiet=not args.verbose)
    answering = spark.Answering(args.top_k, args.threshold, args.margin, args.use_ensemble,
                                args.runtime)
    try:
        rows = spark.predict_file(session, args.file, args.out,
                                  args.executor_model_dir or args.model_dir, args.text_column,
                                  ship=args.executor_model_dir is None, answering=answering)
    finally:
        if started_here:
            session.stop()
    print(json.dumps({"rows": rows, "out": args.out}))
    return 0


def run(args):
    if args.spark:
        return _run_spark(args)
    if (args.correct is None) != (args.feedback_out is None) or (
            args.correct is not None and args.text is None):
        raise ConfigError("--correct INTENT and --feedback-out FILE go together, with one TEXT")
    if args.out and not args.file:
        raise ConfigError("-o/--out FILE receives the answers of --file FILE; one TEXT is "
                          "answered on standard output")
    # Every path checked before the model (and perhaps TensorFlow) loads.
    paths = model_paths(args)
    if args.file and args.file != "-":
        existing_file(args.file, "--file")
    for path, option in ((args.out, "-o/--out"), (args.feedback_out, "--feedback-out")):
        if path:
            writable_parent(path, option)
    import_tensorflow_for(args.runtime, args.verbose)
    from ..serving.predictor import get_predictor
    predictor = get_predictor(*paths, args.use_ensemble, args.runtime,
                              cache_size=args.cache_size)
    if args.correct is not None:
        from ..data.feedback import record_feedback
        result = predictor.predict(args.text, args.top_k, args.threshold, args.margin)
        try:
            row = record_feedback(args.feedback_out, args.text, result["intent"], args.correct,
                                  predictor.labels, predictor.run_info["run"])
        except (TypeError, ValueError) as error:
            raise DataError(f"--correct: {error}") from None
        except OSError as error:
            raise DataError(f"{args.feedback_out}: cannot write ({error.strerror})") from None
        print(json.dumps(row, ensure_ascii=False))
    elif args.text is not None:
        print(json.dumps(predictor.predict(args.text, args.top_k, args.threshold, args.margin),
                         ensure_ascii=False))
    elif args.file:
        with (_open_messages(args.file) as stream,
              open(args.out, "w", encoding="utf-8") if args.out
              else contextlib.nullcontext(sys.stdout) as output):
            _answer_stream(predictor, stream, _count_messages(args.file), args, output)
    else:
        print("Type a message (empty line or Ctrl-D to quit).")
        try:
            for line in iter(lambda: input("> "), ""):
                result = predictor.predict(line, args.top_k, args.threshold, args.margin)
                ranked = ", ".join(f"{c['intent']} {c['confidence']:.2f}"
                                   for c in result["top_k"])
                found = ", ".join(f"{e['entity']}={e['value']!r}" for e in result["entities"])
                print(f"{result['intent']}  ({ranked})"
                      + (f"\n  entities: {found}" if found else "")
                      + (f"\n  {result['response']}" if result.get("response") else ""))
        except EOFError:
            pass
    return 0
