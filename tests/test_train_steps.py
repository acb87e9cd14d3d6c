"""Pipeline steps on their own: given validation/test files, data-size rules, the pretrained
member's switches. (End-to-end runs are in test_pipeline.py.)"""
import json
import logging

import numpy as np
import pytest
from conftest import SMALL_INTENTS, write_intents

from intentkit import artifacts
from intentkit.data.intents import load_intents, split_data
from intentkit.encoders import minilm
from intentkit.errors import DataError
from intentkit.serving.predictor import Predictor
from intentkit.training import members, pipeline
from intentkit.training.config import TrainConfig

TEXTS = [text for patterns in SMALL_INTENTS.values() for text in patterns]
LABELS = [tag for tag, patterns in SMALL_INTENTS.items() for _ in patterns]


def test_split_size_zero_leaves_that_split_empty():
    split = split_data(TEXTS, LABELS, val_size=0.25, test_size=0, seed=1)
    assert split.test_texts == [] and len(split.val_texts) == 12
    assert sorted(split.train_texts + split.val_texts) == sorted(TEXTS)


def test_given_files_replace_the_carved_splits(tmp_path, caplog):
    data = write_intents(tmp_path / "intents.json")
    test_rows = [{"text": "good morning bot", "intent": "greeting"},
                 {"text": "hello there", "intent": "greeting"}]  # also a training pattern
    (tmp_path / "test.json").write_text(json.dumps(test_rows))
    config = TrainConfig(data=str(data), test_data=str(tmp_path / "test.json"))
    with caplog.at_level(logging.WARNING):
        split = pipeline.split_first(load_intents(data), config)
    assert split.test_texts == ["good morning bot", "hello there"]
    assert len(split.train_texts) + len(split.val_texts) == len(TEXTS)  # nothing carved for test
    assert "1 of 2 test texts also appear in the training data" in caplog.text


@pytest.mark.parametrize("rows, message", [
    ([], "no labelled rows"),
    ([{"text": "what is the weather", "intent": "oos"}], "1 intent(s) not in"),
])
def test_bad_given_files_are_refused_with_the_file_name(tmp_path, rows, message):
    data = write_intents(tmp_path / "intents.json")
    (tmp_path / "val.json").write_text(json.dumps(rows))
    config = TrainConfig(data=str(data), val_data=str(tmp_path / "val.json"))
    with pytest.raises(DataError, match="val.json") as error:
        pipeline.split_first(load_intents(data), config)
    assert message in str(error.value)


def test_auto_options_follow_the_data_size():
    small = pipeline.resolve_auto(TrainConfig(), 900)
    large = pipeline.resolve_auto(TrainConfig(), 15000)
    assert (small.batch_size, small.patience, small.epochs, small.ensemble_weights) == (
        64, 5, 150, "fitted")
    assert (large.batch_size, large.patience, large.epochs, large.ensemble_weights) == (
        256, 3, 20, "fitted")
    assert pipeline.resolve_auto(TrainConfig(batch_size=32), 15000).batch_size == 32  # explicit


def _dataset(rows_per_class, classes=3):
    y = np.repeat(np.eye(classes), rows_per_class, axis=0)
    x = np.arange(len(y))[:, None]
    return members.Dataset(x, y, x, y, x, y)


def test_tuning_sample_is_stratified_and_skipped_when_it_cannot_be():
    sample = members.sample_rows(_dataset(100), max_rows=60, seed=0)
    assert len(sample.x_train) == 60
    assert sample.y_train.sum(axis=0).tolist() == [20, 20, 20]
    assert len(members.sample_rows(_dataset(100), max_rows=299, seed=0).x_train) == 300
    assert len(members.sample_rows(_dataset(10), max_rows=100, seed=0).x_train) == 30


def test_augmentation_is_skipped_above_the_row_limit(caplog):
    split = split_data(TEXTS, LABELS, seed=0)
    with caplog.at_level(logging.INFO):
        texts, _ = pipeline.augment_and_balance(split, TrainConfig(augmentation_max_rows=10))
    assert texts == split.train_texts
    assert "augmentation skipped" in caplog.text
    texts, _ = pipeline.augment_and_balance(split, TrainConfig(augmentation_factor=1))
    assert len(texts) > len(split.train_texts)


