"""`intentkit review`: the review queue ranked by uncertainty; labels go to the feedback file."""
import sys
from pathlib import Path

from ..data.intents import duplicate_key
from ..errors import ConfigError
from ..serving import review
from .common import deprecated, existing_file, writable_parent

SKIP, QUIT = "s", "q"
EXAMPLES = """\
examples:
  intentkit review --queue review.jsonl
  intentkit review --queue review.jsonl --label --feedback-out corrections.jsonl
  intentkit train --data intents.json -o models/bot --feedback-in corrections.jsonl"""


def add_parser(subcommands, name):
    parser = subcommands.add_parser(
        name, help="list the messages the model was unsure about; label them",
        description="List the review queue (INTENTKIT_REVIEW_LOG, see intentkit.serving.review) "
        "grouped by nearest intent, the most uncertain first. With --label, ask for each message's "
        "intent and append it to the feedback file as a confirmed row (train --feedback-in "
        "FILE).", epilog=EXAMPLES)
    parser.add_argument("--queue", required=True, metavar="FILE",
                        help="the review queue file (required)")
    parser.add_argument("--limit", type=int, default=20,
                        help="messages listed per intent (default: %(default)s)")
    parser.add_argument("--label", action="store_true",
                        help="ask for the intent of each listed message that has its text")
    parser.add_argument("--feedback-out", metavar="FILE",
                        help="JSON-lines feedback file that receives the labels (with --label)")
    deprecated(parser, "--feedback", "--feedback-out", "feedback_out", metavar="FILE")
    parser.add_argument("-m", "--model-dir", metavar="DIR",
                        help="a published run: show for each message with its text the nearest "
                        "training patterns and the words that carried the answer")
    return parser


def run(args):
    if args.label and not args.feedback_out:
        raise ConfigError("--label needs --feedback-out FILE, the file that receives the labels")
    existing_file(args.queue, "--queue")
    if args.feedback_out:
        writable_parent(args.feedback_out, "--feedback-out")
    groups = review.ranked_groups(review.read_queue(args.queue))
    labelled = already_labelled(args.feedback_out)
    listed = {intent: [row for row in rows if duplicate_key(row.get("text") or "") not in
                       labelled][:args.limit] for intent, rows in groups.items()}
    if args.model_dir:
        listed = explained(listed, args.model_dir)
    for intent, rows in listed.items():
        print(f"{intent}: {sum(row['count'] for row in groups[intent])} message(s), "
              f"{len(groups[intent])} distinct")
        for row in rows:
            print(f"  margin {row['margin']:.3f}  confidence {row['confidence']:.3f}  "
                  f"x{row['count']}  {describe(row)}")
            if "explanation" in row:
                print(describe_explanation(row["explanation"]))
    if args.label:
        label(listed, args.feedback_out)
    return 0


def already_labelled(path):
    """The texts the feedback file already has (not listed again)."""
    if not path or not Path(path).exists():
        return set()
    from ..data.feedback import read_feedback
    return {duplicate_key(row["text"]) for row in read_feedback(path)}


def explained(listed, model_dir):
    """The listed rows with their explanations by the model published in `model_dir`."""
    from .. import artifacts
    from ..serving.predictor import get_predictor
    predictor = get_predictor(f"{model_dir}/{artifacts.MODEL_FILE}",
                              f"{model_dir}/{artifacts.PREPROCESSOR_FILE}", runtime="numpy")
    return {intent: review.explain_rows(rows, predictor) for intent, rows in listed.items()}


def describe_explanation(explanation):
    """Two indented lines: the words that carried the answer, the nearest patterns."""
    words = ", ".join(f"{w['word']} {w['effect']:+.2f}" for w in explanation["words"])
    nearest = "; ".join(f"{p['intent']} {p['similarity']:.2f} {p['text']!r}"
                        for p in explanation["nearest_patterns"]) or "none stored in the run"
    return (f"      words (effect on P({explanation['answer']})): {words}\n"
            f"      nearest patterns: {nearest}")


def describe(row):
    if "text" in row:
        return repr(row["text"])
    return f"(text not stored, sha256 {row['text_sha256'][:12]})"


def label(listed, feedback_path):
    """Ask for each listed message with text; an empty answer accepts the nearest intent."""
    from ..data.feedback import record_feedback
    written = 0
    for intent, row in ((intent, row) for intent, rows in listed.items() for row in rows
                        if "text" in row):
        answer = input(f"{row['text']!r}: intent [{intent}] ({SKIP} = skip, {QUIT} = quit)? ")
        if answer.strip() == QUIT:
            break
        if answer.strip() != SKIP:
            record_feedback(feedback_path, row["text"], "fallback" if row["fallback"] else intent,
                            answer.strip() or intent, confirmed=True)
            written += 1
    print(f"{written} label(s) written to {feedback_path}", file=sys.stderr)
