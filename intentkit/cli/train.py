"""`intentkit train` (= `python jobs.py`): train on an intents file and publish the run."""
import argparse
import logging

from ..errors import ConfigError
from ..training.config import CHOICES, QUICK, TrainConfig, config_fields
from .common import deprecated, existing_file, import_tensorflow_for

log = logging.getLogger("intentkit")

EXAMPLES = """\
examples:
  intentkit train --data intents.json -o models/bot
  intentkit train --data intents.csv -o models/bot --quick
  intentkit train --data intents.json -o models/bot --feedback-in corrections.jsonl
  intentkit train --data intents.json -o models/bot --on-conflict keep-first"""

# Option names of the convention (docs/cli.md) where the field's own name differs, and the
# older spellings kept as hidden aliases.
FLAGS = {"out": ("-o", "--out"), "feedback": ("--feedback-in",)}
DEPRECATED = {"feedback": "--feedback"}
METAVARS = {"data": "FILE", "val_data": "FILE", "test_data": "FILE", "feedback": "FILE",
            "out": "DIR", "tensorboard": "DIR"}


def add_parser(subcommands, name):
    parser = subcommands.add_parser(
        name, help="train on an intents file and publish the model",
        description="Train the intent classifier: split first, augment the training split, tune "
        "the CNN-BiLSTM, train the ensemble, evaluate on the test split, publish the run into "
        "--out (nothing is left there if training fails).", epilog=EXAMPLES)
    return add_training_options(parser)


def add_training_options(parser):
    """Every TrainConfig option, --quick and --config (train, and cv, which trains the same)."""
    # No argparse defaults: the dataclass holds them, and flags given explicitly override --quick.
    for field in config_fields():
        flags = FLAGS.get(field.name, ("--" + field.name.replace("_", "-"),))
        help_text = field.metadata["help"]
        if field.name != "data":  # required: no default to show
            help_text += f" (default: {'none' if field.default == '' else field.default})"
        if isinstance(field.default, bool):
            parser.add_argument(*flags, dest=field.name, action=argparse.BooleanOptionalAction,
                                default=argparse.SUPPRESS, help=help_text)
        else:
            parser.add_argument(*flags, dest=field.name, type=type(field.default),
                                choices=CHOICES.get(field.name), default=argparse.SUPPRESS,
                                metavar=METAVARS.get(field.name),
                                help=help_text)
        if field.name in DEPRECATED:
            deprecated(parser, DEPRECATED[field.name], flags[0], field.name)
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run of seconds per model: few epochs, light augmentation, "
                        "no configuration search (flags given explicitly still apply)")
    parser.add_argument("--config", metavar="FILE",
                        help="read options from a .yaml/.yml/.json file (keys: the option names "
                        "above); precedence: defaults < --quick < FILE < flags given explicitly")
    return parser


def options(args):
    """The TrainConfig of the command line: defaults < --quick < --config FILE < flags; every
    path checked before anything heavy is imported."""
    from ..training.config_file import read_config_file
    given = {field.name: getattr(args, field.name) for field in config_fields()
             if hasattr(args, field.name)}
    from_file = read_config_file(existing_file(args.config, "--config")) if args.config else {}
    config = TrainConfig(**{**(QUICK if args.quick else {}), **from_file, **given})
    if not config.data:
        raise ConfigError("--data FILE is required: the intents file to train on (.json, "
                          ".csv/.tsv or Rasa .yml), e.g. `intentkit train --data intents.json "
                          "-o models/bot`")
    for name, option in (("data", "--data"), ("val_data", "--val-data"),
                         ("test_data", "--test-data"), ("feedback", "--feedback-in")):
        if getattr(config, name):
            existing_file(getattr(config, name), option)
    return config


def run(args):
    config = options(args)
    import_tensorflow_for("keras", args.verbose)
    from ..progress import terminal_logging
    from ..training.pipeline import train
    try:
        with terminal_logging():
            train(config)
    except KeyboardInterrupt:
        log.error("interrupted: nothing was published, the previous model is unchanged")
        return 130
    return 0
