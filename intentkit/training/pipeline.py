"""The training pipeline behind `intentkit train` / `python jobs.py`, as named phases:
prepare (load, split first, augment the training split, featurize) -> fit the models -> score
them on the held-out split -> write the run -> publish it."""
import contextlib
import itertools
import json
import logging
import random
import shlex
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from sklearn.utils.class_weight import compute_class_weight

from .. import artifacts
from ..artifacts.model_card import write_model_card
from ..data import feedback
from ..data.intents import duplicate_key, load_examples, split_data
from ..encoders import minilm
from ..encoders.cache import CachedEncoder, EmbeddingCache
from ..encoders.trainable import finetune_encoder
from ..errors import ArtifactError, ConfigError, DataError, PretrainedUnavailable
from ..evaluation.data_checks import check_before_training
from ..evaluation.metrics import choose_fallback_threshold, reference_baseline
from ..evaluation.report import plot_history, write_report
from ..progress import Progress, current_run, phase, whole_run
from ..text import TextPreprocessor, language
from . import devices, entities, interrupts, tracking
from .augment import Augmenter, upsample
from .config import TrainConfig
from .members import (
    Dataset,
    continue_members,
    fit_members,
    probabilities,
    refit_members,
    tune,
    unsearched_config,
)

log = logging.getLogger(__name__)

EXAMPLES_PER_INTENT = 3  # training patterns per intent published for the page's examples
SEED_ENSEMBLE_WEIGHTS = {"cnn_bilstm": 0.4, "transformer": 0.4, "cnn": 0.2}


def set_seed(seed):
    """Same seed, same split, same weights, same confidences (on the same machine)."""
    random.seed(seed)
    keras.utils.set_random_seed(seed)  # Python, NumPy and TensorFlow
    tf.config.experimental.enable_op_determinism()


# --- prepare -------------------------------------------------------------------------------


@dataclass
class Prepared:
    """The data of a run: the intents, the split, and the featurized training split."""
    intents: object  # data.IntentData
    split: object  # data.Split
    preprocessor: TextPreprocessor
    dataset: Dataset
    feedback_report: dict = None
    encoder_file: object = None  # the fine-tuned encoder's weights (--transformer finetune)


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


CACHE_DIR = Path(".cache") / "embeddings"  # under --out, beside the runs


def cached(encoder, config):
    """The encoder reading and filling the run's embedding cache (--embedding-cache), or the
    encoder itself when the cache is off."""
    if encoder is None or config.embedding_cache_mb == 0:
        return encoder
    directory = Path(config.embedding_cache) if config.embedding_cache else (
        Path(config.out) / CACHE_DIR)
    return CachedEncoder(encoder, EmbeddingCache(directory, config.embedding_cache_mb * 2**20))


def sentence_encoder(config, split, workdir, init_from=None):
    """(encoder, its weights file or None) that the pretrained member reads: the published
    run's (--finetune), the package's (frozen), or one fine-tuned on the training split (its
    raw rows: the contrastive loss needs real sentences). None when the member is off (no
    ensemble, --transformer scratch) or the package is missing (the seed's transformer then)."""
    if not config.ensemble or config.transformer == "scratch":
        return None, None
    if init_from is not None and init_from.encoder is not None:
        return cached(init_from.encoder, config), init_from.encoder_file
    try:
        encoder = minilm.sentence_encoder()
    except PretrainedUnavailable as error:
        log.warning("%s; the transformer member is trained from scratch instead", error)
        return None, None
    if config.transformer != "finetune":
        return cached(encoder, config), None
    tuned = finetune_encoder(split.train_texts, split.train_labels,
                             time_budget_s=config.encoder_time_budget, seed=config.seed)
    weights_file = workdir / "encoder.safetensors"
    tuned.save_weights(weights_file)
    # Embedded by the NumPy forward that serving runs: training sees what serving will.
    return minilm.SentenceEncoder(weights_file=weights_file), weights_file


