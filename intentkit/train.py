"""The training pipeline behind `python jobs.py`: split first, then augment, fit, tune, evaluate."""
import itertools
import json
import logging
import random
import re
import shlex
import shutil
import sys
import time
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from sklearn.model_selection import train_test_split
from sklearn.utils.class_weight import compute_class_weight

from . import artifacts, devices, feedback, pretrained
from .augment import Augmenter, upsample
from .data import DataError, duplicate_key, load_examples, load_intents, split_data
from .evaluate import (choose_fallback_threshold, plot_history, reference_baseline,
                       write_report)
from .model_card import write_model_card
from .models import MODEL_BUILDERS, SEED_CONFIGS, build_cnn_bilstm, build_embedding_classifier
from .text import TextPreprocessor

log = logging.getLogger(__name__)

SEED_ENSEMBLE_WEIGHTS = {"cnn_bilstm": 0.4, "transformer": 0.4, "cnn": 0.2}
ENSEMBLE_LEARNING_RATE = 1e-3
# Options left at 0 or "auto". Small data sets need small batches and patient early stopping (a
# small validation split is noisy), and keep the seed's ensemble weights (too few validation
# rows to fit them). Large ones converge in few epochs of large batches, which keeps a
# 15,000-pattern run under 10 minutes on a laptop; tuning trials there only rank the
# configurations; thousands of validation rows fit the ensemble weights reliably.
SMALL_DATA = {"batch_size": 64, "patience": 10, "ensemble_patience": 10, "tuning_epochs": 30,
              "epochs": 150, "ensemble_epochs": 80, "ensemble_weights": "seed"}
LARGE_DATA = {"batch_size": 256, "patience": 3, "ensemble_patience": 3, "tuning_epochs": 10,
              "epochs": 20, "ensemble_epochs": 20, "ensemble_weights": "fitted"}
LARGE_DATA_ROWS = 8000
# The pretrained member's head is a dense layer over 384 numbers (about a second an epoch on
# 15,000 rows): it gets small batches and patient early stopping at any data size.
HEAD_EPOCHS, HEAD_PATIENCE, HEAD_BATCH_SIZE = 60, 10, 64


def set_seed(seed):
    """Same seed, same split, same weights, same confidences (on the same machine)."""
    random.seed(seed)
    keras.utils.set_random_seed(seed)  # Python, NumPy and TensorFlow
    tf.config.experimental.enable_op_determinism()


class EpochLog(keras.callbacks.Callback):
    """One log line per epoch, through `logging` rather than Keras' progress bar."""

    def __init__(self, name, epochs):
        super().__init__()
        self.name, self.epochs = name, epochs

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        log.info("%s epoch %d/%d  loss %.4f  acc %.4f  val_loss %.4f  val_acc %.4f", self.name,
                 epoch + 1, self.epochs, logs.get("loss", np.nan), logs.get("accuracy", np.nan),
                 logs.get("val_loss", np.nan), logs.get("val_accuracy", np.nan))


@dataclass
class Dataset:
    """Token-id matrices and one-hot targets of the three splits."""
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_weight: dict = None
    # The same rows as all-MiniLM-L6-v2 sentence embeddings (the pretrained member's input).
    embedded: "Dataset" = None


@dataclass
class Member:
    """An ensemble member, the Dataset it reads and the name of its input (see artifacts)."""
    model: keras.Model
    data: Dataset
    input: str = artifacts.TOKEN_IDS


def tensorboard_callbacks(config, name):
    """A TensorBoard callback logging to --tensorboard DIR/<name>, when asked for."""
    if not config.tensorboard:
        return []
    folder = re.sub(r"\W+", "_", name).strip("_")
    return [keras.callbacks.TensorBoard(log_dir=str(Path(config.tensorboard) / folder))]


