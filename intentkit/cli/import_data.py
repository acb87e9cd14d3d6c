"""`intentkit import`: convert CSV/TSV or Rasa NLU data into an intents JSON file."""
import argparse
import logging

from ..errors import ConfigError
from .common import existing_file, writable_parent

log = logging.getLogger("intentkit")

EXAMPLES = """\
examples:
  intentkit import --data faq.csv -o intents.json
  intentkit import --data nlu.yml -o intents.json"""


def add_parser(subcommands, name):
    parser = subcommands.add_parser(
        name, help="convert CSV/TSV or Rasa NLU YAML to intents JSON",
        description="Convert a CSV/TSV of text,intent or a Rasa NLU YAML file into an intents "
        "JSON file, with the same checks as training.", epilog=EXAMPLES)
    parser.add_argument("--data", metavar="FILE",
                        help=".csv, .tsv, .yml/.yaml (Rasa NLU) or .json to convert (required)")
    parser.add_argument("-o", "--out", metavar="FILE",
                        help="the intents JSON file to write (required)")
    # The older spelling: two positionals, SOURCE DESTINATION.
    parser.add_argument("positionals", nargs="*", help=argparse.SUPPRESS)
    return parser


def run(args):
    source, destination = args.data, args.out
    if args.positionals:
        if len(args.positionals) != 2 or source or destination:
            raise ConfigError("give --data FILE -o FILE (the positional SOURCE DESTINATION "
                              "form takes exactly two paths and no options)")
        log.warning("`intentkit import SOURCE DESTINATION` is deprecated; use `intentkit "
                    "import --data SOURCE -o DESTINATION`")
        source, destination = args.positionals
    if not source or not destination:
        raise ConfigError("--data FILE and -o/--out FILE are required, e.g. `intentkit import "
                          "--data faq.csv -o intents.json`")
    existing_file(source, "--data")
    writable_parent(destination, "-o/--out")
    from ..data.intents import convert
    data = convert(source, destination)
    log.info("wrote %s: %d intents, %d patterns", destination, len(data.tags), len(data.texts))
    return 0
