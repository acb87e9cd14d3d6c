"""The Keras MiniLM against the NumPy one, its saved weights, and a few fine-tuning steps."""
import logging

import keras
import numpy as np
import pytest
from safetensors.numpy import load_file
from test_pretrained import REFERENCE_EMBEDDINGS, REFERENCE_IDS

from intentkit.encoders.minilm import SentenceEncoder, model_dir
from intentkit.encoders.trainable import (
    TrainableEncoder,
    _class_groups,
    finetune_encoder,
    supervised_contrastive_loss,
)

pytestmark = pytest.mark.slow  # trains models (minutes)

TEXTS = list(REFERENCE_IDS) + list(REFERENCE_EMBEDDINGS) + ["hi"]
INTENTS = {"greeting": ["hello there", "hi", "good morning", "hey how are you"],
           "balance": ["what is my balance", "how much money do i have", "show my balance",
                       "account balance please"],
           "goodbye": ["bye", "see you later", "good night", "talk to you soon"]}


TRAIN_TEXTS = [text for patterns in INTENTS.values() for text in patterns]
TRAIN_LABELS = [tag for tag, patterns in INTENTS.items() for _ in patterns]


@pytest.fixture(scope="module")
def reference():
    """The NumPy runtime's embeddings of TEXTS with the package's weights."""
    return SentenceEncoder(backend="numpy").embed(TEXTS)


def test_keras_encoder_matches_the_numpy_encoder(reference):
    keras_embeddings = TrainableEncoder().embed(TEXTS)
    assert keras_embeddings.shape == (len(TEXTS), 384)
    assert np.abs(keras_embeddings - reference).max() <= 1e-5


def test_the_keras_model_round_trips_through_a_keras_file(tmp_path):
    """The custom layers' configs rebuild the same network (keras.saving registration)."""
    encoder = TrainableEncoder()
    encoder.model.save(tmp_path / "encoder.keras")
    loaded = keras.saving.load_model(tmp_path / "encoder.keras")
    ids = np.zeros((2, 12), dtype=np.int32)
    for row, text in enumerate(["hi", "what is my account balance today"]):
        tokens = encoder.tokenizer.encode(text)
        ids[row, :len(tokens)] = tokens
    np.testing.assert_allclose(loaded(ids), encoder.model(ids), atol=1e-6)


def test_contrastive_loss_prefers_same_intent_neighbours():
    labels = np.array([0, 0, 1, 1])
    clustered = np.array([[1, 0], [1, 0], [0, 1], [0, 1]], dtype=np.float32)
    mixed = np.array([[1, 0], [0, 1], [1, 0], [0, 1]], dtype=np.float32)
    assert (float(supervised_contrastive_loss(clustered, labels, 0.1))
            < float(supervised_contrastive_loss(mixed, labels, 0.1)))


def finetune(seed=0, **options):
    """A few steps with a high learning rate: enough to move the weights, seconds to run."""
    options = {"time_budget_s": 120, "epochs": 1, "batch_size": 8, "group_size": 2,
               "learning_rate": 1e-3, **options}
    return finetune_encoder(TRAIN_TEXTS, TRAIN_LABELS, seed=seed, **options)


def test_class_groups_cover_every_row_once_and_leave_no_row_alone():
    label_ids = np.array([0] * 5 + [1] * 9 + [2] * 2 + [3])  # 5 and 9 leave one over
    groups = _class_groups(label_ids, 4, np.random.default_rng(0))
    assert sorted(r for group in groups for r in group) == list(range(len(label_ids)))
    assert all(len(set(label_ids[group])) == 1 for group in groups)
    assert sorted(len(group) for group in groups) == [1, 2, 4, 5, 5]  # label 3 has one row


@pytest.fixture(scope="module")
def finetuned():
    return finetune()


def test_finetuning_changes_the_encoder_and_trains_a_head(finetuned, reference):
    assert finetuned.classes == sorted(INTENTS)
    assert np.abs(finetuned.embed(TEXTS) - reference).max() > 1e-3
    probabilities = finetuned.predict_proba(["what is my balance", "bye"])
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, atol=1e-5)
    assert list(np.array(finetuned.classes)[probabilities.argmax(axis=1)]) == ["balance",
                                                                               "goodbye"]


def test_saved_weights_load_into_the_numpy_runtime(finetuned, tmp_path):
    path = tmp_path / "encoder.safetensors"
    finetuned.save_weights(path)
    saved, package = load_file(str(path)), load_file(str(model_dir() / "model.safetensors"))
    assert {n: (t.shape, t.dtype) for n, t in saved.items()} == {
        n: (t.shape, t.dtype) for n, t in package.items()}
    runtime = SentenceEncoder(weights_file=path)
    assert np.abs(runtime.embed(TEXTS) - finetuned.embed(TEXTS)).max() <= 1e-5
    assert np.abs(TrainableEncoder(path).embed(TEXTS) - finetuned.embed(TEXTS)).max() <= 1e-6


def test_finetuning_is_seeded(finetuned):
    again = finetune()
    np.testing.assert_array_equal(again.embed(TEXTS), finetuned.embed(TEXTS))
    np.testing.assert_array_equal(again.head, finetuned.head)


def test_finetuning_logs_progress_and_stops_at_the_budget(caplog):
    with caplog.at_level(logging.INFO, logger="intentkit.encoders.trainable"):
        finetune(time_budget_s=0, epochs=50)
    assert "time budget of 0 s reached at step 1/" in caplog.text
    assert "ETA" in caplog.text
