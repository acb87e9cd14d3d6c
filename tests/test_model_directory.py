"""Issue 31: a model directory cannot reach outside itself (member paths confined, regular files of
the manifest's size only), publishers serialise, and a run removed mid-read is read again."""
import fcntl
import hashlib
import io
import json
import os
import pickle
import shutil
import threading
import time
from pathlib import Path

import pytest
from test_artifacts import published, stage

from intentkit import artifacts
from intentkit.errors import ArtifactError, ArtifactMismatch
from intentkit.serving import predictor as predict


def copy_run(trained, tmp_path):
    """A private copy of the trained run's directory (files, not links)."""
    run = tmp_path / "run"
    shutil.copytree(os.path.realpath(trained["out"] / artifacts.RUNS_DIR / artifacts.CURRENT_RUN),
                    run)
    return run


def reseal(run, edit_spec):
    """Rewrite ensemble.json with `edit_spec(spec)` and every checksum that vouches for it, as
    anyone holding the directory can: checksums prove consistency, not authorship."""
    spec_path = run / artifacts.ENSEMBLE_DIR / artifacts.ENSEMBLE_SPEC
    spec = json.loads(spec_path.read_text())
    edit_spec(spec)
    spec_path.write_text(json.dumps(spec))
    pickle_path = run / artifacts.PREPROCESSOR_FILE
    bundle = pickle.load(io.BytesIO(pickle_path.read_bytes()))  # our own test file
    bundle["ensemble_sha256"] = artifacts.sha256(spec_path)
    pickle_path.write_bytes(pickle.dumps(bundle))
    manifest_path = run / artifacts.MANIFEST_FILE
    manifest = json.loads(manifest_path.read_text())
    for path in (spec_path, pickle_path):
        name = str(path.relative_to(run))
        manifest["files"][name] = artifacts.sha256(path)
        manifest.get("sizes", {})[name] = path.stat().st_size
    manifest_path.write_text(json.dumps(artifacts.sealed(manifest)))


def open_all(run):
    return artifacts.Run.open(run / artifacts.MODEL_FILE, run / artifacts.PREPROCESSOR_FILE,
                              model_type="all")


@pytest.mark.parametrize("escape", ["../../outside.h5", "ABSOLUTE"])
def test_an_ensemble_member_outside_the_run_directory_is_refused(trained, tmp_path, escape):
    run = copy_run(trained, tmp_path)
    first = json.loads((run / artifacts.ENSEMBLE_DIR / artifacts.ENSEMBLE_SPEC).read_text())[
        "members"][0]["file"]
    outside = tmp_path / "outside.h5"
    shutil.copyfile(run / artifacts.ENSEMBLE_DIR / first, outside)  # same bytes, same checksum
    name = str(outside) if escape == "ABSOLUTE" else escape

    def point_outside(spec):
        spec["members"][0]["file"] = name
    reseal(run, point_outside)
    with pytest.raises(ArtifactError, match="not a plain file name"):
        open_all(run)


def test_a_fifo_in_place_of_a_member_is_refused_without_blocking(trained, tmp_path):
    run = copy_run(trained, tmp_path)
    member = sorted((run / artifacts.ENSEMBLE_DIR).glob("*.h5"))[0]
    member.unlink()
    os.mkfifo(member)
    outcome = []

    def load():
        try:
            open_all(run)
        except ArtifactError as error:
            outcome.append(error)
    thread = threading.Thread(target=load, daemon=True)
    thread.start()
    thread.join(timeout=20)
    blocked = thread.is_alive()
    if blocked:  # release the reader of the old code
        os.close(os.open(member, os.O_WRONLY | os.O_NONBLOCK))
    assert not blocked, "the loader blocked on a FIFO"
    assert outcome and "not a regular file" in str(outcome[0])


def test_a_member_of_another_size_than_the_manifest_says_is_refused(trained, tmp_path):
    run = copy_run(trained, tmp_path)
    member = sorted((run / artifacts.ENSEMBLE_DIR).glob("*.h5"))[0]
    with open(member, "ab") as file:
        file.write(b"\0" * 4096)
    with pytest.raises(ArtifactMismatch, match="bytes where the manifest records"):
        open_all(run)


# --- publishing races ---------------------------------------------------------------------------

def test_a_publish_waits_for_the_publish_lock(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    artifacts.publish(stage(out, "old"), out)
    staging = stage(out, "new")
    lock_path = out / artifacts.RUNS_DIR / artifacts.PUBLISH_LOCK
    with open(lock_path, "a+b") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        thread = threading.Thread(target=artifacts.publish, args=(staging, out))
        thread.start()
        time.sleep(1.0)
        assert published(out)[artifacts.MODEL_FILE] == "old"  # still waiting for the lock
    thread.join(timeout=30)
    assert published(out)[artifacts.MODEL_FILE] == "new"


def test_concurrent_publishers_always_leave_current_on_a_run_that_exists(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    errors = []

    def publisher(tag):
        try:
            for round_ in range(8):
                artifacts.publish(stage(out, f"{tag}{round_}"), out)
        except Exception as error:  # noqa: BLE001 (reported below)
            errors.append(error)
    threads = [threading.Thread(target=publisher, args=(tag,)) for tag in "abc"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors
    current = out / artifacts.RUNS_DIR / artifacts.CURRENT_RUN
    assert current.resolve().is_dir()
    assert len({value for value in published(out).values()}) == 1  # one run, whole


def test_a_run_removed_while_it_is_read_is_read_again_from_the_new_run(tmp_path, monkeypatch):
    """The reader resolved the old run, a publisher switched runs and removed it: the failure
    (FileNotFoundError, not a mismatch) is retried, and the new run is read."""
    out = tmp_path / "out"
    (tmp_path / "run_a").mkdir()
    (tmp_path / "run_b").mkdir()
    out.symlink_to(tmp_path / "run_a")
    calls = []

    class VanishingOnce:
        def __init__(self, model_path, *args, **kwargs):
            calls.append(os.path.realpath(model_path))
            if len(calls) == 1:
                out.unlink()
                out.symlink_to(tmp_path / "run_b")  # the switch
                shutil.rmtree(tmp_path / "run_a")  # and the clean-up
                raise FileNotFoundError(2, "No such file or directory", model_path)
    monkeypatch.setattr(predict, "Predictor", VanishingOnce)
    loaded = predict._load_consistent(str(out / "model.h5"), str(out / "p.pickle"), None,
                                      "numpy", 0)
    assert isinstance(loaded, VanishingOnce)
    assert [Path(path).parent.name for path in calls] == ["run_a", "run_b"]


def test_a_file_that_is_simply_missing_is_not_retried(tmp_path, monkeypatch):
    calls = []

    def missing(*args, **kwargs):
        calls.append(args)
        raise FileNotFoundError(2, "No such file or directory")
    monkeypatch.setattr(predict, "Predictor", missing)
    with pytest.raises(FileNotFoundError):
        predict._load_consistent(str(tmp_path / "m.h5"), str(tmp_path / "p.pickle"), None,
                                 "numpy", 0)
    assert len(calls) == 1


def test_manifest_records_sizes(tmp_path):
    staging = tmp_path / "staging"
    staging.mkdir()
    (staging / "a.bin").write_bytes(b"12345")
    manifest = artifacts.write_manifest(staging, {})
    assert manifest["sizes"] == {"a.bin": 5}
    assert hashlib.sha256(b"12345").hexdigest() == manifest["files"]["a.bin"]
