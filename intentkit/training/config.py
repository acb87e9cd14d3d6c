"""Training configuration: one dataclass, filled from CLI flags and saved beside the artifacts.

It owns every default: the options' values, the `--quick` preset and the "auto" values that
follow the size of the training split.
"""
import math
import numbers
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from ..artifacts import DEFAULT_DIR, RUNS_KEPT
from ..data.intents import ON_CONFLICT
from ..errors import ConfigError

# The shipped data file: the default of `python jobs.py` only (its contract), never of the API
# or of `intentkit train`.
SHIPPED_DATA = f"{DEFAULT_DIR}/final.json"
# Enumerated options (the command line makes them argparse choices).
CHOICES = {"balance": ("upsample", "class_weight", "none"),
           "ensemble_weights": ("auto", "seed", "fitted"),
           "transformer": ("frozen", "finetune", "scratch"),
           "head": ("linear", "mlp"), "refit": ("head", "full", "off"),
           "word_vectors": ("pretrained", "scratch"), "on_conflict": ON_CONFLICT}

# Options left at 0 or "auto". Small data sets need small batches and patient early stopping of
# the ensemble members (a small validation split is noisy). The final CNN-BiLSTM keeps the
# checkpoint of its best validation loss, which moves smoothly: patience 5 instead of 10 ended
# CLINC150 10-shot's training 146 s sooner with the same test accuracy within noise (README,
# "Against strong peers"). Large data sets converge in few epochs of large batches, which keeps
# a 15,000-pattern run under 10 minutes on a laptop; tuning trials there only rank the
# configurations. The pretrained member's head is a dense layer over 384 numbers (about a second
# an epoch on 15,000 rows): it gets 60 epochs at any size. Ensemble weights are fitted on
# validation at any size (accuracy first: never below the best member there).
# The search covers every training row of a small data set, so that its winner trains on as the
# final CNN-BiLSTM instead of being trained again; above LARGE_DATA_ROWS a sample of 2,000 rows
# ranks the configurations and the winner is trained anew on all of them.
LARGE_DATA_ROWS = 8000
SMALL_DATA = {"batch_size": 64, "patience": 5, "ensemble_patience": 10, "tuning_epochs": 30,
              "tuning_max_rows": LARGE_DATA_ROWS, "epochs": 150, "ensemble_epochs": 80,
              "head_epochs": 60, "ensemble_weights": "fitted"}
LARGE_DATA = {"batch_size": 256, "patience": 3, "ensemble_patience": 3, "tuning_epochs": 10,
              "tuning_max_rows": 2000, "epochs": 20, "ensemble_epochs": 20, "head_epochs": 60,
              "ensemble_weights": "fitted"}
# --quick: a smoke run of seconds per model (flags given explicitly still apply).
# The search is off: its four models cost a graph trace each (7-9 s on a 2-core CPU, whatever the
# data's size), over half of a quick run on a small file.
QUICK = {"augmentation_factor": 1, "search": False, "tuning_epochs": 3, "tuning_patience": 2,
         "epochs": 6, "patience": 3, "ensemble_epochs": 4, "ensemble_patience": 2, "head_epochs": 4}


# The valid range of every numeric option, checked wherever a config is made (flags, config file,
# the Python API): (test, what the message says it must be). NaN fails every test.
RANGES = {
    "seed": (lambda v: v >= 0, "a whole number of at least 0"),
    "val_size": (lambda v: 0 < v < 0.5, "between 0 and 0.5"),
    "test_size": (lambda v: 0 < v < 0.5, "between 0 and 0.5"),
    "augmentation_factor": (lambda v: v >= 0, "at least 0 (0 = off)"),
    "augmentation_max_rows": (lambda v: v >= 0, "at least 0"),
    "entity_substitution": (lambda v: v >= 0, "at least 0 (0 = off)"),
    "entity_substitution_max_rows": (lambda v: v >= 0, "at least 0"),
    "keep": (lambda v: v >= 1, "at least 1"),
    "search_min_epochs": (lambda v: v >= 1, "at least 1"),
    "tuning_patience": (lambda v: v >= 1, "at least 1"),
    "label_smoothing": (lambda v: 0 <= v < 1, "from 0 up to (not including) 1"),
    "encoder_time_budget": (lambda v: v >= 0, "at least 0 seconds"),
    "fallback_coverage": (lambda v: 0 < v <= 1, "above 0 and at most 1, e.g. 0.95"),
    "fallback_margin": (lambda v: 0 <= v <= 1, "from 0 to 1 (0 = off)"),
    "embedding_cache_mb": (lambda v: v >= 0, "at least 0 (0 = no cache)"),
    **{name: (lambda v: v >= 0, "at least 1, or 0 for auto")
       for name in ("batch_size", "patience", "ensemble_patience", "tuning_epochs",
                    "tuning_max_rows", "epochs", "ensemble_epochs", "head_epochs")},
}