def sentence_embeddings(encoder, *text_lists):
    """The encoder's embeddings of each list, with progress; None without an encoder."""
    if encoder is None:
        return None
    total = sum(map(len, text_lists))
    progress = Progress("embedding with all-MiniLM-L6-v2", total, unit="text")
    embeddings, offset = [], 0
    for texts in text_lists:
        embeddings.append(encoder.embed(texts, progress=lambda count, _, offset=offset:
                                        progress.to(offset + count,
                                                    f"{offset + count}/{total} texts")))
        offset += len(texts)
    progress.close()
    return embeddings


def featurize(split, tags, config, preprocessor=None, encoder=None):
    """Augment and balance the training split (and, for the refit, training + validation), fit
    the preprocessor on them (unless one is given: --finetune keeps the published vocabulary),
    encode all splits (as token ids, and as sentence embeddings of the rows as written when an
    encoder is given: the embedding heads train on real sentences, like the linear peer)."""
    train_texts, train_labels = augment_and_balance(split, config)
    all_texts, all_labels = [], []
    if config.refit == "full" and split.val_texts:
        # The validation rows, augmented like the training rows, for the token-id members'
        # refit (the test rows are still never produced).
        all_texts, all_labels = augment_and_balance(replace(
            split, train_texts=split.train_texts + split.val_texts,
            train_labels=split.train_labels + split.val_labels, val_texts=[], val_labels=[]),
            config)
    word_vectors = None
    if preprocessor is None:  # --finetune keeps the published vocabulary and its vectors
        # The vocabulary is unsupervised: the refit's rows belong in it.
        preprocessor = TextPreprocessor().fit(train_texts + all_texts)
        word_vectors = initial_word_vectors(config, preprocessor, encoder)
    log.info("vocabulary %d words, max sequence length %d, WordNet lemmas %s",
             preprocessor.vocab_size - 2, preprocessor.max_sequence_length_,
             "on" if preprocessor.uses_lemmas_ else "off")
    label2idx = {tag: index for index, tag in enumerate(tags)}

    def encode(labels):
        return keras.utils.to_categorical([label2idx[t] for t in labels], len(label2idx))

    def class_weight(labels):
        if config.balance != "class_weight" or not labels:
            return None
        ids = np.array([label2idx[t] for t in labels])
        present = np.unique(ids)
        weights = compute_class_weight("balanced", classes=present, y=ids)
        return {int(i): float(w) for i, w in zip(present, weights)}

    dataset = Dataset(preprocessor.transform(train_texts), encode(train_labels),
                      preprocessor.transform(split.val_texts), encode(split.val_labels),
                      preprocessor.transform(split.test_texts), encode(split.test_labels),
                      class_weight(train_labels), word_vectors=word_vectors)
    if all_texts:
        dataset.x_all, dataset.y_all = preprocessor.transform(all_texts), encode(all_labels)
        dataset.class_weight_all = class_weight(all_labels)
    embeddings = sentence_embeddings(encoder, split.train_texts, split.val_texts,
                                     split.test_texts)
    if embeddings:
        dataset.embedded = Dataset(
            embeddings[0], encode(split.train_labels), embeddings[1], encode(split.val_labels),
            embeddings[2], encode(split.test_labels), class_weight(split.train_labels))
        if config.refit != "off" and split.val_texts:
            dataset.embedded.x_all = np.concatenate([embeddings[0], embeddings[1]])
            dataset.embedded.y_all = encode(split.train_labels + split.val_labels)
            dataset.embedded.class_weight_all = class_weight(split.train_labels
                                                             + split.val_labels)
    return preprocessor, dataset


def initial_word_vectors(config, preprocessor, encoder):
    """The CNN-BiLSTM's starting word vectors (--word-vectors pretrained): the encoder's
    word-piece embeddings of each vocabulary word; None (learned from scratch) otherwise."""
    if config.word_vectors != "pretrained":
        return None
    try:
        encoder = encoder or minilm.sentence_encoder()
    except PretrainedUnavailable as error:
        log.warning("%s; the CNN-BiLSTM learns its word vectors from scratch instead", error)
        return None
    return encoder.word_vectors(preprocessor.words())


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


def load_checked(path, on_conflict="drop"):
    """The intents of a file that passes the cheap data checks (errors stop the run)."""
    if not path:
        raise ConfigError("no training data given: name the intents file (`intentkit train "
                          "--data FILE`, TrainConfig(data=FILE)) or pass train(intents=...)")
    return check_before_training(path, on_conflict)


