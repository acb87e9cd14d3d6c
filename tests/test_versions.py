"""Versions of a published model: run ids, `intentkit runs list|show|promote|rollback|prune`,
retention that never removes the live, the rollback target or a pinned run."""
import json
import re
import shutil

import pytest
from conftest import republish
from test_artifacts import stage

from intentkit import artifacts
from intentkit.artifacts import runs as versions
from intentkit.cli import main
from intentkit.errors import ArtifactError
from intentkit.serving.predictor import Predictor, get_predictor

RUN_ID = re.compile(r"\d{8}T\d{12}-[0-9a-f]{8}")


@pytest.fixture
def model(trained, tmp_path):
    """A copy of the trained model with two more runs: `never` (threshold 0, never the
    fallback) then `always` (threshold 1.01, always the fallback), the live one."""
    out = tmp_path / "model"
    shutil.copytree(trained["out"], out, symlinks=True)
    first = versions.current_run(out)
    never = republish(out, 0.0)
    always = republish(out, 1.01)
    return {"out": out, "first": first, "never": never, "always": always}


def answers_fallback(out):
    predictor = get_predictor(str(out / artifacts.MODEL_FILE),
                              str(out / artifacts.PREPROCESSOR_FILE), runtime="numpy")
    return predictor.predict("what does a data scientist earn")["fallback"], \
        predictor.run_info["run"]


def test_a_run_id_is_its_time_and_a_hash_of_data_and_config_recorded_in_its_manifest(model):
    out = model["out"]
    for run_id in (model["never"], model["always"]):
        assert RUN_ID.fullmatch(run_id), run_id
        manifest = versions.manifest_of(out, run_id)
        assert manifest["run_id"] == run_id
    # Same data and config: the same hash, another time.
    assert model["never"].split("-")[1] == model["always"].split("-")[1]
    assert model["never"] < model["always"]


def test_promote_and_rollback_switch_the_live_run_and_a_loaded_predictor_follows(model,
                                                                                 capsys):
    out = model["out"]
    assert answers_fallback(out) == (True, model["always"])
    assert main(["runs", "rollback", "-m", str(out)]) == 0
    assert capsys.readouterr().out.strip() == f"live: {model['never']}"
    assert answers_fallback(out) == (False, model["never"])
    assert main(["runs", "promote", "-m", str(out), model["always"]]) == 0
    assert answers_fallback(out) == (True, model["always"])
    # Rollback goes back along the history: to `never`, then to the first run.
    assert main(["runs", "rollback", "-m", str(out)]) == 0
    assert versions.current_run(out) == model["never"]
    assert main(["runs", "rollback", "-m", str(out)]) == 0
    assert versions.current_run(out) == model["first"]
    assert [e["action"] for e in versions.history(out)][-4:] == ["rollback", "promote",
                                                                 "rollback", "rollback"]


