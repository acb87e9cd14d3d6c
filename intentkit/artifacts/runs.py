"""Versions of a published model: which runs exist, which one is live, going back, keeping a few.

Every publish keeps its run in `OUT/.runs/<id>/` (intentkit.artifacts); the id is the UTC time
and a short hash of the data and the training configuration, recorded in the run's manifest as
`run_id`. `.runs/current` is the live run: promoting or rolling back moves that one link in one
rename, under the same lock as a publish, so a serving worker sees the old run or the new one,
never a mix, and reloads on its own. `.runs/history.jsonl` records each change of the live run
(publish, promote, rollback) so that a rollback returns to the run that was live before. A serving
process that answers from a run other than the live one (an A/B variant) pins it: a lock file
under `.runs/.pins/`, held while the process lives, which retention respects.
"""
import os
from pathlib import Path

from .. import artifacts
from ..errors import ArtifactError

# The primitives live beside publish (which names, records and prunes runs); the commands here.
from . import (  # noqa: F401 (re-exported: the versions API in one place)
    HISTORY_FILE,
    PINS_DIR,
    RUNS_KEPT,
    current_run,
    history,
    pin,
    pinned_runs,
    protected_runs,
    prune,
    rollback_target,
    run_ids,
    runs_dir,
)

CURRENT = "current"  # a variant's run given as "current": the live run, following promotions


def run_directory(out_dir, run_id) -> Path:
    """The directory of run `run_id` of `out_dir` ("current": the live run); ArtifactError, one
    line naming the known ids, when there is none."""
    if run_id == CURRENT:
        run_id = current_run(out_dir)
        if run_id is None:
            raise ArtifactError(f"{out_dir}: no live run (nothing published with versions "
                                f"here); train with --out {out_dir} first.")
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
    the opened artifacts.Run. ArtifactError, one line, when any check fails."""
    directory = run_directory(out_dir, run_id)
    try:
        return artifacts.Run.open(directory / artifacts.MODEL_FILE,
                                  directory / artifacts.PREPROCESSOR_FILE,
                                  directory / artifacts.ENSEMBLE_DIR, "all")
    except ArtifactError as error:
        raise ArtifactError(f"run {run_id} fails verification: {error}") from None


def _make_live(out_dir, choose, action):
    """Make the run `choose()` names live (verified first), inside the publish lock."""
    out_dir = Path(out_dir)
    with artifacts.changing_runs(out_dir):
        if not (runs_dir(out_dir) / artifacts.CURRENT_RUN).is_symlink():
            raise ArtifactError(f"{out_dir}: this model directory has no `.runs/current` link "
                                "(published without symbolic links); versions cannot be "
                                "switched here.")
        run_id = choose()
        directory = run_directory(out_dir, run_id)
        verify_run(out_dir, run_id)  # a broken run is never made live
        artifacts._point(runs_dir(out_dir) / artifacts.CURRENT_RUN, run_id)
        for entry in directory.iterdir():  # names a run of an older format lacked
            link = out_dir / entry.name
            if entry.name in artifacts.PUBLISHED_NAMES and not os.path.lexists(link):
                artifacts._point(link, Path(artifacts.RUNS_DIR) / artifacts.CURRENT_RUN
                                 / entry.name)
        artifacts.append_history(out_dir, run_id, action)
    return run_id


def promote(out_dir, run_id):
    """Make run `run_id` (verified first) the live run, in one rename; returns its id."""
    return _make_live(out_dir, lambda: run_directory(out_dir, run_id).name, "promote")


def rollback(out_dir):
    """Make the run that was live before the current one live again; returns its id."""
    def target():
        found = rollback_target(out_dir)
        if found is None:
            raise ArtifactError(f"{out_dir}: no earlier run to roll back to (see `intentkit "
                                f"runs list -m {out_dir}`).")
        return found
    return _make_live(out_dir, target, "rollback")


def describe(out_dir, run_id, manifest=None):
    """One run's summary: id, date, data, default model, test accuracy, live."""
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