def prepare(config, workdir, init_from=None):
    """Load and split first; fold confirmed feedback into the training split; featurize (with
    the published preprocessor, after checking its labels, when fine-tuning)."""
    intents = load_checked(config.data, config.on_conflict)
    if init_from:
        init_from.check_labels(intents.tags, config.data, config.out)
    split = split_first(intents, config)
    log.info("%s: %d patterns, %d intents -> train %d / val %d / test %d", config.data,
             len(intents.texts), len(intents.tags), len(split.train_texts), len(split.val_texts),
             len(split.test_texts))
    feedback_report = None
    if config.feedback:
        split, feedback_report = feedback.fold_into_training(split, config.feedback, intents.tags)
    return prepare_split(intents, split, config, workdir, init_from, feedback_report)


def prepare_split(intents, split, config, workdir, init_from=None, feedback_report=None):
    """Featurize a split of the intents (a run's, or a cross-validation fold's)."""
    encoder, encoder_file = sentence_encoder(config, split, workdir, init_from)
    preprocessor, dataset = featurize(split, intents.tags, config,
                                      init_from.preprocessor if init_from else None, encoder)
    return Prepared(intents, split, preprocessor, dataset, feedback_report, encoder_file)


def resolve_auto(config, train_rows):
    """The config with its auto options (0 or "auto") set for a training split of that size."""
    config, auto = config.resolved(train_rows)
    if auto:
        log.info("auto settings for %d training rows: %s", train_rows, auto)
    return config


# --- fit ------------------------------------------------------------------------------------


@dataclass
class Fitted:
    members: dict  # name -> members.Member
    histories: dict
    best_config: dict
    trials: list
    linear_head: object = None  # refit.LinearHeadChoice when the MiniLM member's head is linear
    continued: bool = False  # --finetune: the published members trained on
    refit: dict = None  # name -> what its refit on training + validation rows was


def fit_models(prepared, config, workdir, init_from=None, best_config=None):
    """Search (unless a configuration is given or the run starts from a published one), then fit
    every member on the training split, early-stopped on validation."""
    labels = prepared.intents.tags
    head = None
    with devices.training_devices(config.mixed_precision):
        if init_from:  # tuning skipped: the published members train on
            best, trials = init_from.best_config, []
            with phase("fit", parts=len(init_from.ensemble or [None]) if config.ensemble else 1):
                members, histories = continue_members(init_from, prepared.dataset, config,
                                                         labels)
        else:
            if best_config:
                best, trials, winner = best_config, [], None
            elif not config.search:
                best, trials, winner = unsearched_config(prepared.dataset), [], None
            else:
                with phase("search"):
                    best, trials, winner = tune(prepared.dataset, prepared.preprocessor,
                                                len(labels), config)
            with phase("fit", parts=trained_member_count(prepared.dataset, config)):
                members, histories, head = fit_members(prepared.dataset, prepared.preprocessor,
                                                       len(labels), best, config, workdir,
                                                       winner)
    members = {name: replace(m, model=devices.as_float32(m.model)) for name, m in members.items()}
    return Fitted(members, histories, best, trials, head, continued=init_from is not None)


def trained_member_count(dataset, config):
    """The members fit_members trains epoch by epoch (the linear head is fitted at once)."""
    if not config.ensemble:
        return 1
    return 3 - (dataset.embedded is not None and config.head == "linear")


# --- choose (validation rows only) -----------------------------------------------------------


def fit_ensemble_weights(member_probabilities, true_ids, step=0.1):
    """Weights on a simplex grid: the best validation accuracy, then the lowest log-loss.

    The grid holds each member alone (weight 1), so the ensemble never scores below its best
    member on validation. Log-loss alone picked mixes that lost accuracy to the weaker token-id
    members on small validation splits (1-2 rows per intent)."""
    names = list(member_probabilities)
    grid = np.round(np.arange(0, 1 + step / 2, step), 6)
    rows = np.arange(len(true_ids))
    best, best_quality = None, None
    for weights in itertools.product(grid, repeat=len(names) - 1):
        last = 1 - sum(weights)
        if last < -1e-9:
            continue
        weights = (*weights, max(last, 0.0))
        mixed = sum(w * member_probabilities[n] for w, n in zip(weights, names))
        accuracy = (mixed.argmax(axis=1) == true_ids).mean()
        loss = -np.mean(np.log(np.clip(mixed[rows, true_ids], 1e-12, 1)))
        if best_quality is None or (accuracy, -loss) > best_quality:
            best = {name: round(float(w), 6) for name, w in zip(names, weights)}
            best_quality = (accuracy, -loss)
    return best