def test_sentence_embeddings_only_for_the_pretrained_member(monkeypatch, caplog, tmp_path):
    split = split_data(TEXTS, LABELS, seed=0)

    def encoder_of(config):
        return pipeline.sentence_encoder(config, split, tmp_path)[0]
    assert encoder_of(TrainConfig(ensemble=False)) is None
    assert encoder_of(TrainConfig(transformer="scratch")) is None
    embedded = pipeline.sentence_embeddings(encoder_of(TrainConfig()), ["hi"], ["bye", "see you"])
    assert [e.shape for e in embedded] == [(1, 384), (2, 384)]

    def missing():
        raise minilm.PretrainedUnavailable("the package is not installed")
    monkeypatch.setattr(minilm, "sentence_encoder", missing)
    with caplog.at_level(logging.WARNING):
        assert encoder_of(TrainConfig()) is None
    assert "trained from scratch instead" in caplog.text


def test_an_ensemble_is_refused_with_other_encoder_weights(trained, monkeypatch):
    class OtherEncoder:
        sha256 = "0" * 64
    monkeypatch.setattr(minilm, "sentence_encoder", OtherEncoder)
    with pytest.raises(artifacts.ArtifactError, match="installed ones are 000000"):
        Predictor(trained["model"], trained["preprocessor"], use_ensemble=True)
    # The single model does not read embeddings and still loads.
    assert Predictor(trained["model"], trained["preprocessor"],
                     use_ensemble=False).predict("hi")["intent"]


def test_ctrl_c_swallowed_by_native_code_still_stops_the_run():
    """TensorFlow's ops can clear the KeyboardInterrupt that Ctrl-C raises; the flag set by
    the handler stops the run at the next check all the same."""
    import signal

    from intentkit.training import interrupts
    with interrupts.interruptible():
        try:
            signal.raise_signal(signal.SIGINT)
        except KeyboardInterrupt:
            pass  # swallowed, as native code can
        with pytest.raises(KeyboardInterrupt):
            interrupts.stop_if_interrupted()
    with interrupts.interruptible():
        interrupts.stop_if_interrupted()  # a new run starts clean


def test_the_default_answer_is_the_best_on_validation():
    true = np.array([0, 1, 1])
    good, bad = np.eye(2)[[0, 1, 1]] * 0.9 + 0.05, np.eye(2)[[1, 1, 1]] * 0.9 + 0.05
    assert pipeline.choose_default({"single": good, "ensemble": bad}, true) == "single"
    assert pipeline.choose_default({"single": bad, "ensemble": good}, true) == "ensemble"
    confident = np.eye(2)[[0, 1, 1]] * 0.98 + 0.01  # same accuracy, lower log-loss
    assert pipeline.choose_default({"single": good, "ensemble": confident}, true) == "ensemble"


def test_pretrained_word_vectors_start_the_single_models_embedding():
    config = TrainConfig(augmentation_factor=0, ensemble=False)
    split = split_data(TEXTS, LABELS, seed=0)
    preprocessor, dataset = pipeline.featurize(split, sorted(SMALL_INTENTS), config)
    words = preprocessor.words()
    encoder = minilm.sentence_encoder()
    assert dataset.word_vectors.shape == (preprocessor.vocab_size, minilm.HIDDEN)
    assert not dataset.word_vectors[:2].any()  # padding and OOV start at zero
    row = preprocessor.word_index_[words[5]]
    pieces = encoder.tokenizer.pieces(words[5])
    np.testing.assert_allclose(dataset.word_vectors[row], encoder.word[pieces].mean(axis=0))
    model = members.single_model(dataset, preprocessor, len(SMALL_INTENTS),
                                 {"embedding_dim": 100, "dropout": 0.3})
    np.testing.assert_array_equal(model.get_layer("embedding").get_weights()[0],
                                  dataset.word_vectors)  # the vectors' width, not the trial's

    _, scratch = pipeline.featurize(split, sorted(SMALL_INTENTS),
                                 TrainConfig(augmentation_factor=0, word_vectors="scratch"))
    assert scratch.word_vectors is None
    model = members.single_model(scratch, preprocessor, len(SMALL_INTENTS),
                                 {"embedding_dim": 100, "dropout": 0.3})
    assert model.get_layer("embedding").get_weights()[0].shape == (preprocessor.vocab_size, 100)
