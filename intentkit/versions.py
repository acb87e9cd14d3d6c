"""Versions of a published model: which runs exist, which one is live, going back, keeping a few.

Every publish keeps its run in `OUT/.runs/<id>/` (intentkit.artifacts); the id is the UTC time
and a short hash of the data and the training configuration, recorded in the run's manifest as
`run_id`. `.runs/current` is the live run: promoting or rolling back moves that one link in one
rename, so a serving worker sees the old run or the new one, never a mix, and reloads on its own.
`.runs/history.jsonl` records each change of the live run (publish, promote, rollback) so that a
rollback returns to the run that was live before. A serving process that answers from a run other
than the live one (an A/B variant) pins it: a lock file under `.runs/.pins/`, held while the
process lives, which retention respects.
"""
import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from . import artifacts
from .errors import ArtifactError

DEFAULT_KEEP = artifacts.RUNS_KEPT
HISTORY_FILE = "history.jsonl"
PINS_DIR = ".pins"
CURRENT = "current"  # a variant's run given as "current": the live run, following promotions


def runs_dir(out_dir) -> Path:
    return Path(out_dir) / artifacts.RUNS_DIR


def new_run_id(manifest, fallback_suffix):
    """`<UTC time to the microsecond>-<8 hex digits>`: the hash of the data's and the training
    configuration's checksums (the same data and config give the same suffix), or
    `fallback_suffix` for a run whose manifest records neither."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%f")
    data = (manifest or {}).get("data") or {}
    config = ((manifest or {}).get("files") or {}).get(artifacts.CONFIG_FILE)
    if isinstance(data, dict) and (data.get("sha256") or config):
        digest = hashlib.sha256(f"{data.get('sha256')}:{config}".encode()).hexdigest()[:8]
        return f"{stamp}-{digest}"
    return f"{stamp}-{fallback_suffix}"


def current_run(out_dir):
    """The live run's id, or None (nothing published in the `.runs/` layout)."""
    link = runs_dir(out_dir) / artifacts.CURRENT_RUN
    return os.readlink(link) if link.is_symlink() else None


def run_ids(out_dir):
    """Every published run's id, oldest first (ids start with their time)."""
    runs = runs_dir(out_dir)
    if not runs.is_dir():
        return []
    return sorted(p.name for p in runs.iterdir() if artifacts._is_run_directory(p))


def run_directory(out_dir, run_id) -> Path:
    """The directory of run `run_id` of `out_dir` ("current": the live run); ArtifactError, one
    line naming the known ids, when there is none."""
    if run_id == CURRENT:
        run_id = current_run(out_dir)
        if run_id is None:
            raise ArtifactError(f"{out_dir}: no live run (nothing published with versions "
                                "here); train with --out " + str(out_dir) + " first.")
    known = run_ids(out_dir)
    if run_id not in known:
        listing = ", ".join(known[-5:]) if known else "none"
        raise ArtifactError(f"{out_dir}: no run {run_id!r} (known, newest last: {listing}); "
                            f"see `intentkit runs list -m {out_dir}`.")
    return runs_dir(out_dir) / run_id


def manifest_of(out_dir, run_id):
    """The run's manifest, checked (its own checksum)."""
    manifest = artifacts._verified_manifest(run_directory(out_dir, run_id)
                                            / artifacts.MANIFEST_FILE)
    if manifest is None:
        raise ArtifactError(f"{out_dir}: run {run_id}'s manifest is damaged; it cannot be used.")
    return manifest


def verify_run(out_dir, run_id):
    """Open run `run_id` with every file verified (models, pickle, ensemble, encoder); returns
    the opened artifacts.Run. ArtifactError when any check fails."""
    directory = run_directory(out_dir, run_id)
    try:
        return artifacts.Run.open(directory / artifacts.MODEL_FILE,
                                  directory / artifacts.PREPROCESSOR_FILE,
                                  directory / artifacts.ENSEMBLE_DIR, "all")
    except ArtifactError as error:
        raise ArtifactError(f"run {run_id} fails verification: {error}") from None


# --- history of the live run ---------------------------------------------------------------

@contextlib.contextmanager
def _history_lock(out_dir):
    """One process at a time changes the live run (an exclusive flock on the history file)."""
    path = runs_dir(out_dir) / HISTORY_FILE
    with open(path, "a+", encoding="utf-8") as handle:
        with contextlib.suppress(ImportError):
            import fcntl
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield handle


def _append_history(handle, run_id, action):
    handle.write(json.dumps({"time": artifacts.now(), "run": run_id, "action": action}) + "\n")
    handle.flush()