def combine(member_probabilities, weights):
    return sum(weights[name] * p for name, p in member_probabilities.items())


def choose_default(val_results, val_true):
    """The model type with the best validation accuracy (then log-loss): the default answer."""
    def quality(name):
        p = val_results[name]
        loss = -np.mean(np.log(np.clip(p[np.arange(len(val_true)), val_true], 1e-12, 1)))
        return float((p.argmax(axis=1) == val_true).mean()), -loss
    return max(val_results, key=quality)


@dataclass
class Choice:
    """What the validation rows decided (never the test split)."""
    val_probs: dict  # member name -> held-out validation probabilities
    weights: dict  # ensemble weights (None without an ensemble)
    default_model: str
    thresholds: dict  # model type -> fallback threshold


def held_out_validation_probabilities(fitted):
    """Each member's probabilities of the validation rows from a model that never trained on
    them: the carve fits', or the linear head's out-of-fold ones."""
    probs = {}
    for name, member in fitted.members.items():
        if (fitted.linear_head is not None and member.input == artifacts.SENTENCE_EMBEDDING):
            probs[name] = fitted.linear_head.val_probabilities
        else:
            probs[name] = probabilities(member.model, member.data.x_val)
    return probs


def choose(prepared, fitted, config):
    """Ensemble weights, the default answer and the fallback thresholds, on the validation rows'
    held-out probabilities."""
    val_true = prepared.dataset.y_val.argmax(axis=1)
    val_probs = held_out_validation_probabilities(fitted)
    val_results = {artifacts.SINGLE: val_probs[artifacts.SINGLE_MEMBER]}
    weights = None
    if config.ensemble:
        weights = (fit_ensemble_weights(val_probs, val_true)
                   if config.ensemble_weights == "fitted" else dict(SEED_ENSEMBLE_WEIGHTS))
        log.info("ensemble weights (%s): %s", config.ensemble_weights, weights)
        val_results[artifacts.ENSEMBLE] = combine(val_probs, weights)
    default = choose_default(val_results, val_true)
    log.info("default answer: %s (validation accuracy %s)", default, ", ".join(
        f"{name} {(p.argmax(axis=1) == val_true).mean():.4f}" for name, p in val_results.items()))
    thresholds = {name: choose_fallback_threshold(p, val_true, config.fallback_coverage)
                  for name, p in val_results.items()}
    return Choice(val_probs, weights, default, thresholds)


# --- refit (training + validation rows) -----------------------------------------------------


def refits(prepared, fitted, config):
    """Whether the run refits: not with --refit off, --finetune or without the rows to refit
    on (no validation rows; no sentence embeddings for a head refit)."""
    dataset = prepared.dataset
    rows = dataset.x_all if config.refit == "full" else getattr(dataset.embedded, "x_all", None)
    return config.refit != "off" and not fitted.continued and rows is not None


def refit(prepared, fitted, choice, config):
    """The published members trained again on training + validation rows with what was chosen
    (the fitted model itself when the run does not refit)."""
    dataset = prepared.dataset
    if not refits(prepared, fitted, config):
        return fitted
    with devices.training_devices(config.mixed_precision):
        members, report = refit_members(
            fitted.members, fitted.histories, fitted.linear_head, choice.weights,
            choice.default_model, dataset, prepared.preprocessor, len(prepared.intents.tags),
            fitted.best_config, config)
    members = {name: replace(m, model=devices.as_float32(m.model)) for name, m in members.items()}
    return replace(fitted, members=members, refit=report)


# --- score (the test split) -----------------------------------------------------------------


@dataclass
class Scores:
    val_probs: dict  # member name -> validation probabilities
    weights: dict  # ensemble weights (None without an ensemble)
    default_model: str
    thresholds: dict  # model type -> fallback threshold
    metrics: dict  # model type -> test metrics
    reference: dict  # the TF-IDF + LR reference on the same split
    test_results: dict  # model type -> test probabilities (cross-validation sums confusions)


