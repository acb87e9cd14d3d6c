"""--finetune with an intent added since the published run: the members grow an output unit for
it, and the published model answers it."""
import json
import shutil

import keras
import numpy as np
import pytest
from conftest import QUICK_ARGS, ROOT, SMALL_INTENTS, run_script

from intentkit import artifacts
from intentkit.training.members import widened
from intentkit.training.refit import linear_head_model


def test_a_widened_model_keeps_the_old_answers_and_adds_a_unit():
    from sklearn.linear_model import LogisticRegression
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 8)).astype(np.float32)
    ids = np.repeat([0, 1, 2], 20)
    x[ids == 1] += 2
    x[ids == 2] -= 2
    model = linear_head_model(LogisticRegression().fit(x, ids), 8, 3)
    grown = widened(model, ["a", "c", "d"], ["a", "b", "c", "d"])  # "b" is new, in the middle
    before, after = model.predict(x, verbose=0), grown.predict(x, verbose=0)
    assert after.shape == (60, 4)
    # The old labels' probabilities, moved to their new positions, keep their ratios and order.
    np.testing.assert_allclose(after[:, [0, 2, 3]] / after[:, [0, 2, 3]].sum(axis=1, keepdims=True),
                               before, rtol=1e-4, atol=1e-6)
    assert (after[:, [0, 2, 3]].argmax(axis=1) == before.argmax(axis=1)).all()
    assert after[:, 1].max() < after.max(axis=1).min()  # the new unit does not answer yet
    assert widened(model, ["a", "c", "d"], ["a", "c", "d"]) is model
    keras.backend.clear_session()


@pytest.mark.slow  # the session's trained model, fine-tuned
def test_finetune_learns_an_added_intent_and_publishes_it(trained, tmp_path):
    out = tmp_path / "model"
    shutil.copytree(trained["out"], out, symlinks=True)
    thanks = ["thanks", "thank you", "cheers", "much appreciated", "thanks a lot",
              "thank you so much", "many thanks", "thanks for the help", "ty", "big thanks"]
    data = tmp_path / "intents.json"
    data.write_text(json.dumps({"intents": [
        {"tag": tag, "patterns": patterns, "responses": [f"about {tag}"]}
        for tag, patterns in {**SMALL_INTENTS, "thanks": thanks}.items()]}))
    result = run_script(ROOT / "jobs.py", "--data", data, "--out", out, "--finetune",
                        *QUICK_ARGS)
    assert result.returncode == 0, result.stderr
    assert "finetune: 1 new intent(s) learned: thanks" in result.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    previous_labels = json.loads((trained["out"] / "manifest.json").read_text())["labels"]
    assert "thanks" in manifest["labels"] and manifest["finetune"]
    answered = run_script(ROOT / "predict.py", "thank you so much", "-m", out,
                          "--runtime", "numpy")
    assert answered.returncode == 0, answered.stderr
    # The first candidate (a --quick model may still fall back below its threshold).
    assert best_candidate(answered.stdout) == "thanks"
    old = run_script(ROOT / "predict.py", "what does a data scientist earn", "-m", out,
                     "--runtime", "numpy")
    assert best_candidate(old.stdout) == "salary"
    # The token-id members kept every published layer but the output one, which was fitted again
    # with a unit more.
    for member in ("cnn_bilstm.h5", "cnn.h5"):
        before = artifacts.load_model(trained["out"] / "ensemble_models" / member)
        after = artifacts.load_model(out / "ensemble_models" / member)
        for kept, now in zip(before.layers[:-1], after.layers[:-1]):
            for old_weights, new_weights in zip(kept.get_weights(), now.get_weights()):
                np.testing.assert_array_equal(old_weights, new_weights, err_msg=member)
        old_kernel = before.layers[-1].get_weights()[0]
        new_kernel = after.layers[-1].get_weights()[0]
        old_units = [manifest["labels"].index(tag) for tag in previous_labels]
        assert new_kernel.shape == (old_kernel.shape[0], old_kernel.shape[1] + 1)
        assert not np.allclose(new_kernel[:, old_units], old_kernel), member
    keras.backend.clear_session()


def best_candidate(stdout):
    answer = json.loads(stdout)
    return answer["top_k"][0]["intent"] if answer["fallback"] else answer["intent"]
