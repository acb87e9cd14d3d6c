"""--finetune from the session's trained model, driven by a config file and a CSV; model card;
TensorBoard logs."""
import json
import re
import shutil

import pytest
from conftest import QUICK_ARGS, ROOT, SMALL_INTENTS, run_script

from intentkit.training.config import TrainConfig
from intentkit.training.config_file import read_config_file

pytestmark = pytest.mark.slow  # trains models (minutes)


def copy_of_trained(trained, tmp_path):
    out = tmp_path / "model"
    shutil.copytree(trained["out"], out, symlinks=True)
    return out


def write_csv(path, intents):
    rows = [f"{text},{tag}" for tag, patterns in intents.items() for text in patterns]
    path.write_text("text,intent\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return path


def test_model_card_describes_the_run(trained):
    card = (trained["out"] / "model_card.md").read_text()
    manifest = json.loads((trained["out"] / "manifest.json").read_text())
    assert manifest["data"]["sha256"] in card
    assert "goodbye, greeting, resume, salary" in card
    assert f"| test (held out) | {manifest['splits']['test']} |" in card
    assert f"| single | {manifest['metrics']['single']['accuracy']:.4f} |" in card
    assert f"| ensemble | {manifest['fallback_thresholds']['ensemble']:.3f} |" in card
    assert "| tensorflow | 2." in card and "--ensemble-epochs 30" in card
    assert manifest["command_line"] in card and "Intended use" in card
    assert "model_card.md" in manifest["files"]
    # The whole run's progress: every phase timed (write is still running when it is recorded).
    assert list(manifest["phase_seconds"]) == ["prepare", "search", "fit", "choose", "refit"]


def test_saved_configuration_replays_with_config(trained):
    saved = trained["out"] / "training_config.json"
    assert TrainConfig(**read_config_file(saved)).to_dict() == json.loads(saved.read_text())


def test_finetune_with_same_labels_is_faster_and_logs_time_saved(trained, tmp_path):
    out = copy_of_trained(trained, tmp_path)
    changed = {**SMALL_INTENTS, "greeting": [*SMALL_INTENTS["greeting"], "hiya bot"]}
    data = write_csv(tmp_path / "intents.csv", changed)
    logs = tmp_path / "tensorboard"
    options = tmp_path / "finetune.yaml"
    options.write_text(f"data: {data}\nout: {out}\nfinetune: true\ntensorboard: {logs}\n")
    result = run_script(ROOT / "jobs.py", "--config", options, *QUICK_ARGS)
    assert result.returncode == 0, result.stderr
    assert "s saved (" in result.stderr and "tuning Baseline" not in result.stderr
    # The copied run's embedding cache: only the one new pattern is embedded again.
    cached = re.findall(r"embedding cache: (\d+) of (\d+) texts found, (\d+) embedded",
                        result.stderr)
    assert cached and sum(int(embedded) for _, _, embedded in cached) == 1, cached
    assert "training: fit (phase 2 of 4)" in result.stderr  # no search, no refit

    manifest = json.loads((out / "manifest.json").read_text())
    previous = json.loads((trained["out"] / "manifest.json").read_text())
    assert manifest["data"]["patterns"] == previous["data"]["patterns"] + 1
    assert manifest["finetune"]["full_run_seconds"] == previous["training_seconds"]
    assert manifest["training_seconds"] < previous["training_seconds"]
    assert manifest["tuning"] == [] and manifest["best_config"] == previous["best_config"]
    assert list(manifest["phase_seconds"]) == ["prepare", "fit", "choose"]
    config = json.loads((out / "training_config.json").read_text())
    assert config["finetune"] is True and config["data"] == str(data)
    assert "fine-tuned from the previous model" in (out / "model_card.md").read_text()
    # The members trained epoch by epoch; the linear MiniLM head is fitted at once (no epochs).
    for member in ("cnn_bilstm", "cnn"):
        assert list((logs / member / "train").glob("events.out.tfevents.*")), member
        assert list((logs / member / "validation").glob("events.out.tfevents.*")), member

    predicted = run_script(ROOT / "predict.py", "hello there friend", "--model",
                           out / "advanced_model_improved.h5", "--preprocessor",
                           out / "enhanced_preprocessor.pickle", "--ensemble", "--runtime",
                           "numpy")
    assert predicted.returncode == 0, predicted.stderr
    assert json.loads(predicted.stdout)["model_type"] == "ensemble"


def test_finetune_refuses_a_changed_label_set_and_keeps_the_model(trained, tmp_path):
    out = copy_of_trained(trained, tmp_path)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    changed = {**SMALL_INTENTS, "thanks": ["thanks", "thank you", "cheers", "much appreciated",
                                           "thanks a lot"]}
    changed.pop("resume")
    data = write_csv(tmp_path / "intents.csv", changed)
    result = run_script(ROOT / "jobs.py", "--data", data, "--out", out, "--finetune",
                        *QUICK_ARGS)
    assert result.returncode == 2
    assert (f"{data}: --finetune keeps every intent of the model published in {out}, and the "
            "data lacks resume. Train without --finetune") in result.stderr
    assert "Traceback" not in result.stderr
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