def score(prepared, fitted, choice, config, report_dir):
    """The published models on the test split (the report, beside the TF-IDF + LR reference);
    nothing is chosen here."""
    dataset, members = prepared.dataset, fitted.members
    test_probs = {name: probabilities(m.model, m.data.x_test) for name, m in members.items()}
    results = {artifacts.SINGLE: test_probs[artifacts.SINGLE_MEMBER]}
    if config.ensemble:
        results[artifacts.ENSEMBLE] = combine(test_probs, choice.weights)
    reference = reference_baseline(prepared.split)
    metrics = write_report(report_dir, results, prepared.split.test_texts,
                           dataset.y_test.argmax(axis=1), prepared.intents.tags, reference)
    for name, m in metrics.items():
        log.info("TEST %-8s accuracy %.4f  macro-F1 %.4f  (%d held-out patterns)", name,
                 m["accuracy"], m["macro_f1"], m["n"])
    log.info("TEST reference accuracy %.4f  macro-F1 %.4f  (%s, same split)",
             reference["accuracy"], reference["macro_f1"], reference["name"])
    if config.ensemble:
        gain = metrics[artifacts.ENSEMBLE]["accuracy"] - metrics[artifacts.SINGLE]["accuracy"]
        log.info("ensemble vs single: %+.2f accuracy points", gain * 100)
    return Scores(choice.val_probs, choice.weights, choice.default_model, choice.thresholds,
                  metrics, reference, results)


# --- write and publish ----------------------------------------------------------------------


def write_run(staging, prepared, fitted, scores, config, seconds, init_from=None):
    """The run's models and pickle (artifacts.Run), plot, config, model card and manifest."""
    val_true = prepared.dataset.y_val.argmax(axis=1)

    def run_member(name, member):
        reads_embeddings = member.input == artifacts.SENTENCE_EMBEDDING
        return artifacts.RunMember(
            name, scores.weights[name] if scores.weights else 1.0, member.input, member.model,
            val_accuracy=float((scores.val_probs[name].argmax(axis=1) == val_true).mean()),
            encoder_sha256=(artifacts.sha256(prepared.encoder_file) if prepared.encoder_file
                            else minilm.sentence_encoder().sha256)
            if reads_embeddings else None,
            encoder_file=prepared.encoder_file if reads_embeddings else None)
    members = fitted.members
    run_language = language.training_language(prepared.split.train_texts, config.language)
    artifacts.Run(
        prepared.preprocessor, prepared.intents.tags, fitted.best_config, scores.thresholds,
        config.fallback_margin, scores.default_model,
        run_member(artifacts.SINGLE_MEMBER, members[artifacts.SINGLE_MEMBER]),
        [run_member(name, m) for name, m in members.items()] if config.ensemble else None,
        config.ensemble_weights, responses=prepared.intents.responses,
        fallback_responses=list(prepared.intents.fallback_responses),
        examples=example_patterns(prepared.split), language=run_language,
        training_patterns=training_patterns(prepared, config),
    ).write(staging)
    plot_history(fitted.histories, staging / artifacts.HISTORY_PLOT)
    (staging / artifacts.CONFIG_FILE).write_text(json.dumps(config.to_dict(), indent=2))
    split, intents = prepared.split, prepared.intents
    details = {
        "created": artifacts.now(),
        "data": {"path": str(config.data), "sha256": artifacts.sha256(config.data),
                 "patterns": len(intents.texts),
                 "conflicts": {"on_conflict": config.on_conflict, "texts": len(intents.conflicts),
                               "examples": list(intents.conflicts[:10])},
                 **{name: {"path": path, "sha256": artifacts.sha256(path)}
                    for name, path in (("val_data", config.val_data),
                                       ("test_data", config.test_data),
                                       ("feedback", config.feedback)) if path}},
        "labels": intents.tags,
        "splits": {"train": len(split.train_texts), "val": len(split.val_texts),
                   "test": len(split.test_texts),
                   "train_after_augmentation": int(len(prepared.dataset.x_train)),
                   # The token-id members' refit rows (a full refit only).
                   "refit_after_augmentation": (None if prepared.dataset.x_all is None
                                                or not fitted.refit
                                                else int(len(prepared.dataset.x_all)))},
        "tuning": fitted.trials, "best_config": fitted.best_config,
        "histories": {name: {metric: [round(float(v), 5) for v in values]
                             for metric, values in history.items()}
                      for name, history in fitted.histories.items()},
        "linear_head": ({k: v for k, v in vars(fitted.linear_head).items()
                         if k != "val_probabilities"} if fitted.linear_head else None),
        "refit": fitted.refit,
        "ensemble_weights": scores.weights, "default_model": scores.default_model,
        "member_inputs": {name: m.input for name, m in members.items()},
        "encoder": encoder_description(config, prepared, init_from),
        "language": run_language,
        # Seconds per phase so far: the next run's progress plans its ETA with them.
        "phase_seconds": dict(current_run().seconds) if current_run() else None,
        "fallback_thresholds": scores.thresholds,
        "metrics": {name: {k: v for k, v in m.items() if k != "per_intent"}
                    for name, m in scores.metrics.items()},
        "reference": scores.reference, "feedback": prepared.feedback_report,
        "training_seconds": seconds,
        "finetune": time_saved(init_from, seconds) if init_from else None,
        "command_line": shlex.join(sys.argv)}
    write_model_card(staging / artifacts.MODEL_CARD_FILE, details)
    artifacts.write_manifest(staging, details)


