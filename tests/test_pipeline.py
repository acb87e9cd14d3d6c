"""End to end: `python jobs.py` on small data, then prediction from separate processes."""
import json
import re
import shutil

import pytest
from conftest import QUICK_ARGS, ROOT, TRAINED_ARGS, reweight_opened_runs, run_script, write_intents

from intentkit.training.config import QUICK

pytestmark = pytest.mark.slow  # trains models (minutes)

FILES = ["advanced_model_improved.h5", "enhanced_preprocessor.pickle",
         "improved_training_history.png", "manifest.json", "training_config.json",
         "ensemble_models/ensemble.json", "ensemble_models/cnn_bilstm.h5",
         "ensemble_models/transformer.h5", "ensemble_models/cnn.h5", "report/metrics.json",
         "report/classification_report.txt", "report/confusion_single.png",
         "report/confusion_ensemble.png", "report/reliability.png", "report/errors.csv",
         "report/summary.md"]


def test_training_writes_every_artifact_and_reports_test_accuracy(trained):
    for name in FILES:
        assert (trained["out"] / name).is_file(), name
    assert "TEST single   accuracy" in trained["log"]
    assert "TEST ensemble accuracy" in trained["log"]
    assert re.search(r"tuning Conservative +(pruned|early-stopped|completed) after",
                     trained["log"])
    assert not list(trained["out"].glob(".staging-*")), "staging directory left behind"
    config = json.loads((trained["out"] / "training_config.json").read_text())
    assert config["epochs"] == 30, "a flag given explicitly must win over --quick"
    assert config["augmentation_factor"] == 1, "--quick lightens augmentation"
    assert "Traceback" not in trained["log"] and "Warning" not in trained["log"]


def test_pickle_has_the_seed_keys_and_loads_outside_main(trained):
    code = ("import pickle, sys; b = pickle.load(open(sys.argv[1], 'rb'));"
            "print(type(b['preprocessor']).__module__, sorted(b))")
    result = run_script("-c", code, trained["preprocessor"])
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("intentkit.text ")
    for key in ("preprocessor", "label2idx", "idx2label", "max_sequence_length", "vocab_size",
                "best_config"):
        assert repr(key) in result.stdout


def test_manifest_checksums_and_metrics_match_the_files(trained):
    from intentkit.artifacts import sha256
    manifest = json.loads((trained["out"] / "manifest.json").read_text())
    assert manifest["labels"] == ["goodbye", "greeting", "resume", "salary"]
    assert manifest["data"]["sha256"] == sha256(trained["data"])
    for name, digest in manifest["files"].items():
        assert sha256(trained["out"] / name) == digest, name
    metrics = json.loads((trained["out"] / "report" / "metrics.json").read_text())
    assert manifest["metrics"]["single"]["accuracy"] == metrics["single"]["accuracy"]
    assert [t["name"] for t in manifest["tuning"]] == [
        "Baseline", "Higher dimension", "Larger model", "Conservative"]


PREDICT_SCRIPT = """
import json, sys
from predict import predict_intent_improved

out = []
for text in ["hey there, good morning", "how much does a devops engineer earn",
             "please review my cv", "see you later"]:
    out.append(predict_intent_improved(text, model_path=sys.argv[1], preprocessor_path=sys.argv[2],
                                       use_ensemble=sys.argv[3] == "1", threshold=0.0))
print(json.dumps(out))
"""


@pytest.mark.parametrize("ensemble", [False, True])
def test_separate_process_gets_sensible_intents(trained, ensemble):
    result = run_script("-c", PREDICT_SCRIPT, trained["model"], trained["preprocessor"],
                        "1" if ensemble else "0")
    assert result.returncode == 0, result.stderr
    answers = json.loads(result.stdout)
    for answer in answers:
        assert set(answer) >= {"intent", "confidence", "all_probabilities", "model_type"}
        assert answer["model_type"] == ("ensemble" if ensemble else "single")
        assert abs(sum(answer["all_probabilities"].values()) - 1) < 1e-4
    intents = [a["intent"] for a in answers]
    assert sum(a == b for a, b in zip(intents, ["greeting", "salary", "resume", "goodbye"])) >= 3


