"""Publishing is atomic: killed at any step, the output holds the old run or the new, never a mix."""
import os
import signal
import tempfile
from pathlib import Path

from intentkit import artifacts

from conftest import run_script

NAMES = [artifacts.MODEL_FILE, artifacts.PREPROCESSOR_FILE, artifacts.MANIFEST_FILE]
MEMBER = f"{artifacts.ENSEMBLE_DIR}/cnn.h5"


def stage(out, tag):
    staging = Path(tempfile.mkdtemp(prefix=artifacts.STAGING_PREFIX, dir=out))
    (staging / artifacts.ENSEMBLE_DIR).mkdir()
    for name in NAMES + [MEMBER]:
        (staging / name).write_text(tag)
    return staging


def published(out):
    return {name: (out / name).read_text() if (out / name).exists() else None
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


def test_only_the_current_and_previous_runs_are_kept(tmp_path):
    for tag in ("a", "b", "c", "d"):
        artifacts.publish(stage(tmp_path, tag), tmp_path)
    runs = [p for p in (tmp_path / artifacts.RUNS_DIR).iterdir()
            if p.name != artifacts.CURRENT_RUN]
    assert len(runs) == 2
    assert set(published(tmp_path).values()) == {"d"}