def test_runs_list_and_show(model, capsys):
    out = model["out"]
    assert main(["runs", "list", "-m", str(out), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [row["id"] for row in rows] == [model["first"], model["never"], model["always"]]
    assert [row["live"] for row in rows] == [False, False, True]
    assert all(0 <= row["test_accuracy"] <= 1 and row["default_model"] for row in rows)
    assert main(["runs", "list", "-m", str(out)]) == 0
    table = capsys.readouterr().out
    assert f"* {model['always']}" in table
    assert main(["runs", "show", "-m", str(out), model["never"], "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["id"] == model["never"] and shown["labels"]


def error_lines(caplog):
    return [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]


def test_an_unknown_run_id_is_one_line_and_exit_2_and_nothing_changes(model, caplog):
    out = model["out"]
    assert main(["runs", "promote", "-m", str(out), "20990101T000000000000-deadbeef"]) == 2
    [error] = error_lines(caplog)
    assert "no run '20990101T000000000000-deadbeef'" in error and len(error.splitlines()) == 1
    assert versions.current_run(out) == model["always"]


def test_a_run_failing_verification_is_never_made_live(model, caplog):
    out = model["out"]
    damaged = out / artifacts.RUNS_DIR / model["never"] / artifacts.MODEL_FILE
    damaged.write_bytes(damaged.read_bytes()[:-10])
    assert main(["runs", "promote", "-m", str(out), model["never"]]) == 2
    [error] = error_lines(caplog)
    assert f"run {model['never']} fails verification" in error
    assert len(error.splitlines()) == 1
    assert versions.current_run(out) == model["always"]


def test_retention_keeps_the_newest_the_live_the_rollback_target_and_pinned_runs(tmp_path):
    ids = []
    for tag in "abcdef":
        artifacts.publish(stage(tmp_path, tag), tmp_path, keep=100)
        ids.append(versions.current_run(tmp_path))
    handle = versions.pin(tmp_path, ids[0])  # a serving process answers from run a
    assert versions.prune(tmp_path, keep=2) == ids[1:4]
    assert versions.run_ids(tmp_path) == [ids[0], ids[4], ids[5]]
    handle.close()  # the process stopped: its pin is stale
    assert versions.pinned_runs(tmp_path) == set()
    assert versions.prune(tmp_path, keep=1) == [ids[0]]
    # The live run (f) and the one a rollback returns to (e) stay even with --keep 1.
    assert versions.run_ids(tmp_path) == [ids[4], ids[5]]
    with pytest.raises(ArtifactError, match="--keep must be at least 1"):
        versions.prune(tmp_path, keep=0)


def test_a_promoted_older_run_is_kept_and_rollback_returns_to_the_one_before(model):
    out = model["out"]
    versions.promote(out, model["first"])
    assert versions.rollback_target(out) == model["always"]
    assert set(versions.prune(out, keep=1)) == {model["never"]}
    assert versions.run_ids(out) == [model["first"], model["always"]]


def test_from_dir_opens_a_named_version(model):
    out = model["out"]
    never = Predictor.from_dir(out, version=model["never"], runtime="numpy")
    assert never.run_info["run"] == model["never"]
    assert not never.predict("what does a data scientist earn")["fallback"]
    live = Predictor.from_dir(out, version="current", runtime="numpy")
    assert live.run_info["run"] == model["always"]
    with pytest.raises(ArtifactError, match="no run '20990101T000000000000-deadbeef'"):
        Predictor.from_dir(out, version="20990101T000000000000-deadbeef")


def test_prune_removes_only_run_directories_that_are_provably_ours(tmp_path, caplog):
    ids = []
    for tag in "abcd":
        artifacts.publish(stage(tmp_path, tag), tmp_path, keep=100)
        ids.append(versions.current_run(tmp_path))
    runs_dir = tmp_path / artifacts.RUNS_DIR
    (runs_dir / ids[0] / "notes.txt").write_text("mine")  # a file added to an old run
    lookalike = runs_dir / "20000101T000000000000-0000abcd"  # a run's name, no manifest
    lookalike.mkdir()
    (lookalike / "photo.jpg").write_bytes(b"cat")
    (runs_dir / "20000101T000000000001-0000abcd").symlink_to(runs_dir / ids[1])
    (runs_dir / artifacts.PINS_DIR).mkdir()
    (runs_dir / artifacts.PINS_DIR / "mine.lock").write_text("not a pin")
    assert main(["runs", "prune", "-m", str(tmp_path), "--keep", "1"]) == 0
    # b is gone; a holds a file that is not its own; c is the rollback target, d is live.
    assert versions.run_ids(tmp_path) == [ids[0], ids[2], ids[3]]
    assert (runs_dir / ids[0] / "notes.txt").read_text() == "mine"
    assert (lookalike / "photo.jpg").read_bytes() == b"cat"
    assert (runs_dir / "20000101T000000000001-0000abcd").is_symlink()
    assert (runs_dir / artifacts.PINS_DIR / "mine.lock").read_text() == "not a pin"
    assert any("holds files its manifest does not list" in r.getMessage()
               for r in caplog.records)


@pytest.mark.parametrize("arguments, message", [
    (["runs", "prune", "--keep", "0"], "--keep: must be at least 1"),
    (["runs", "rollback"], "no earlier run to roll back to"),
    (["runs", "show", "20990101T000000000000-deadbeef"], "no run '20990101T000000000000-dead"),
])
def test_bad_runs_commands_are_one_line_and_exit_2(tmp_path, arguments, message, capsys,
                                                   caplog):
    artifacts.publish(stage(tmp_path, "a"), tmp_path)
    live = versions.current_run(tmp_path)
    try:
        code = main([*arguments[:2], "-m", str(tmp_path), *arguments[2:]])
    except SystemExit as exit_:  # argparse's own errors exit by themselves
        code = exit_.code
    assert code == 2
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    said = errors or capsys.readouterr().err.strip().splitlines()[-1:]
    assert len(said) == 1 and message in said[0], said
    assert versions.current_run(tmp_path) == live
