"""A published run cannot be loaded unverified: manifest, pickle, models; stale staging."""
import hashlib
import json
import os
import pickle
import random
import shutil
import signal

import pytest
from conftest import run_script

from intentkit import artifacts
from intentkit.errors import ArtifactError
from intentkit.serving.predictor import get_predictor


@pytest.fixture
def copy(trained, tmp_path):
    out = tmp_path / "model"
    shutil.copytree(trained["out"], out, symlinks=False)
    return out


def test_a_run_without_its_manifest_is_refused(copy):
    (copy / artifacts.MANIFEST_FILE).unlink()
    with pytest.raises(ArtifactError, match="without its manifest a run cannot be verified"):
        artifacts.open_published(copy)


def test_a_manifest_edited_by_hand_is_refused(copy):
    path = copy / artifacts.MANIFEST_FILE
    manifest = json.loads(path.read_text())
    manifest["default_model"] = "single" if manifest["default_model"] == "ensemble" else "ensemble"
    path.write_text(json.dumps(manifest, indent=2))
    with pytest.raises(ArtifactError, match="its checksum does not match its content"):
        artifacts.open_published(copy)


def replace_pickle_and_vouch_for_it(run_dir, payload):
    """What an attacker who can write the files does: a new pickle, and the manifest rewritten
    (its checksum of the pickle and its own) to vouch for it."""
    pickle_path = run_dir / artifacts.PREPROCESSOR_FILE
    pickle_path.write_bytes(pickle.dumps(payload))
    manifest_path = run_dir / artifacts.MANIFEST_FILE
    manifest = json.loads(manifest_path.read_text())
    manifest["files"][artifacts.PREPROCESSOR_FILE] = hashlib.sha256(
        pickle_path.read_bytes()).hexdigest()
    manifest["sizes"][artifacts.PREPROCESSOR_FILE] = pickle_path.stat().st_size
    manifest["manifest_sha256"] = artifacts._manifest_checksum(manifest)
    manifest_path.write_text(json.dumps(manifest))


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_a_tampered_pickle_is_refused_before_anything_in_it_runs(copy, monkeypatch):
    """Even with the manifest rewritten to vouch for it (an attacker who can write files)."""
    monkeypatch.chdir(copy)
    replace_pickle_and_vouch_for_it(copy, {"format_version": artifacts.FORMAT_VERSION,
                                           "preprocessor": _RunsCode()})
    with pytest.raises(ArtifactError, match="posix.system, which intentkit never writes"):
        artifacts.open_published(copy)
    assert not (copy / "pwned").exists()


def test_random_byte_changes_are_refused_or_answered_by_the_loaded_model(copy):
    """A few hundred random byte changes in the pickle and the manifest: each is refused with
    an ArtifactError (never another exception, never a silent load of changed content), and a
    predictor already serving keeps answering."""
    paths = {"model_path": copy / artifacts.MODEL_FILE,
             "preprocessor_path": copy / artifacts.PREPROCESSOR_FILE}
    serving = get_predictor(**paths)
    expected = serving.predict("what is the salary of a tester")
    originals = {name: (copy / name).read_bytes()
                 for name in (artifacts.PREPROCESSOR_FILE, artifacts.MANIFEST_FILE)}
    manifest = json.loads(originals[artifacts.MANIFEST_FILE])
    rng = random.Random(0)
    outcomes = {"refused": 0, "same content": 0}
    for trial in range(300):
        name = list(originals)[trial % 2]
        data = bytearray(originals[name])
        position = rng.randrange(len(data))
        data[position] = (data[position] + rng.randrange(1, 256)) % 256
        (copy / name).write_bytes(bytes(data))
        try:
            run = artifacts.open_published(copy)
        except ArtifactError:
            outcomes["refused"] += 1
        else:  # only a change that JSON ignores (one whitespace byte for another) may load
            assert name == artifacts.MANIFEST_FILE and run.manifest == manifest, (name, position)
            outcomes["same content"] += 1
        stat = os.stat(copy / name)
        os.utime(copy / name, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9 * (trial + 1)))
        assert get_predictor(**paths).predict("what is the salary of a tester") == expected
        (copy / name).write_bytes(originals[name])
    assert outcomes["refused"] >= 290, outcomes


STAGE_AND_DIE = """
import os, signal, sys
from intentkit import artifacts
with artifacts.staging_area(sys.argv[1]) as staging:
    (staging / "half-written.h5").write_text("x")
    os.kill(os.getpid(), signal.SIGKILL)
"""


def test_staging_left_by_a_killed_run_is_removed_by_the_next(tmp_path):
    result = run_script("-c", STAGE_AND_DIE, tmp_path)
    assert result.returncode == -signal.SIGKILL
    left = list(tmp_path.glob(".staging-*"))
    assert len(left) == 2, left  # the directory and its lock file
    with artifacts.staging_area(tmp_path) as live:
        assert sorted(tmp_path.glob(".staging-*")) == sorted([live, live.with_name(
            live.name + ".lock")]), "the dead run's staging is gone, the live one stays"
        # A run in progress elsewhere (this one) is not touched by another's cleanup.
        assert artifacts.remove_stale_staging(tmp_path) == 0 and live.exists()
    assert not list(tmp_path.glob(".staging-*"))


def test_a_pickle_of_the_wrong_shape_is_an_artifact_error_not_a_crash(copy):
    """A pickle the manifest vouches for but that lacks what intentkit writes (another program's,
    or an older format): one ArtifactError, no TypeError or KeyError."""
    replace_pickle_and_vouch_for_it(copy, {"format_version": artifacts.FORMAT_VERSION,
                                           "idx2label": None})
    with pytest.raises(ArtifactError, match="not a run written by this version of intentkit"):
        artifacts.open_published(copy)