def example_patterns(split, per_intent=EXAMPLES_PER_INTENT):
    """A few training patterns of each intent (the page's example messages): the model's own
    words, never a validation or test row."""
    examples = {}
    for text, label in zip(split.train_texts, split.train_labels):
        chosen = examples.setdefault(label, [])
        if len(chosen) < per_intent:
            chosen.append(text)
    return examples


def training_patterns(prepared, config):
    """The training split embedded by the run's sentence encoder (its fine-tuned one, else the
    pretrained one, through the cache), for the nearest patterns of explanations; None without
    the encoder."""
    try:
        encoder = (minilm.SentenceEncoder(weights_file=prepared.encoder_file)
                   if prepared.encoder_file else cached(minilm.sentence_encoder(), config))
    except PretrainedUnavailable as error:
        log.warning("%s; explanations of this run will show no nearest patterns", error)
        return None
    split, index = prepared.split, {tag: i for i, tag in enumerate(prepared.intents.tags)}
    log.info("embedding the %d training patterns for explanations", len(split.train_texts))
    return artifacts.TrainingPatterns(
        list(split.train_texts), np.array([index[label] for label in split.train_labels]),
        encoder.embed(split.train_texts), encoder.sha256)


def encoder_description(config, prepared, init_from):
    """How the pretrained member's encoder was made, for the manifest and the model card."""
    if prepared.dataset.embedded is None:
        return None
    if init_from is not None:
        return (init_from.manifest.get("encoder")
                or "all-MiniLM-L6-v2 of the run this one continues from")
    if prepared.encoder_file:
        return (f"all-MiniLM-L6-v2 fine-tuned on the {len(prepared.split.train_texts)} training "
                f"rows (supervised contrastive + cosine head, budget "
                f"{config.encoder_time_budget} s)")
    return "all-MiniLM-L6-v2, frozen"


def time_saved(init_from, seconds):
    """--finetune against the last full run, logged and returned for the manifest."""
    finetune = init_from.manifest.get("finetune") or {}
    full = finetune.get("full_run_seconds", init_from.manifest.get("training_seconds"))
    if not isinstance(full, (int, float)):
        log.info("fine-tuned in %.0f s (the last full run's time is not recorded)", seconds)
        return {"seconds": seconds, "full_run_seconds": None, "seconds_saved": None}
    log.info("fine-tuned in %.0f s; the last full run took %.0f s: %.0f s saved (%.1fx faster)",
             seconds, full, full - seconds, full / max(seconds, 1e-9))
    return {"seconds": seconds, "full_run_seconds": full, "seconds_saved": round(full - seconds, 1)}


