"""`--finetune`: continue from the published model after a small data change (same labels).

The published preprocessor (vocabulary, sequence length) and best configuration are reused, so
tuning is skipped; each published member continues from its weights for a fifth of the full
run's epoch limit at a tenth of its learning rate. Words that are new in the data map to the
out-of-vocabulary id; a full run (without --finetune) learns them.
"""
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from . import artifacts, pretrained
from .data import DataError
from .train import ENSEMBLE_LEARNING_RATE, Member, fit, tensorboard_callbacks

log = logging.getLogger(__name__)

EPOCH_SHARE = 0.2  # of the full run's epoch limits
LEARNING_RATE_FACTOR = 0.1  # of the learning rate the member was trained with


@dataclass
class Published:
    """The model currently published in an output directory, checked like predict checks it."""
    out_dir: Path
    bundle: dict  # the preprocessor pickle
    member_files: dict  # member name -> .h5 path
    member_inputs: dict  # member name -> what it reads (artifacts.TOKEN_IDS, ...)
    full_run_seconds: float  # training time of the last full (not fine-tuned) run

    @property
    def preprocessor(self):
        return self.bundle["preprocessor"]

    def check_labels(self, tags, data_path):
        """Refuse data whose label set differs: the output layer has one unit per label."""
        published = set(self.bundle["label2idx"])
        if published == set(tags):
            return
        changes = [f"{title}: {', '.join(sorted(names))}" for title, names in
                   (("new", set(tags) - published), ("missing", published - set(tags))) if names]
        raise DataError(f"{data_path}: --finetune needs the labels of the model published in "
                        f"{self.out_dir}, and they changed ({'; '.join(changes)}). Train without "
                        "--finetune to change the label set.")


def read_published(out_dir):
    out_dir = Path(out_dir)
    pickle_path = out_dir / artifacts.PREPROCESSOR_FILE
    if not pickle_path.is_file():
        raise artifacts.ArtifactError(f"{out_dir}: no published model to fine-tune; train once "
                                      "without --finetune.")
    bundle = artifacts.load_preprocessor(pickle_path)
    files = {"cnn_bilstm": out_dir / artifacts.MODEL_FILE}
    inputs = {"cnn_bilstm": artifacts.TOKEN_IDS}
    artifacts.check_model_file(bundle, pickle_path, files["cnn_bilstm"])
    if bundle["ensemble_sha256"]:
        ensemble_dir = out_dir / artifacts.ENSEMBLE_DIR
        spec_path = ensemble_dir / artifacts.ENSEMBLE_SPEC
        artifacts.check_model_file(bundle, pickle_path, spec_path, key="ensemble_sha256")
        for member in artifacts.read_ensemble_spec(ensemble_dir)["members"]:
            if member["name"] != "cnn_bilstm":
                files[member["name"]] = ensemble_dir / member["file"]
                inputs[member["name"]] = member.get("input", artifacts.TOKEN_IDS)
                _check_encoder(member, spec_path)
                artifacts.check_model_file(member, spec_path, files[member["name"]], key="sha256")
    manifest = json.loads((out_dir / artifacts.MANIFEST_FILE).read_text())
    full_run_seconds = (manifest.get("finetune") or {}).get("full_run_seconds",
                                                        manifest["training_seconds"])
    return Published(out_dir, bundle, files, inputs, full_run_seconds)


def _check_encoder(member, spec_path):
    """A head trained on one encoder's embeddings cannot continue on another's."""
    if member.get("input") != artifacts.SENTENCE_EMBEDDING:
        return
    installed = pretrained.sentence_encoder().sha256
    if member["encoder_sha256"] != installed:
        raise ValueError(f"{spec_path}: member {member['name']!r} was trained on other "
                         "all-MiniLM-L6-v2 weights than the installed ones; train without "
                         "--finetune.")


def continue_training(published, dataset, config):
    """Each published member (the ensemble's only when config.ensemble), trained on."""
    if config.ensemble and len(published.member_files) == 1:
        raise ValueError(f"{published.out_dir}: the published model has no ensemble; add "
                         "--no-ensemble, or train without --finetune.")
    best = published.bundle["best_config"]
    members, histories = {}, {}
    for name, path in published.member_files.items():
        if name != "cnn_bilstm" and not config.ensemble:
            continue
        single = name == "cnn_bilstm"
        epochs = max(1, round((config.epochs if single else config.ensemble_epochs)
                              * EPOCH_SHARE))
        learning_rate = (best["learning_rate"] if single else ENSEMBLE_LEARNING_RATE) \
            * LEARNING_RATE_FACTOR
        kind = published.member_inputs[name]
        data = dataset.embedded if kind == artifacts.SENTENCE_EMBEDDING else dataset
        if data is None:
            raise ValueError(f"{path} reads sentence embeddings, but the pretrained encoder is "
                             "off or not installed; train without --finetune.")
        members[name] = Member(artifacts.load_model(path), data, kind)
        histories[name] = fit(members[name].model, data, learning_rate, epochs,
                              config.patience if single else config.ensemble_patience,
                              config.batch_size, f"finetune {name}",
                              label_smoothing=config.label_smoothing,
                              callbacks=tensorboard_callbacks(config, name))
    return members, histories


def report_time_saved(published, seconds):
    """Log and return the comparison with the last full run, for the manifest."""
    saved = published.full_run_seconds - seconds
    log.info("fine-tuned in %.0f s; the last full run took %.0f s: %.0f s saved (%.1fx faster)",
             seconds, published.full_run_seconds, saved,
             published.full_run_seconds / max(seconds, 1e-9))
    return {"seconds": seconds, "full_run_seconds": published.full_run_seconds,
            "seconds_saved": round(saved, 1)}
