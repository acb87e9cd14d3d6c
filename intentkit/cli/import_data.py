"""`intentkit import`: convert CSV/TSV or Rasa NLU data into an intents JSON file."""
import logging

log = logging.getLogger("intentkit")


def add_parser(subcommands, name):
    parser = subcommands.add_parser(
        name, help="convert CSV/TSV or Rasa NLU YAML to intents JSON",
        description="Convert a CSV/TSV of text,intent or a Rasa NLU YAML file into an intents "
        "JSON file, with the same checks as training.")
    parser.add_argument("source", help=".csv, .tsv, .yml/.yaml (Rasa NLU) or .json")
    parser.add_argument("destination", help="the intents JSON file to write")
    return parser


def run(args):
    from ..data.intents import convert
    data = convert(args.source, args.destination)
    log.info("wrote %s: %d intents, %d patterns", args.destination, len(data.tags),
             len(data.texts))
    return 0