def test_same_seed_retrain_gives_the_same_confidences(trained, tmp_path):
    out = tmp_path / "again"
    result = run_script(ROOT / "jobs.py", "--data", trained["data"], "--out", out,
                        "--feedback", trained["feedback"], *TRAINED_ARGS)  # the fixture's inputs
    assert result.returncode == 0, result.stderr
    first = json.loads((trained["out"] / "report" / "metrics.json").read_text())
    second = json.loads((out / "report" / "metrics.json").read_text())
    assert first["single"]["log_loss"] == second["single"]["log_loss"]
    assert first["ensemble"]["log_loss"] == second["ensemble"]["log_loss"]


@pytest.mark.parametrize("mutation, message", [
    (lambda p: p.write_text('{"intents": [}'), "invalid JSON at line 1"),
    (lambda p: p.unlink(), "no such file"),
    (lambda p: write_intents(p, {"a": ["x"] * 9, "b": ["y", "z"]}), "distinct pattern(s)"),
])
def test_bad_data_exits_nonzero_and_leaves_the_model_untouched(trained, tmp_path, mutation,
                                                                message):
    out = tmp_path / "model"
    shutil.copytree(trained["out"], out, symlinks=True)  # a published run, links and all
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    data = tmp_path / "data.json"
    write_intents(data)
    mutation(data)
    result = run_script(ROOT / "jobs.py", "--data", data, "--out", out, "--quick")
    assert result.returncode == 2
    assert message in result.stderr and str(data) in result.stderr
    assert "Traceback" not in result.stderr
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_unusable_output_directory_fails_before_training(tmp_path, trained):
    not_a_directory = tmp_path / "file"
    not_a_directory.write_text("x")
    result = run_script(ROOT / "jobs.py", "--data", trained["data"], "--out", not_a_directory,
                        "--quick")
    assert result.returncode == 2
    assert "--out must be a directory" in result.stderr and "Traceback" not in result.stderr
    assert "tuning" not in result.stderr + result.stdout


def test_evaluate_command_rescores_the_saved_model(trained, tmp_path):
    report = tmp_path / "report"
    result = run_script(ROOT / "jobs.py", "evaluate", "--data", trained["data"], "--model-dir",
                        trained["out"], "--report", report)
    assert result.returncode == 0, result.stderr
    metrics = json.loads((report / "metrics.json").read_text())
    assert set(metrics) == {"single", "ensemble"}
    assert metrics["single"]["n"] == 48


def test_help_lists_the_options():
    result = run_script(ROOT / "jobs.py", "--help")
    assert result.returncode == 0
    for flag in ("--data", "--out", "--seed", "--augmentation-factor", "--balance", "--quick"):
        assert flag in result.stdout


def test_ctrl_c_stops_cleanly_and_keeps_the_previous_model(trained, tmp_path):
    import signal
    import subprocess
    import sys
    out = tmp_path / "model"
    shutil.copytree(trained["out"], out, symlinks=True)  # a published run, links and all
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    process = subprocess.Popen([sys.executable, str(ROOT / "jobs.py"), "--data", trained["data"],
                                "--out", out, *TRAINED_ARGS], cwd=ROOT,
                               stderr=subprocess.PIPE,
                               stdout=subprocess.DEVNULL, text=True)
    for line in process.stderr:
        if line.startswith("tuning"):
            process.send_signal(signal.SIGINT)
            break
    rest = process.stderr.read()
    assert process.wait(timeout=120) == 130
    assert "interrupted: nothing was published" in rest and "Traceback" not in rest
    assert not list(out.glob(".staging-*"))
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before


