"""The public Python API: `from intentkit import Predictor, train, TrainConfig, IntentkitError`."""
import inspect
import json

import pytest
from conftest import QUICK_ARGS, SMALL_INTENTS, run_script

import intentkit
from intentkit import Client, IntentkitError, Predictor, TrainConfig, train
from intentkit.errors import ArtifactError, DataError

MESSAGES = ["what does a data scientist earn", "hello there", "review my cv", "bye for now"]


def test_the_public_names_are_the_documented_ones():
    assert set(intentkit.__all__) == {"Predictor", "train", "TrainConfig", "IntentkitError",
                                      "Client", "__version__"}
    assert issubclass(ArtifactError, IntentkitError) and issubclass(DataError, IntentkitError)
    with pytest.raises(AttributeError):
        intentkit.__getattr__("Trainer")


@pytest.mark.parametrize("function", [Predictor.__init__, Predictor.from_dir, Predictor.predict,
                                      Predictor.predict_batch, Predictor.predict_stream,
                                      Predictor.predict_proba, train, Client.__init__,
                                      Client.predict, Client.predict_batch, Client.feedback,
                                      Client.health])
def test_public_functions_are_fully_annotated(function):
    signature = inspect.signature(function)
    missing = [name for name, parameter in signature.parameters.items()
               if name not in ("self", "cls") and parameter.annotation is inspect.Parameter.empty]
    assert not missing, missing
    assert signature.return_annotation is not inspect.Signature.empty


def test_from_dir_answers_like_the_two_path_constructor(trained):
    by_dir = Predictor.from_dir(trained["out"], runtime="numpy")
    by_paths = Predictor(trained["model"], trained["preprocessor"], runtime="numpy")
    assert by_dir.predict_batch(MESSAGES) == by_paths.predict_batch(MESSAGES)


def test_from_dir_of_a_missing_directory_says_so(tmp_path):
    with pytest.raises(ArtifactError, match="no such directory"):
        Predictor.from_dir(tmp_path / "nowhere")


def test_an_installed_user_predicts_from_another_directory_without_tensorflow(trained, tmp_path):
    code = ("import sys; from intentkit import Predictor; "
            f"p = Predictor.from_dir({str(trained['out'])!r}, runtime='numpy'); "
            "print(p.predict('how much does a developer earn')['intent']); "
            "print('tensorflow' in sys.modules)")
    result = run_script("-c", code, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["salary", "False"]


@pytest.mark.slow
def test_train_on_intents_in_memory_publishes_a_run(tmp_path):
    intents = [{"tag": tag, "patterns": patterns, "responses": [f"about {tag}"]}
               for tag, patterns in SMALL_INTENTS.items()]
    options = dict(zip(QUICK_ARGS[1::2], QUICK_ARGS[2::2]))  # after "--quick"
    config = TrainConfig.quick(out=str(tmp_path / "bot"), ensemble=False,
                               **{key.removeprefix("--").replace("-", "_"): int(value)
                                  for key, value in options.items()})
    metrics = train(config, intents=intents)
    assert "single" in metrics
    manifest = json.loads((tmp_path / "bot" / "manifest.json").read_text())
    assert manifest["labels"] == sorted(SMALL_INTENTS)
    answer = Predictor.from_dir(tmp_path / "bot", runtime="numpy").predict("good morning")
    assert answer["intent"] in SMALL_INTENTS or answer["fallback"]


def test_train_refuses_texts_without_one_label_each(tmp_path):
    with pytest.raises(DataError, match="one label per text"):
        train(TrainConfig(out=str(tmp_path)), texts=["hi", "bye"], labels=["greeting"])
    assert not any(tmp_path.iterdir())