def _auto(name):
    """The help text's "auto" clause, from the profiles above."""
    small, large = SMALL_DATA[name], LARGE_DATA[name]
    if small == large:
        return f"auto: {small}"
    return f"auto: {small}, or {large} above {LARGE_DATA_ROWS:,} training rows"


def _option(default, help_text):
    return field(default=default, metadata={"help": help_text})


@dataclass
class TrainConfig:
    # No default file: training on the shipped tech-jobs data by accident helps no one (only
    # `python jobs.py`, whose contract it is, passes it).
    data: str = _option("", "intents file to train on: .json, .csv/.tsv (text,intent) or "
                        "Rasa .yml (required)")
    out: str = _option(DEFAULT_DIR, "directory that receives the model, pickle, plots and report")
    keep: int = _option(RUNS_KEPT, "published runs kept in OUT/.runs (the newest; the live run, "
                        "the one a rollback returns to and runs an A/B test serves are never "
                        "removed)")
    seed: int = _option(42, "seeds the split, augmentation and weight initialisation")
    val_size: float = _option(0.15, "fraction of patterns held out for validation")
    test_size: float = _option(0.15, "fraction of patterns held out for the final test")
    val_data: str = _option("", "labelled file (any --data format, or a JSON list of {text, "
                            "intent}) used as the validation split instead of carving one from "
                            "--data")
    test_data: str = _option("", "labelled file used as the test split instead of carving one "
                             "from --data (e.g. a benchmark's official test set)")
    augmentation_factor: int = _option(3, "new variants per training pattern (0 = off)")
    augmentation_max_rows: int = _option(
        5000, "skip augmentation when the training split has more rows (it pays on small data "
        "sets; on large ones it multiplies training time)")
    entity_substitution: int = _option(
        2, "variants per annotated training pattern for the entity labeller, each entity value "
        "replaced by another value of its type from the training split's annotations and the "
        "type's lookup (0 = off)")
    entity_substitution_max_rows: int = _option(
        5000, "at most this many such variants in all (the CRF's training time grows with its "
        "rows)")
    balance: str = _option("class_weight", "class_weight | upsample (the seed's) | none")
    on_conflict: str = _option(
        "drop", "a text that is a pattern of several intents: drop (from all of them, with a "
        "warning naming it) | keep-first (in the first intent only) | error (stop)")
    search: bool = _option(
        True, "search the seed's four CNN-BiLSTM configurations (--no-search: its Baseline "
        "configuration alone, as --quick does)")
    tuning_epochs: int = _option(0, "epoch limit of each tuning trial "
                                 f"(0 = {_auto('tuning_epochs')})")
    tuning_max_rows: int = _option(
        0, "tuning trials train on a stratified sample of at most this many rows; on every row, "
        "the search's winner trains on as the final CNN-BiLSTM (0 = "
        f"{_auto('tuning_max_rows')})")
    tuning_patience: int = _option(5, "early-stopping patience of tuning trials")
    search_min_epochs: int = _option(
        3, "epochs every tuning trial gets before the successive-halving search may stop it "
        "(its first rung, where the best quarter goes on; later rungs at 4x as many epochs)")
    epochs: int = _option(0, f"epoch limit of the final CNN-BiLSTM (0 = {_auto('epochs')})")
    patience: int = _option(0, "early-stopping patience of the final CNN-BiLSTM "
                            f"(0 = {_auto('patience')})")
    batch_size: int = _option(0, f"training batch size (0 = {_auto('batch_size')})")
    label_smoothing: float = _option(0.1, "label smoothing of the cross-entropy loss")
    ensemble: bool = _option(True, "also train the transformer and CNN ensemble members")
    # The ensemble member named "transformer" (the seed's name, kept in file names) is, by
    # default, the pretrained MiniLM encoder with a trained head.
    transformer: str = _option(
        "frozen", "frozen: the pretrained all-MiniLM-L6-v2 encoder with a trained head | "
        "finetune: the encoder fine-tuned on the training split first (supervised contrastive "
        "+ cosine head, --encoder-time-budget) | scratch: the seed's transformer from scratch")
    head: str = _option(
        "linear", "head of the pretrained member over the frozen sentence embeddings: linear "
        "(logistic regression, C chosen on folds of training + validation on small data) | mlp "
        "(a dense layer trained with early stopping)")
    refit: str = _option(
        "head", "after choosing on the validation split (configuration, epochs, weights, "
        "thresholds), train again on training + validation rows: head (the linear MiniLM head, "
        "seconds; it buys what a full refit buys, benchmarks/refit_modes.py) | full (every "
        "member, the token-id ones from scratch for their chosen epochs) | off")
    word_vectors: str = _option(
        "pretrained", "starting word vectors of the CNN-BiLSTM: pretrained (all-MiniLM-L6-v2's "
        "word-piece embeddings, averaged per word, then trained on) | scratch (the seed's: "
        "learned from the training split alone)")
    encoder_time_budget: int = _option(
        360, "seconds that --transformer finetune may spend fine-tuning the encoder")
    ensemble_epochs: int = _option(0, "epoch limit of the token-id ensemble members "
                                   f"(0 = {_auto('ensemble_epochs')})")
    ensemble_patience: int = _option(0, "early-stopping patience of ensemble members "
                                     f"(0 = {_auto('ensemble_patience')})")
    head_epochs: int = _option(0, "epoch limit of the pretrained member's head "
                               f"(0 = {_auto('head_epochs')})")
    ensemble_weights: str = _option(
        "auto", "seed (0.4/0.4/0.2) | fitted (best validation accuracy, then log-loss: never "
        f"below the best member on validation) | {_auto('ensemble_weights')}")
    fallback_coverage: float = _option(
        0.95, "share of correct validation answers kept above the fallback threshold")
    fallback_margin: float = _option(
        0.0, "fallback when the top two confidences are closer than this (0 = off)")
    feedback: str = _option(
        "", "JSON-lines feedback file whose confirmed rows join the training split (empty = off)")
    mixed_precision: bool = _option(
        False, "train in float16 with float32 weights and outputs (fast on recent GPUs)")
    finetune: bool = _option(
        False, "continue from the model published in --out instead of a full run: its members' "
        "output layers are fitted again (new intents learned; none may be removed)")
    tensorboard: str = _option("", "write TensorBoard logs to this directory (empty = off)")
    tracking: bool = _option(
        False, "log the run and every trial of its search to MLflow (the tracking extra); "
        "the store: --tracking-uri, else a local SQLite file in --out's .mlflow")
    tracking_uri: str = _option(
        "", "MLflow tracking URI to log to (implies --tracking; empty = --out's .mlflow/"
        "mlflow.db); unreachable: a warning, the model is published all the same")
    embedding_cache: str = _option(
        "", "directory of the sentence-embedding cache, shared by runs and cv folds (empty = "
        "--out's .cache/embeddings)")
    embedding_cache_mb: int = _option(
        256, "size bound of the sentence-embedding cache in MB; least recently used entries go "
        "past it (0 = no cache)")
    language: str = _option(
        "", "ISO 639-1 code of the training data's language, e.g. en; messages confidently in "
        "another language go to the fallback (empty = detected from the data, with the "
        "language extra)")

    def __post_init__(self):
        for name, allowed in CHOICES.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(f"--{name.replace('_', '-')} must be one of {allowed}, "
                                 f"not {getattr(self, name)!r}")
        for name, (valid, expected) in RANGES.items():
            value = getattr(self, name)
            if (isinstance(value, bool) or not isinstance(value, numbers.Real)
                    or not math.isfinite(value) or not valid(value)):
                raise ConfigError(f"--{name.replace('_', '-')} must be {expected}, not {value!r}")

    @classmethod
    def quick(cls, **options: Any) -> "TrainConfig":
        """The `--quick` preset (a smoke run of seconds per model); `options` still win."""
        return cls(**{**QUICK, **options})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def resolved(self, train_rows):
        """This config with its auto options (0 or "auto") set for a training split of that
        size; returns (config, {the values chosen})."""
        profile = LARGE_DATA if train_rows > LARGE_DATA_ROWS else SMALL_DATA
        auto = {name: value for name, value in profile.items()
                if getattr(self, name) in (0, "auto")}
        return replace(self, **auto), auto


def config_fields():
    return fields(TrainConfig)