def test_quick_trains_the_pretrained_member_briefly_too(trained):
    """--quick is a smoke run: the MiniLM head included. The dense head (--head mlp) used to
    train up to 60 epochs; the default linear head is a logistic regression, fitted at once."""
    config = json.loads((trained["out"] / "training_config.json").read_text())
    assert config["head"] == "linear" and config["head_epochs"] == QUICK["head_epochs"]
    assert not [line for line in trained["log"].splitlines()
                if line.startswith("transformer epoch")]
    manifest = json.loads((trained["out"] / "manifest.json").read_text())
    assert manifest["linear_head"]["c"] in (1.0, 10.0, 100.0)


def test_a_fine_tuned_encoder_is_published_verified_and_served(trained, tmp_path, monkeypatch):
    """--transformer finetune: the encoder's weights are part of the run (checksummed in
    ensemble.json and the manifest), both runtimes read them, --finetune continues from them,
    and a changed file is refused."""
    import hashlib

    import numpy as np

    from intentkit import artifacts
    from intentkit.errors import ArtifactError
    from intentkit.serving.predictor import Predictor
    out = tmp_path / "model"
    result = run_script(ROOT / "jobs.py", "--data", trained["data"], "--out", out, *QUICK_ARGS,
                        "--transformer", "finetune", "--encoder-time-budget", "15")
    assert result.returncode == 0, result.stderr[-3000:]
    encoder_file = out / artifacts.ENSEMBLE_DIR / artifacts.ENCODER_FILE
    spec = json.loads((out / artifacts.ENSEMBLE_DIR / artifacts.ENSEMBLE_SPEC).read_text())
    member = next(m for m in spec["members"] if m["input"] == "sentence_embedding")
    digest = hashlib.sha256(encoder_file.read_bytes()).hexdigest()
    assert member["encoder_file"] == artifacts.ENCODER_FILE and member["encoder_sha256"] == digest
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["files"][f"{artifacts.ENSEMBLE_DIR}/{artifacts.ENCODER_FILE}"] == digest
    assert "fine-tuned" in manifest["encoder"] and "fine-tuned" in (
        out / "model_card.md").read_text()

    paths = (out / artifacts.MODEL_FILE, out / artifacts.PREPROCESSOR_FILE)
    # Every member counted: a fitted weight of 0 would skip the encoder's member.
    reweight_opened_runs(monkeypatch, lambda _, members: 1 / members)
    keras_answers = Predictor(*paths, use_ensemble=True)
    assert keras_answers.encoder.sha256 == digest != artifacts.open_published(
        trained["out"]).encoder.sha256
    numpy_answers = Predictor(*paths, use_ensemble=True, runtime="numpy")
    texts = ["what does a tester earn", "hello there", "fix my cv"]
    assert np.allclose(keras_answers.predict_proba(texts), numpy_answers.predict_proba(texts),
                       atol=1e-5)

    # Fast retraining starts from the run's encoder: it embeds with it and publishes it again.
    result = run_script(ROOT / "jobs.py", "--data", trained["data"], "--out", out, *QUICK_ARGS,
                        "--finetune")
    assert result.returncode == 0, result.stderr[-3000:]
    spec = json.loads((out / artifacts.ENSEMBLE_DIR / artifacts.ENSEMBLE_SPEC).read_text())
    member = next(m for m in spec["members"] if m["input"] == "sentence_embedding")
    assert member["encoder_sha256"] == digest == hashlib.sha256(
        encoder_file.read_bytes()).hexdigest()
    assert "fine-tuned" in json.loads((out / "manifest.json").read_text())["encoder"]
    assert Predictor(*paths, use_ensemble=True).encoder.sha256 == digest

    data = bytearray(encoder_file.read_bytes())
    data[len(data) // 2] ^= 0xFF
    encoder_file.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="does not match"):
        Predictor(*paths, use_ensemble=True)