def fit(model, dataset, learning_rate, epochs, patience, batch_size, name, monitor="val_loss",
        checkpoint=None, label_smoothing=0.0, callbacks=()):
    """Adam with clipping, early stopping, LR reduction on plateau; best weights restored."""
    model.compile(optimizer=keras.optimizers.Adam(learning_rate, clipnorm=1.0),
                  loss=keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing),
                  metrics=["accuracy"])
    callbacks = [EpochLog(name, epochs), *callbacks,
                 keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5,
                                                   patience=max(2, patience // 2), min_lr=1e-7)]
    if checkpoint:
        callbacks += [keras.callbacks.ModelCheckpoint(checkpoint, monitor=monitor,
                                                      save_best_only=True, save_weights_only=True),
                      keras.callbacks.EarlyStopping(monitor=monitor, patience=patience)]
    else:
        callbacks.append(keras.callbacks.EarlyStopping(monitor=monitor, patience=patience,
                                                       restore_best_weights=True))
    history = model.fit(dataset.x_train, dataset.y_train, batch_size=batch_size, epochs=epochs,
                        validation_data=(dataset.x_val, dataset.y_val),
                        class_weight=dataset.class_weight, callbacks=callbacks, verbose=0)
    if checkpoint:
        model.load_weights(checkpoint)
    return history.history


def probabilities(model, x, batch_size=1024):
    """Inference-mode outputs; a direct call, since model.predict retraces for every model."""
    return np.concatenate([model(x[start:start + batch_size], training=False).numpy()
                           for start in range(0, len(x), batch_size)])


def sample_rows(dataset, max_rows, seed):
    """A stratified sample of the training rows (all of them when there are few)."""
    num_classes = dataset.y_train.shape[1]
    if min(max_rows, len(dataset.x_train) - max_rows) < num_classes:  # cannot stratify: keep all
        return dataset
    keep, _ = train_test_split(np.arange(len(dataset.x_train)), train_size=max_rows,
                               stratify=dataset.y_train.argmax(axis=1), random_state=seed)
    log.info("tuning on a stratified sample of %d of %d training rows (--tuning-max-rows)",
             max_rows, len(dataset.x_train))
    return replace(dataset, x_train=dataset.x_train[keep], y_train=dataset.y_train[keep])


def tune(dataset, preprocessor, num_classes, config):
    """Train each seed configuration briefly; pick the best validation accuracy (then loss)."""
    dataset = sample_rows(dataset, config.tuning_max_rows, config.seed)
    trials = []
    for number, trial in enumerate(SEED_CONFIGS, start=1):
        keras.utils.set_random_seed(config.seed)
        model = build_cnn_bilstm(preprocessor.vocab_size, preprocessor.max_sequence_length_,
                                 num_classes, embedding_dim=trial["embedding_dim"],
                                 dropout=trial["dropout"])
        started = time.perf_counter()
        fit(model, dataset, trial["learning_rate"], config.tuning_epochs, config.tuning_patience,
            config.batch_size, f"tuning {number}/{len(SEED_CONFIGS)} {trial['name']}",
            monitor="val_accuracy", label_smoothing=config.label_smoothing,
            callbacks=tensorboard_callbacks(config, f"tuning {trial['name']}"))
        val_loss, val_accuracy = model.evaluate(dataset.x_val, dataset.y_val, verbose=0)
        trials.append({**trial, "val_accuracy": float(val_accuracy), "val_loss": float(val_loss),
                       "seconds": round(time.perf_counter() - started, 1)})
        log.info("tuning %d/%d %-16s val_acc %.4f  val_loss %.4f  (%.0f s)", number,
                 len(SEED_CONFIGS), trial["name"], val_accuracy, val_loss, trials[-1]["seconds"])
    best = max(trials, key=lambda t: (t["val_accuracy"], -t["val_loss"]))
    log.info("best configuration: %s", best["name"])
    return best, trials


def fit_ensemble_weights(member_probabilities, true_ids, step=0.1):
    """Weights on a simplex grid minimising validation log-loss."""
    names = list(member_probabilities)
    grid = np.round(np.arange(0, 1 + step / 2, step), 6)
    best, best_loss = None, np.inf
    for weights in itertools.product(grid, repeat=len(names) - 1):
        last = 1 - sum(weights)
        if last < -1e-9:
            continue
        weights = (*weights, max(last, 0.0))
        mixed = sum(w * member_probabilities[n] for w, n in zip(weights, names))
        loss = -np.mean(np.log(np.clip(mixed[np.arange(len(true_ids)), true_ids], 1e-12, 1)))
        if loss < best_loss:
            best, best_loss = dict(zip(names, map(float, weights))), loss
    return best


def combine(member_probabilities, weights):
    return sum(weights[name] * p for name, p in member_probabilities.items())


def class_counts(labels):
    counts = Counter(labels).values()
    return f"{len(labels)} rows, {min(counts)}-{max(counts)} per intent"


def augment_and_balance(split, config):
    """The training split after augmentation (small data sets only) and balancing."""
    log.info("training split before augmentation: %s", class_counts(split.train_labels))
    texts, labels = list(split.train_texts), list(split.train_labels)
    if len(texts) > config.augmentation_max_rows:
        log.info("augmentation skipped: %d training rows > --augmentation-max-rows %d",
                 len(texts), config.augmentation_max_rows)
    else:
        texts, labels = Augmenter(factor=config.augmentation_factor, seed=config.seed).augment(
            texts, labels, exclude=split.val_texts + split.test_texts)
    if config.balance == "upsample":
        texts, labels = upsample(texts, labels, config.seed)
    log.info("training split after augmentation and balancing (%s): %s", config.balance,
             class_counts(labels))
    return texts, labels


def sentence_embeddings(config, *text_lists):
    """all-MiniLM-L6-v2 embeddings of each list, or None when the pretrained member is off (no
    ensemble, or --transformer scratch) or its package is missing (the transformer member is
    then trained from scratch)."""
    if not config.ensemble or config.transformer != "minilm":
        return None
    try:
        encoder = pretrained.sentence_encoder()
    except pretrained.PretrainedUnavailable as error:
        log.warning("%s; the transformer member is trained from scratch instead", error)
        return None
    total = sum(map(len, text_lists))
    log.info("embedding %d texts with the pretrained all-MiniLM-L6-v2 encoder", total)
    started, done = time.perf_counter(), 0
    embeddings = []
    for texts in text_lists:
        def progress(count, _, offset=done):
            log.info("embedded %d/%d texts (%.0f s)", offset + count, total,
                     time.perf_counter() - started)
        embeddings.append(encoder.embed(texts, progress=progress if total > 2000 else None))
        done += len(texts)
    return embeddings


def featurize(split, tags, config, preprocessor=None):
    """Augment and balance the training split, fit the preprocessor on it (unless one is given:
    --finetune keeps the published vocabulary), encode all splits."""
    train_texts, train_labels = augment_and_balance(split, config)
    if preprocessor is None:
        preprocessor = TextPreprocessor().fit(train_texts)
    log.info("vocabulary %d words, max sequence length %d, WordNet lemmas %s",
             preprocessor.vocab_size - 2, preprocessor.max_sequence_length_,
             "on" if preprocessor.uses_lemmas_ else "off")
    label2idx = {tag: index for index, tag in enumerate(tags)}

    def encode(labels):
        return keras.utils.to_categorical([label2idx[t] for t in labels], len(label2idx))

    class_weight = None
    if config.balance == "class_weight":
        ids = np.array([label2idx[t] for t in train_labels])
        class_weight = dict(enumerate(compute_class_weight("balanced", classes=np.arange(
            len(label2idx)), y=ids)))
    dataset = Dataset(preprocessor.transform(train_texts), encode(train_labels),
                      preprocessor.transform(split.val_texts), encode(split.val_labels),
                      preprocessor.transform(split.test_texts), encode(split.test_labels),
                      class_weight)
    embeddings = sentence_embeddings(config, train_texts, split.val_texts, split.test_texts)
    if embeddings:
        dataset.embedded = replace(dataset, x_train=embeddings[0], x_val=embeddings[1],
                                   x_test=embeddings[2])
    return preprocessor, label2idx, dataset


def split_first(intents, config):
    """The seeded stratified split, or the given validation/test files in place of carved ones."""
    given = {}
    for name, path in (("val", config.val_data), ("test", config.test_data)):
        if not path:
            continue
        texts, labels = load_examples(path)
        if not texts:
            raise DataError(f"{path}: no labelled rows; a {name} file needs at least one.")
        unknown = sorted(set(labels) - set(intents.tags))
        if unknown:
            raise DataError(f"{path}: {len(unknown)} intent(s) not in {config.data}: "
                            f"{unknown[:5]}; remove those rows (there is nothing to learn them "
                            "from) or add the intents to the training data.")
        given[name] = (texts, labels)
    split = split_data(intents.texts, intents.labels, 0 if "val" in given else config.val_size,
                       0 if "test" in given else config.test_size, config.seed)
    training = {duplicate_key(t) for t in split.train_texts}
    for name, (texts, labels) in given.items():
        split = replace(split, **{f"{name}_texts": texts, f"{name}_labels": labels})
        seen = sum(duplicate_key(t) in training for t in texts)
        if seen:
            log.warning("%s: %d of %d %s texts also appear in the training data",
                        getattr(config, f"{name}_data"), seen, len(texts), name)
    return split


def prepare(config, published=None):
    """Load and split first; fold confirmed feedback into the training split; featurize (with
    the published model's preprocessor, after checking its labels, when fine-tuning)."""
    intents = load_intents(config.data)
    if published:
        published.check_labels(intents.tags, config.data)
    split = split_first(intents, config)
    log.info("%s: %d patterns, %d intents -> train %d / val %d / test %d", config.data,
             len(intents.texts), len(intents.tags), len(split.train_texts), len(split.val_texts),
             len(split.test_texts))
    feedback_report = None
    if config.feedback:
        split, feedback_report = feedback.fold_into_training(split, config.feedback, intents.tags)
    return (intents, split, *featurize(split, intents.tags, config,
                                       published.preprocessor if published else None),
            feedback_report)


def train_members(dataset, preprocessor, num_classes, best, config, staging):
    """The final CNN-BiLSTM with the best configuration, then the other ensemble members.

    The pretrained member reads sentence embeddings, the others token ids."""
    keras.utils.set_random_seed(config.seed)
    model = build_cnn_bilstm(preprocessor.vocab_size, preprocessor.max_sequence_length_,
                             num_classes, embedding_dim=best["embedding_dim"],
                             dropout=best["dropout"])
    checkpoint = staging / "best.weights.h5"
    histories = {"cnn_bilstm": fit(model, dataset, best["learning_rate"], config.epochs,
                                   config.patience, config.batch_size, "cnn_bilstm",
                                   checkpoint=str(checkpoint),
                                   label_smoothing=config.label_smoothing,
                                   callbacks=tensorboard_callbacks(config, "cnn_bilstm"))}
    checkpoint.unlink()
    members = {"cnn_bilstm": Member(model, dataset)}
    for name in ("transformer", "cnn") if config.ensemble else ():
        keras.utils.set_random_seed(config.seed)
        if name == "transformer" and dataset.embedded is not None:
            member = Member(build_embedding_classifier(dataset.embedded.x_train.shape[1],
                                                       num_classes),
                            dataset.embedded, artifacts.SENTENCE_EMBEDDING)
            budget = (HEAD_EPOCHS, HEAD_PATIENCE, HEAD_BATCH_SIZE)
        else:
            member = Member(MODEL_BUILDERS[name](preprocessor.vocab_size,
                                                 preprocessor.max_sequence_length_, num_classes),
                            dataset)
            budget = (config.ensemble_epochs, config.ensemble_patience, config.batch_size)
        histories[name] = fit(member.model, member.data, ENSEMBLE_LEARNING_RATE, *budget, name,
                              label_smoothing=config.label_smoothing,
                              callbacks=tensorboard_callbacks(config, name))
        members[name] = member
    return members, histories


def resolve_auto(config, train_rows):
    """The config with its auto options (0 or "auto") set for a training split of that size."""
    profile = LARGE_DATA if train_rows > LARGE_DATA_ROWS else SMALL_DATA
    auto = {name: value for name, value in profile.items()
            if getattr(config, name) in (0, "auto")}
    if auto:
        log.info("auto settings for %d training rows: %s", train_rows, auto)
    return replace(config, **auto)


def train(config):
    """Run the whole pipeline and publish the artifacts into config.out; returns the metrics."""
    started = time.perf_counter()
    set_seed(config.seed)
    out_dir = Path(config.out)
    published = None
    if config.finetune:
        from . import finetune  # it builds on this module
        published = finetune.read_published(out_dir)
    intents, split, preprocessor, label2idx, dataset, feedback_report = prepare(
        config, published)
    config = resolve_auto(config, len(dataset.x_train))
    labels = intents.tags
    staging = artifacts.staging_dir(out_dir)
    try:
        with devices.training_devices(config.mixed_precision):
            if published:  # tuning skipped: the published members train on
                best, trials = published.bundle["best_config"], []
                members, histories = finetune.continue_training(published, dataset, config)
            else:
                best, trials = tune(dataset, preprocessor, len(labels), config)
                members, histories = train_members(dataset, preprocessor, len(labels), best,
                                                   config, staging)
        members = {name: replace(m, model=devices.as_float32(m.model))
                   for name, m in members.items()}
        val_true = dataset.y_val.argmax(axis=1)
        val_probs = {name: probabilities(m.model, m.data.x_val) for name, m in members.items()}
        test_probs = {name: probabilities(m.model, m.data.x_test) for name, m in members.items()}

        results = {"single": test_probs["cnn_bilstm"]}
        val_results = {"single": val_probs["cnn_bilstm"]}
        weights = None
        if config.ensemble:
            weights = (fit_ensemble_weights(val_probs, val_true)
                       if config.ensemble_weights == "fitted" else dict(SEED_ENSEMBLE_WEIGHTS))
            log.info("ensemble weights (%s): %s", config.ensemble_weights, weights)
            results["ensemble"] = combine(test_probs, weights)
            val_results["ensemble"] = combine(val_probs, weights)
        reference = reference_baseline(split)
        metrics = write_report(staging / artifacts.REPORT_DIR, results, split.test_texts,
                               dataset.y_test.argmax(axis=1), labels, reference)
        plot_history(histories, staging / artifacts.HISTORY_PLOT)
        for name, m in metrics.items():
            log.info("TEST %-8s accuracy %.4f  macro-F1 %.4f  (%d held-out patterns)", name,
                     m["accuracy"], m["macro_f1"], m["n"])
        log.info("TEST reference accuracy %.4f  macro-F1 %.4f  (%s, same split)",
                 reference["accuracy"], reference["macro_f1"], reference["name"])
        if config.ensemble:
            gain = metrics["ensemble"]["accuracy"] - metrics["single"]["accuracy"]
            log.info("ensemble vs single: %+.2f accuracy points", gain * 100)
        thresholds = {name: choose_fallback_threshold(p, val_true, config.fallback_coverage)
                      for name, p in val_results.items()}

        artifacts.save_model(members["cnn_bilstm"].model, staging / artifacts.MODEL_FILE)
        if config.ensemble:
            save_ensemble(members, weights, config.ensemble_weights,
                          staging / artifacts.ENSEMBLE_DIR, val_probs, val_true)
        artifacts.write_pickle({
            "format_version": artifacts.FORMAT_VERSION,
            "preprocessor": preprocessor, "label2idx": label2idx,
            "idx2label": {i: t for t, i in label2idx.items()},
            "max_sequence_length": preprocessor.max_sequence_length_,
            "vocab_size": preprocessor.vocab_size, "best_config": best,
            "fallback_thresholds": thresholds, "fallback_margin": config.fallback_margin,
            "model_sha256": artifacts.sha256(staging / artifacts.MODEL_FILE),
            "ensemble_sha256": artifacts.sha256(staging / artifacts.ENSEMBLE_DIR /
                                                artifacts.ENSEMBLE_SPEC)
            if config.ensemble else None,
        }, staging / artifacts.PREPROCESSOR_FILE)
        (staging / artifacts.CONFIG_FILE).write_text(json.dumps(config.to_dict(), indent=2))
        seconds = round(time.perf_counter() - started, 1)
        details = {
            "created": artifacts.now(),
            "data": {"path": str(config.data), "sha256": artifacts.sha256(config.data),
                     "patterns": len(intents.texts),
                     **{name: {"path": path, "sha256": artifacts.sha256(path)}
                        for name, path in (("val_data", config.val_data),
                                           ("test_data", config.test_data),
                                           ("feedback", config.feedback)) if path}},
            "labels": labels,
            "splits": {"train": len(split.train_texts), "val": len(split.val_texts),
                       "test": len(split.test_texts),
                       "train_after_augmentation": int(len(dataset.x_train))},
            "tuning": trials, "best_config": best, "ensemble_weights": weights,
            "member_inputs": {name: m.input for name, m in members.items()},
            "fallback_thresholds": thresholds,
            "metrics": {name: {k: v for k, v in m.items() if k != "per_intent"}
                        for name, m in metrics.items()},
            "reference": reference, "feedback": feedback_report, "training_seconds": seconds,
            "finetune": finetune.report_time_saved(published, seconds) if published else None,
            "command_line": shlex.join(sys.argv)}
        write_model_card(staging / artifacts.MODEL_CARD_FILE, details)
        artifacts.write_manifest(staging, details)
        artifacts.publish(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("saved model, preprocessor and report to %s (%.0f s)", out_dir,
             time.perf_counter() - started)
    return metrics


def save_ensemble(members, weights, source, directory, val_probs, val_true):
    """One .h5 per member plus ensemble.json with members, weights, inputs, checksums and val
    scores; a member reading sentence embeddings also records the encoder's checksum."""
    directory.mkdir()
    spec = {"weights_source": source, "members": []}
    for name, member in members.items():
        path = directory / f"{name}.h5"
        artifacts.save_model(member.model, path)
        entry = {"name": name, "file": path.name, "weight": weights[name],
                 "input": member.input, "sha256": artifacts.sha256(path),
                 "val_accuracy": float((val_probs[name].argmax(axis=1) == val_true).mean())}
        if member.input == artifacts.SENTENCE_EMBEDDING:
            entry["encoder_sha256"] = pretrained.sentence_encoder().sha256
        spec["members"].append(entry)
    (directory / artifacts.ENSEMBLE_SPEC).write_text(json.dumps(spec, indent=2))
