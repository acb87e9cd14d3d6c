"""`intentkit train` (= `python jobs.py`): train on an intents file and publish the run."""
import argparse
import logging

from ..training.config import QUICK, TrainConfig, config_fields
from .common import import_tensorflow_for

log = logging.getLogger("intentkit")


def add_parser(subcommands, name):
    parser = subcommands.add_parser(
        name, help="train on an intents file and publish the model",
        description="Train the intent classifier: split first, augment the training split, tune "
        "the CNN-BiLSTM, train the ensemble, evaluate on the test split, publish the run.")
    return add_training_options(parser)


def add_training_options(parser):
    """Every TrainConfig option, --quick and --config (train, and cv, which trains the same)."""
    # No argparse defaults: the dataclass holds them, and flags given explicitly override --quick.
    for field in config_fields():
        flag = "--" + field.name.replace("_", "-")
        help_text = f"{field.metadata['help']} (default: {field.default})"
        if isinstance(field.default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction,
                                default=argparse.SUPPRESS, help=help_text)
        else:
            parser.add_argument(flag, type=type(field.default), default=argparse.SUPPRESS,
                                help=help_text)
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run of seconds per model: few epochs, light augmentation "
                        "(flags given explicitly still apply)")
    parser.add_argument("--config", metavar="FILE",
                        help="read options from a .yaml/.yml/.json file (keys: the option names "
                        "above); precedence: defaults < --quick < FILE < flags given explicitly")
    return parser


def options(args):
    """The TrainConfig of the command line: defaults < --quick < --config FILE < flags."""
    from ..training.config_file import read_config_file
    given = {field.name: getattr(args, field.name) for field in config_fields()
             if hasattr(args, field.name)}
    from_file = read_config_file(args.config) if args.config else {}
    return TrainConfig(**{**(QUICK if args.quick else {}), **from_file, **given})


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
