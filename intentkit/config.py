"""Training configuration: one dataclass, filled from CLI flags and saved beside the artifacts."""
from dataclasses import asdict, dataclass, field, fields


def _option(default, help_text):
    return field(default=default, metadata={"help": help_text})


@dataclass
class TrainConfig:
    data: str = _option("filesTech/final.json",
                        "intents file to train on: .json, .csv/.tsv (text,intent) or Rasa .yml")
    out: str = _option("filesTech", "directory that receives the model, pickle, plots and report")
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
    balance: str = _option("class_weight", "class_weight | upsample (the seed's) | none")
    tuning_epochs: int = _option(0, "epoch limit of each tuning trial (0 = auto: 30, or 10 above "
                                 "8,000 training rows)")
    tuning_max_rows: int = _option(
        2000, "tuning trials train on a stratified sample of at most this many rows")
    tuning_patience: int = _option(5, "early-stopping patience of tuning trials")
    epochs: int = _option(0, "epoch limit of the final CNN-BiLSTM (0 = auto: 150, or 20 above "
                          "8,000 training rows)")
    patience: int = _option(0, "early-stopping patience of the final CNN-BiLSTM (0 = auto: 10, "
                            "or 3 above 8,000 training rows, whose validation split is steady)")
    batch_size: int = _option(0, "training batch size (0 = auto: 64, or 256 above 8,000 training "
                              "rows)")
    label_smoothing: float = _option(0.1, "label smoothing of the cross-entropy loss")
    ensemble: bool = _option(True, "also train the transformer and CNN ensemble members")
    transformer: str = _option(
        "minilm", "minilm: pretrained all-MiniLM-L6-v2 encoder (frozen) with a trained head | "
        "scratch: the seed's transformer trained from scratch")
    ensemble_epochs: int = _option(0, "epoch limit of each ensemble member (0 = auto: 80, or 20 "
                                   "above 8,000 training rows)")
    ensemble_patience: int = _option(0, "early-stopping patience of ensemble members (0 = auto, "
                                     "as --patience)")
    ensemble_weights: str = _option(
        "auto", "seed (0.4/0.4/0.2) | fitted (best log-loss on val) | auto: seed, or fitted "
        "above 8,000 training rows, where the validation split is large enough to fit them")
    fallback_coverage: float = _option(
        0.95, "share of correct validation answers kept above the fallback threshold")
    fallback_margin: float = _option(
        0.0, "fallback when the top two confidences are closer than this (0 = off)")
    feedback: str = _option(
        "", "JSON-lines feedback file whose confirmed rows join the training split (empty = off)")
    mixed_precision: bool = _option(
        False, "train in float16 with float32 weights and outputs (fast on recent GPUs)")
    finetune: bool = _option(
        False, "continue from the model published in --out (same labels) instead of a full run")
    tensorboard: str = _option("", "write TensorBoard logs to this directory (empty = off)")

    def __post_init__(self):
        choices = {"balance": ("upsample", "class_weight", "none"),
                   "ensemble_weights": ("auto", "seed", "fitted"),
                   "transformer": ("minilm", "scratch")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"--{name.replace('_', '-')} must be one of {allowed}, "
                                 f"not {getattr(self, name)!r}")
        for name in ("val_size", "test_size"):
            if not 0 < getattr(self, name) < 0.5:
                raise ValueError(f"--{name.replace('_', '-')} must be between 0 and 0.5")
        for name in ("batch_size", "patience", "ensemble_patience", "tuning_epochs", "epochs",
                     "ensemble_epochs"):
            if getattr(self, name) < 0:
                raise ValueError(f"--{name.replace('_', '-')} must be at least 1, or 0 for auto")
        for name in ("tuning_max_rows",):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be at least 1")

    def to_dict(self):
        return asdict(self)


def config_fields():
    return fields(TrainConfig)
