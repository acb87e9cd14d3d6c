"""Publishing is atomic (killed at any step, the output holds the old run or the new, never a
mix) and touches nothing that is not ours."""
import json
import os
import signal
import tempfile
from pathlib import Path

import pytest
from conftest import run_script

from intentkit import artifacts
from intentkit.errors import ArtifactError

NAMES = [artifacts.MODEL_FILE, artifacts.PREPROCESSOR_FILE, artifacts.MANIFEST_FILE]
MEMBER = f"{artifacts.ENSEMBLE_DIR}/cnn.h5"


def stage(out, tag):
    """A staged run whose files all say `tag`, with a manifest that verifies."""
    staging = Path(tempfile.mkdtemp(prefix=artifacts.STAGING_PREFIX, dir=out))
    (staging / artifacts.ENSEMBLE_DIR).mkdir()
    for name in NAMES + [MEMBER]:
        (staging / name).write_text(tag)
    files = {str(p.relative_to(staging)): artifacts.sha256(p)
             for p in staging.rglob("*") if p.is_file() and p.name != artifacts.MANIFEST_FILE}
    (staging / artifacts.MANIFEST_FILE).write_text(
        json.dumps(artifacts.sealed({"tag": tag, "files": files})))
    return staging


def published(out):
    return {name: (json.loads((out / name).read_text())["tag"] if name == artifacts.MANIFEST_FILE
                   else (out / name).read_text()) if (out / name).exists() else None
            for name in NAMES + [MEMBER]}


# Publishes run "new" over run "old", killing itself at the n-th rename or link it makes.
KILL_AT_STEP = """
import os, signal, sys
sys.path.insert(0, sys.argv[3])
from test_artifacts import stage
from intentkit import artifacts
out, kill_at = __import__("pathlib").Path(sys.argv[1]), int(sys.argv[2])
staging = stage(out, "new")
steps = 0
def counted(real):
    def step(*args, **kwargs):
        global steps
        steps += 1
        if steps == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        return real(*args, **kwargs)
    return step
os.replace, os.symlink = counted(os.replace), counted(os.symlink)
artifacts.publish(staging, out)
"""


def test_publish_replaces_the_whole_run(tmp_path):
    artifacts.publish(stage(tmp_path, "old"), tmp_path)
    assert set(published(tmp_path).values()) == {"old"}
    artifacts.publish(stage(tmp_path, "new"), tmp_path)
    assert set(published(tmp_path).values()) == {"new"}
    assert not list(tmp_path.glob(".staging-*"))


def test_killed_at_any_step_of_publish_the_output_is_old_or_new(tmp_path):
    tests_dir = os.path.dirname(__file__)
    for kill_at in range(1, 50):
        out = tmp_path / f"kill-{kill_at}"
        out.mkdir()
        artifacts.publish(stage(out, "old"), out)
        artifacts.publish(stage(out, "old"), out)  # a second run: the steady state
        result = run_script("-c", KILL_AT_STEP, out, kill_at, tests_dir)
        state = set(published(out).values())
        assert state in ({"old"}, {"new"}), (kill_at, published(out))
        if result.returncode != -signal.SIGKILL:  # publish finished before step kill_at
            assert result.returncode == 0, result.stderr
            assert state == {"new"}
            break
    else:
        raise AssertionError("publish never finished")


def test_only_the_newest_runs_are_kept(tmp_path):
    for tag in ("a", "b", "c", "d"):
        artifacts.publish(stage(tmp_path, tag), tmp_path, keep=2)
    runs = [p for p in (tmp_path / artifacts.RUNS_DIR).iterdir() if p.name[0].isdigit()]
    assert len(runs) == 2
    assert set(published(tmp_path).values()) == {"d"}


# --- never delete what is not ours -----------------------------------------------------------