@contextlib.contextmanager
def _writing(out_dir):
    """Writing the run: a full disk (or any failure to write) is the user's to fix, said in one
    line, not an internal error after the whole training."""
    try:
        yield
    except OSError as error:
        raise ArtifactError(f"{out_dir}: cannot write the run ({error.strerror or error}); free "
                            "space there or choose another --out, and train again. The model "
                            "published before is unchanged.") from None


def train(config: TrainConfig | None = None, *, intents: list[dict] | None = None,
          texts: Sequence[str] | None = None,
          labels: Sequence[str] | None = None) -> dict[str, dict]:
    """Train on `config.data`, or on data in memory, and publish the run into `config.out`;
    returns the test metrics of each model type.

    Data in memory is either `intents` (the intents file's list: {"tag", "patterns",
    "responses"}) or `texts` with their `labels`; it is validated like a file (the manifest
    records its checksum; its path is a temporary file)."""
    config = config or TrainConfig()
    if texts is not None or labels is not None:
        if texts is None or labels is None or len(texts) != len(labels):
            raise DataError("train(texts=..., labels=...): give both, one label per text.")
        if intents is not None:
            raise DataError("train(): give intents or texts and labels, not both.")
        by_tag: dict[str, list[str]] = {}
        for text, label in zip(texts, labels):
            by_tag.setdefault(label, []).append(text)
        intents = [{"tag": tag, "patterns": patterns, "responses": []}
                   for tag, patterns in by_tag.items()]
    if intents is None:
        return _train(config)
    with tempfile.TemporaryDirectory(prefix="intentkit-data-") as directory:
        data = Path(directory) / "intents.json"
        data.write_text(json.dumps({"intents": intents}), encoding="utf-8")
        return _train(replace(config, data=str(data)))


# Typical seconds of each phase (shipped data, 2-core laptop): the first run's plan. Later runs
# plan with the last run's own seconds, from its manifest.
TYPICAL_PHASE_SECONDS = {"prepare": 15, "search": 60, "fit": 90, "choose": 1, "refit": 5,
                         "write": 15, "track": 5}


def phase_plan(config, init_from):
    """The phases this run will go through, with their expected seconds."""
    names = ["prepare", *([] if init_from or not config.search else ["search"]), "fit", "choose",
             *(["refit"] if config.refit != "off" and not init_from else []), "write",
             *(["track"] if tracking.enabled(config) else [])]
    last = artifacts.published_manifest(config.out) or {}
    same_kind = bool(last.get("finetune")) == (init_from is not None)
    seconds = last.get("phase_seconds") if same_kind else None
    seconds = seconds if isinstance(seconds, dict) else {}
    return {name: (seconds[name] if isinstance(seconds.get(name), (int, float))
                   and seconds[name] > 0 else TYPICAL_PHASE_SECONDS[name]) for name in names}


def _train(config):
    started = time.perf_counter()
    tracking.check(config)
    set_seed(config.seed)
    init_from = artifacts.open_published(config.out) if config.finetune else None
    with (interrupts.interruptible(), artifacts.staging_area(config.out) as staging,
          tempfile.TemporaryDirectory(prefix="intentkit-") as scratch,
          whole_run("training", phase_plan(config, init_from)) as run):
        with phase("prepare"):
            prepared = prepare(config, Path(scratch), init_from)
        config = resolve_auto(config, len(prepared.dataset.x_train))
        fitted = fit_models(prepared, config, Path(scratch), init_from)
        with phase("choose"):
            choice = choose(prepared, fitted, config)
        if refits(prepared, fitted, config):
            with phase("refit", parts=len(fitted.members)):
                fitted = refit(prepared, fitted, choice, config)
        else:
            run.skip("refit")
        with phase("write"), _writing(config.out):
            scores = score(prepared, fitted, choice, config, staging / artifacts.REPORT_DIR)
            write_run(staging, prepared, fitted, scores, config,
                      round(time.perf_counter() - started, 1), init_from)
            entities.add_to_run(staging, prepared, scores, config)  # none without entities
            interrupts.stop_if_interrupted()
            artifacts.publish(staging, config.out, keep=config.keep)
        if tracking.enabled(config):
            with phase("track"):
                tracking.log_published_run(config)
    log.info("saved model, preprocessor and report to %s (%.0f s)", config.out,
             time.perf_counter() - started)
    return scores.metrics