def history(out_dir):
    """Every recorded change of the live run, oldest first: {"time", "run", "action"}."""
    path = runs_dir(out_dir) / HISTORY_FILE
    if not path.exists():
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
    with _history_lock(out_dir) as handle:
        _append_history(handle, run_id, "publish")


def _make_live(out_dir, run_id, action):
    out_dir = Path(out_dir)
    directory = run_directory(out_dir, run_id)
    if not (runs_dir(out_dir) / artifacts.CURRENT_RUN).is_symlink():
        raise ArtifactError(f"{out_dir}: this model directory has no `.runs/current` link "
                            "(published without symbolic links); versions cannot be switched "
                            "here.")
    verify_run(out_dir, run_id)  # a broken run is never made live
    with _history_lock(out_dir) as handle:
        artifacts._point(runs_dir(out_dir) / artifacts.CURRENT_RUN, run_id)
        for entry in directory.iterdir():  # names a run of an older format lacked
            link = out_dir / entry.name
            if entry.name in artifacts.PUBLISHED_NAMES and not os.path.lexists(link):
                artifacts._point(link, Path(artifacts.RUNS_DIR) / artifacts.CURRENT_RUN
                                 / entry.name)
        _append_history(handle, run_id, action)
    return run_id


def promote(out_dir, run_id):
    """Make run `run_id` (verified first) the live run, in one rename; returns its id."""
    return _make_live(out_dir, run_directory(out_dir, run_id).name, "promote")


def rollback(out_dir):
    """Make the run that was live before the current one live again; returns its id."""
    target = rollback_target(out_dir)
    if target is None:
        raise ArtifactError(f"{out_dir}: no earlier run to roll back to (see `intentkit runs "
                            f"list -m {out_dir}`).")
    return _make_live(out_dir, target, "rollback")


# --- pins and retention ----------------------------------------------------------------------

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
    lock = artifacts._lock(name)
    if lock is None:
        Path(name).unlink(missing_ok=True)
    return lock


def pinned_runs(out_dir):
    """The runs a living process has pinned; stale pins (their process died) are removed."""
    pins = runs_dir(out_dir) / PINS_DIR
    pinned = set()
    if not pins.is_dir():
        return pinned
    for path in pins.glob("*.lock"):
        handle = artifacts._lock(path)
        if handle is None:
            pinned.add(path.name.split(".", 1)[0])
        else:
            with handle:
                path.unlink(missing_ok=True)
    return pinned


def protected_runs(out_dir):
    """Runs retention never removes: the live one, the rollback target, pinned ones."""
    return {run for run in (current_run(out_dir), rollback_target(out_dir)) if run} \
        | pinned_runs(out_dir)


def prune(out_dir, keep=DEFAULT_KEEP):
    """Remove the runs beyond the `keep` newest, except protected ones; returns the removed ids.
    A worker that already loaded a removed run keeps answering from memory."""
    if keep < 1:
        raise ArtifactError(f"--keep must be at least 1, not {keep}")
    ids = run_ids(out_dir)
    protected = protected_runs(out_dir)
    removed = [run_id for run_id in ids[:-keep] if run_id not in protected]
    for run_id in removed:
        # Renamed away first: a reader sees the whole run or no run, never a half-removed one.
        runs = runs_dir(out_dir)
        retired = Path(tempfile.mkdtemp(prefix=".retired-", dir=runs))
        os.replace(runs / run_id, retired / run_id)
        shutil.rmtree(retired, ignore_errors=True)
    return removed


# --- listing ---------------------------------------------------------------------------------

def describe(out_dir, run_id, manifest=None):
    """One run's summary: id, date, data, default model, test accuracy, live, pinned."""
    manifest = manifest if manifest is not None else manifest_of(out_dir, run_id)
    default = manifest.get("default_model")
    metrics = (manifest.get("metrics") or {}).get(default) or {}
    data = manifest.get("data") or {}
    return {"id": run_id, "created": manifest.get("created"),
            "data": data.get("path") if isinstance(data, dict) else None,
            "default_model": default, "test_accuracy": metrics.get("accuracy"),
            "live": run_id == current_run(out_dir)}


def list_runs(out_dir):
    """describe() of every run, oldest first, with "pinned" (in an A/B test) added."""
    pinned = pinned_runs(out_dir)
    rows = []
    for run_id in run_ids(out_dir):
        manifest = artifacts._verified_manifest(runs_dir(out_dir) / run_id
                                                / artifacts.MANIFEST_FILE)
        rows.append({**describe(out_dir, run_id, manifest), "pinned": run_id in pinned})
    return rows