def users_project(folder):
    """A user's folder holding entries named like a run's: a report and a manifest of its own."""
    (folder / "report").mkdir(parents=True)
    (folder / "report" / "thesis-chapter-3.docx").write_bytes(b"three months of work")
    (folder / artifacts.MANIFEST_FILE).write_text('{"name": "my-web-app"}')
    return {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_an_output_directory_holding_a_users_files_is_refused_before_anything_is_written(
        tmp_path):
    before = users_project(tmp_path)
    with pytest.raises(ArtifactError, match=r"report, manifest\.json are not intentkit's"):
        with artifacts.staging_area(tmp_path):
            raise AssertionError("training must not start")
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.json", "report"]


@pytest.mark.parametrize("name", artifacts.PUBLISHED_NAMES)
def test_every_name_a_run_publishes_is_checked(tmp_path, name):
    (tmp_path / name).write_text("mine")
    with pytest.raises(ArtifactError, match=f"{name} is not intentkit's"):
        artifacts.publish(stage(tmp_path, "new"), tmp_path)
    assert (tmp_path / name).read_text() == "mine"


def test_a_users_link_named_like_a_run_entry_is_not_replaced(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "notes.txt").write_text("keep")
    out = tmp_path / "out"
    out.mkdir()
    (out / artifacts.REPORT_DIR).symlink_to(elsewhere)
    with pytest.raises(ArtifactError, match="report is not intentkit's"):
        artifacts.publish(stage(out, "new"), out)
    assert os.readlink(out / artifacts.REPORT_DIR) == str(elsewhere)
    assert (elsewhere / "notes.txt").read_text() == "keep"


def test_a_file_that_appears_during_training_stops_the_publish(tmp_path):
    artifacts.publish(stage(tmp_path, "old"), tmp_path)
    with artifacts.staging_area(tmp_path) as staging:
        (tmp_path / artifacts.HISTORY_PLOT).write_text("the user's plot")
        with pytest.raises(ArtifactError, match="is not intentkit's"):
            artifacts.publish(stage(staging.parent, "new"), tmp_path)
    assert (tmp_path / artifacts.HISTORY_PLOT).read_text() == "the user's plot"
    assert set(published(tmp_path).values()) == {"old"}


def test_runs_linked_to_a_shared_folder_lose_only_old_runs(tmp_path):
    shared = tmp_path / "shared"
    (shared / "photos").mkdir(parents=True)
    (shared / "photos" / "cat.jpg").write_bytes(b"cat")
    (shared / "20240101T000000000000-notarun").mkdir()  # named like a run, no manifest
    out = tmp_path / "out"
    out.mkdir()
    (out / artifacts.RUNS_DIR).symlink_to(shared)
    for tag in ("a", "b", "c", "d"):
        artifacts.publish(stage(out, tag), out, keep=2)
    assert (shared / "photos" / "cat.jpg").read_bytes() == b"cat"
    assert (shared / "20240101T000000000000-notarun").is_dir()
    runs = [p for p in shared.iterdir()
            if p.name != artifacts.CURRENT_RUN and (p / artifacts.MANIFEST_FILE).is_file()]
    assert len(runs) == 2
    assert set(published(out).values()) == {"d"}


def test_the_filesystem_root_is_refused():
    with pytest.raises(ArtifactError, match="may not be the filesystem root"):
        artifacts.refuse_foreign_entries(Path("/"))


def test_a_run_of_the_older_layout_vouched_for_by_its_manifest_is_replaced(tmp_path):
    """Runs published without links (older versions, or no symlink privilege) hold real files
    that the manifest beside them lists: those are ours, and a new run replaces them."""
    old = stage(tmp_path, "old")
    for entry in old.iterdir():
        os.replace(entry, tmp_path / entry.name)
    old.rmdir()
    artifacts.publish(stage(tmp_path, "new"), tmp_path)
    assert set(published(tmp_path).values()) == {"new"}
    assert (tmp_path / artifacts.ENSEMBLE_DIR).is_symlink()


def test_a_file_added_to_an_older_layouts_directory_makes_it_foreign(tmp_path):
    old = stage(tmp_path, "old")
    for entry in old.iterdir():
        os.replace(entry, tmp_path / entry.name)
    old.rmdir()
    (tmp_path / artifacts.ENSEMBLE_DIR / "my-notes.txt").write_text("mine")
    with pytest.raises(ArtifactError, match="ensemble_models is not intentkit's"):
        artifacts.publish(stage(tmp_path, "new"), tmp_path)
    assert (tmp_path / artifacts.ENSEMBLE_DIR / "my-notes.txt").read_text() == "mine"
