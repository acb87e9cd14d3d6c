"""Fitting the models of a run: tuning the CNN-BiLSTM, then each ensemble member.

A run starts from scratch (`fit_members`) or, with `--finetune`, from the published run
(`continue_members`: its members' output layers are fitted again over their published layers;
nanoGPT's `init_from`), never as a second pipeline.
"""
import logging
import re
import time
from dataclasses import dataclass, replace
from pathlib import Path

import keras
import numpy as np
from sklearn.model_selection import train_test_split

from .. import artifacts
from ..errors import ArtifactError, ConfigError, PretrainedUnavailable
from ..models.keras_models import (
    MODEL_BUILDERS,
    SEED_CONFIGS,
    build_cnn_bilstm,
    build_embedding_classifier,
)
from ..progress import Progress
from . import interrupts
from .refit import (
    REFIT_MIN_WEIGHT,
    best_epoch,
    choose_linear_head,
    fit_logistic_regression,
    linear_head_model,
)

log = logging.getLogger(__name__)

ENSEMBLE_LEARNING_RATE = 1e-3
HEAD_PATIENCE, HEAD_BATCH_SIZE = 10, 64  # the pretrained member's head: cheap, so patient
# Early stopping counts a validation loss as better only when it is this much lower: once the
# learning rate is halved on a plateau the loss creeps down by ~0.001 an epoch while validation
# accuracy stays flat, and without it the CNN-BiLSTM ran 20 such epochs on the shipped data
# (docs/training-speed.md). The best epoch's weights are still the ones kept.
EARLY_STOPPING_MIN_DELTA = 0.01
# --finetune: the output layer's epoch limit, patience, learning rate and batch size. Its inputs
# are computed once, so an epoch is a pass of one Dense layer over a few thousand rows.
OUTPUT_LAYER_EPOCHS, OUTPUT_LAYER_PATIENCE = 20, 3
OUTPUT_LAYER_LEARNING_RATE, OUTPUT_LAYER_BATCH_SIZE = 1e-2, 256


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
    # The CNN-BiLSTM's starting word vectors, one row per token id (None: learned from scratch).
    word_vectors: np.ndarray = None
    # Every labelled row (training + validation, augmented and balanced like the training
    # split): what the published members are refitted on once everything is chosen.
    x_all: np.ndarray = None
    y_all: np.ndarray = None
    class_weight_all: dict = None

    def reading(self, kind):
        """The rows a member reading `kind` (artifacts.TOKEN_IDS, ...) sees."""
        return self.embedded if kind == artifacts.SENTENCE_EMBEDDING else self


@dataclass
class Member:
    """A fitted model, the Dataset it reads and the name of its input (see artifacts)."""
    model: keras.Model
    data: Dataset
    input: str = artifacts.TOKEN_IDS


class EpochProgress(keras.callbacks.Callback):
    """One progress step per epoch (a bar on a terminal, else a log line); stops the run at an
    epoch end after Ctrl-C (see interrupts)."""

    def __init__(self, name, epochs, initial_epoch=0):
        super().__init__()
        self.progress = Progress(name, epochs - initial_epoch, unit="epoch")
        self.epochs = epochs

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        line = "epoch {}/{}  loss {:.4f}  acc {:.4f}".format(
            epoch + 1, self.epochs, logs.get("loss", np.nan), logs.get("accuracy", np.nan))
        if "val_loss" in logs:  # a refit on every labelled row has no validation rows
            line += "  val_loss {:.4f}  val_acc {:.4f}".format(
                logs["val_loss"], logs.get("val_accuracy", np.nan))
        self.progress.update(1, line)
        interrupts.stop_if_interrupted()

    def on_train_end(self, logs=None):
        self.progress.close()


def tensorboard_callbacks(config, name):
    """A TensorBoard callback logging to --tensorboard DIR/<name>, when asked for."""
    if not config.tensorboard:
        return []
    folder = re.sub(r"\W+", "_", name).strip("_")
    return [keras.callbacks.TensorBoard(log_dir=str(Path(config.tensorboard) / folder))]


def compile_for_training(model, learning_rate, label_smoothing):
    """Adam with gradient clipping, label-smoothed cross-entropy, accuracy: every fit's."""
    model.compile(optimizer=keras.optimizers.Adam(learning_rate, clipnorm=1.0),
                  loss=keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing),
                  metrics=["accuracy"])


def fit(model, dataset, learning_rate, epochs, patience, batch_size, name, monitor="val_loss",
        checkpoint=None, label_smoothing=0.0, callbacks=(), initial_epoch=0, compiled=False):
    """Adam with clipping, early stopping, LR reduction on plateau; best weights restored.
    `initial_epoch`: the epochs the model has had already (it trains on to `epochs` at most).
    `compiled`: the model trains on with its optimizer as compiled for them (its state kept; a
    new compile would trace the training step again, 7-9 s for a CNN-BiLSTM on 2 cores)."""
    if not compiled:
        compile_for_training(model, learning_rate, label_smoothing)
    callbacks = [EpochProgress(name, epochs, initial_epoch), *callbacks,
                 keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5,
                                                   patience=max(2, patience // 2), min_lr=1e-7)]
    stopping = {"monitor": monitor, "patience": patience,
                "min_delta": EARLY_STOPPING_MIN_DELTA if monitor == "val_loss" else 0}
    if checkpoint:
        callbacks += [keras.callbacks.ModelCheckpoint(checkpoint, monitor=monitor,
                                                      save_best_only=True, save_weights_only=True),
                      keras.callbacks.EarlyStopping(**stopping)]
    else:
        callbacks.append(keras.callbacks.EarlyStopping(**stopping, restore_best_weights=True))
    history = model.fit(dataset.x_train, dataset.y_train, batch_size=batch_size, epochs=epochs,
                        initial_epoch=initial_epoch, validation_data=(dataset.x_val, dataset.y_val),
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


def single_model(dataset, preprocessor, num_classes, configuration):
    """The CNN-BiLSTM of a tuning configuration, its embedding started from the dataset's word
    vectors when it has them."""
    return build_cnn_bilstm(preprocessor.vocab_size, preprocessor.max_sequence_length_,
                            num_classes, embedding_dim=configuration["embedding_dim"],
                            dropout=configuration["dropout"], word_vectors=dataset.word_vectors)


def tune(dataset, preprocessor, num_classes, config):
    """The seed configurations, started together and trained epoch by epoch in turn; Optuna's
    successive-halving pruner stops the weak ones at its rungs (a few epochs), the others run to
    the epoch limit or early stopping. The best validation accuracy (then loss) wins; every
    trial, pruned or not, is returned for the manifest.

    Searched on every training row, the search ends as soon as one trial is left running: it is
    the winner, and its model (returned as the third value, else None) trains on as the final
    CNN-BiLSTM instead of being trained again from scratch."""
    try:  # the `train` extra; imported here: only a full run searches
        import optuna
    except ImportError:
        raise ConfigError("the configuration search needs optuna: pip install -e '.[train]' "
                          "(or pass a configuration, e.g. intentkit cv reuses the first "
                          "fold's)") from None

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    searched = sample_rows(dataset, config.tuning_max_rows, config.seed)
    on_every_row = searched is dataset
    names = [trial["name"] for trial in SEED_CONFIGS]
    study = optuna.create_study(
        direction="maximize", sampler=optuna.samplers.GridSampler(
            {"configuration": names}, seed=config.seed),
        pruner=optuna.pruners.SuccessiveHalvingPruner(
            min_resource=config.search_min_epochs, reduction_factor=SEARCH_REDUCTION_FACTOR))
    distribution = {"configuration": optuna.distributions.CategoricalDistribution(names)}
    running = []
    for trial in SEED_CONFIGS:
        study.enqueue_trial({"configuration": trial["name"]})
        trial = with_vectors_width(trial, searched)
        keras.utils.set_random_seed(config.seed)
        model = single_model(searched, preprocessor, num_classes, trial)
        compile_for_training(model, trial["learning_rate"], config.label_smoothing)
        running.append(SearchTrial(study.ask(distribution), trial, model))
    progress = Progress("tuning", len(running) * config.tuning_epochs, unit="epoch")
    for epoch in range(config.tuning_epochs):
        this_epoch = [t for t in running if t.state == "running"]
        for trial in this_epoch:
            trial.train_one_epoch(searched, epoch, config)
            progress.update(1, f"{trial.configuration['name']} epoch {epoch + 1} val_acc "
                            f"{trial.history['val_accuracy'][-1]:.4f}")
            interrupts.stop_if_interrupted()
            trial.optuna_trial.report(trial.history["val_accuracy"][-1], epoch + 1)
        # Judged once every trial has reported this epoch, the best first: Optuna's successive
        # halving is asynchronous, it ranks a trial among those judged at its rung before it,
        # so the first one judged always goes on.
        for trial in sorted(this_epoch, key=lambda t: -t.history["val_accuracy"][-1]):
            if trial.optuna_trial.should_prune():
                trial.finish(study, "pruned", epoch + 1)
            elif epoch - trial.best_epoch >= config.tuning_patience:
                trial.finish(study, "early-stopped", epoch + 1)
        left = [t for t in running if t.state == "running"]
        if on_every_row and len(left) == 1:
            left[0].finish(study, "selected", epoch + 1, keep_last_weights=True)
            break
    for trial in running:
        if trial.state == "running":
            trial.finish(study, "completed", config.tuning_epochs)
    progress.close()
    trials = [trial.record() for trial in running]
    best, best_trial = max(((record, trial) for record, trial in zip(trials, running)
                            if record["state"] != "pruned"),
                           key=lambda pair: (pair[0]["val_accuracy"], -pair[0]["val_loss"]))
    log.info("best configuration: %s (%d of %d trials pruned)%s", best["name"],
             sum(t["state"] == "pruned" for t in trials), len(trials),
             "; it trains on as the final CNN-BiLSTM" if on_every_row else "")
    return best, trials, best_trial if on_every_row else None


def with_vectors_width(configuration, dataset):
    """`configuration` with the width of the dataset's word vectors as its embedding width,
    whatever its own, when the dataset has them."""
    if dataset.word_vectors is None:
        return configuration
    return {**configuration, "embedding_dim": dataset.word_vectors.shape[1]}


def unsearched_config(dataset):
    """The seed's first configuration (Baseline), trained without a search (--no-search)."""
    best = with_vectors_width(dict(SEED_CONFIGS[0]), dataset)
    log.info("configuration: %s (no search: --no-search, or --quick)", best["name"])
    return best


# Successive halving keeps the best quarter at each rung: of the seed's four configurations, the
# best after --search-min-epochs goes on.
SEARCH_REDUCTION_FACTOR = 4


class SearchTrial:
    """One configuration of the search: its model, trained one epoch per call, and its
    Optuna trial; it keeps its best epoch's weights (as early stopping would restore them)."""

    def __init__(self, optuna_trial, configuration, model):
        self.optuna_trial, self.configuration, self.model = optuna_trial, configuration, model
        self.history = {"loss": [], "accuracy": [], "val_loss": [], "val_accuracy": []}
        self.state, self.best_epoch, self.best_weights, self.seconds = "running", -1, None, 0.0
        self.stopped_at = 0
        self.trained_epochs = 0  # the epochs the model's weights have had

    def history_of_weights(self):
        """The per-epoch history up to the epoch the model's weights are from."""
        return {key: values[:self.trained_epochs] for key, values in self.history.items()}

    def train_one_epoch(self, dataset, epoch, config):
        started = time.perf_counter()
        trained = self.model.fit(dataset.x_train, dataset.y_train, batch_size=config.batch_size,
                                 epochs=epoch + 1, initial_epoch=epoch,
                                 class_weight=dataset.class_weight, verbose=0).history
        val_loss, val_accuracy = self.model.evaluate(dataset.x_val, dataset.y_val, verbose=0)
        self.history["loss"] += trained["loss"]
        self.history["accuracy"] += trained["accuracy"]
        self.history["val_accuracy"].append(float(val_accuracy))
        self.history["val_loss"].append(float(val_loss))
        best = self.history["val_accuracy"][self.best_epoch] if self.best_epoch >= 0 else -1
        if val_accuracy > best:
            self.best_epoch, self.best_weights = epoch, self.model.get_weights()
        self.seconds += time.perf_counter() - started

    def finish(self, study, state, epochs, keep_last_weights=False):
        """Ends the trial in `state`; its model goes back to its best epoch's weights unless
        it trains on from where it is (the search's winner)."""
        self.state, self.stopped_at = state, epochs
        if state == "pruned":
            study.tell(self.optuna_trial, state=optuna_state("PRUNED"))
        else:
            study.tell(self.optuna_trial, self.history["val_accuracy"][self.best_epoch])
        if self.best_weights is not None and not keep_last_weights:
            self.model.set_weights(self.best_weights)
            self.trained_epochs = self.best_epoch + 1
        else:
            self.trained_epochs = epochs
        self.best_weights = None
        log.info("tuning %-16s %s after %d epochs: best val_acc %.4f (epoch %d, %.0f s)",
                 self.configuration["name"], state, epochs,
                 self.history["val_accuracy"][self.best_epoch], self.best_epoch + 1,
                 self.seconds)

    def record(self):
        return {**self.configuration, "state": self.state, "epochs": self.stopped_at,
                "best_epoch": self.best_epoch + 1,
                "val_accuracy": self.history["val_accuracy"][self.best_epoch],
                "val_loss": self.history["val_loss"][self.best_epoch],
                "val_accuracy_by_epoch": [round(a, 4) for a in self.history["val_accuracy"]],
                "seconds": round(self.seconds, 1)}


def optuna_state(name):
    import optuna
    return getattr(optuna.trial.TrialState, name)


def new_model(name, dataset, preprocessor, num_classes, best):
    """A fresh, untrained model of member `name` and the Member reading its input."""
    if name == artifacts.SINGLE_MEMBER:
        return Member(single_model(dataset, preprocessor, num_classes, best), dataset)
    # "transformer" is the seed's name for the second member (kept in file names); by default
    # it is the pretrained MiniLM encoder's head (--transformer).
    if name == "transformer" and dataset.embedded is not None:
        return Member(build_embedding_classifier(dataset.embedded.x_train.shape[1], num_classes),
                      dataset.embedded, artifacts.SENTENCE_EMBEDDING)
    return Member(MODEL_BUILDERS[name](preprocessor.vocab_size, preprocessor.max_sequence_length_,
                                       num_classes), dataset)


def training_budget(name, member, best, config):
    """(learning rate, epoch limit, patience, batch size) of a member."""
    if name == artifacts.SINGLE_MEMBER:
        return best["learning_rate"], config.epochs, config.patience, config.batch_size
    if member.input == artifacts.SENTENCE_EMBEDDING:
        return ENSEMBLE_LEARNING_RATE, config.head_epochs, HEAD_PATIENCE, HEAD_BATCH_SIZE
    return (ENSEMBLE_LEARNING_RATE, config.ensemble_epochs, config.ensemble_patience,
            config.batch_size)


def uses_linear_head(name, dataset, config):
    return (name == "transformer" and dataset.embedded is not None
            and config.head == "linear")


def fit_members(dataset, preprocessor, num_classes, best, config, workdir, winner=None):
    """The CNN-BiLSTM with the best configuration, then the other ensemble members, each fitted
    on the training split with early stopping on validation (the epochs the refit reuses).
    `winner`: the search's winning trial, trained on every training row: the CNN-BiLSTM trains
    on from it rather than from scratch (its search epochs count in its history).

    The pretrained member reads sentence embeddings, the others token ids. Returns (members,
    histories, the linear head's choice or None)."""
    keras.utils.set_random_seed(config.seed)
    if winner is not None:
        single, searched = Member(winner.model, dataset), winner.history_of_weights()
    else:
        single, searched = new_model(artifacts.SINGLE_MEMBER, dataset, preprocessor,
                                     num_classes, best), {}
    members = {artifacts.SINGLE_MEMBER: single}
    checkpoint = workdir / "best.weights.h5"
    learning_rate, epochs, patience, batch_size = training_budget(
        artifacts.SINGLE_MEMBER, single, best, config)
    done = len(searched.get("loss", []))
    trained_on = fit(single.model, dataset, learning_rate, max(epochs, done + 1), patience,
                     batch_size, artifacts.SINGLE_MEMBER, checkpoint=str(checkpoint),
                     label_smoothing=config.label_smoothing,
                     callbacks=tensorboard_callbacks(config, artifacts.SINGLE_MEMBER),
                     initial_epoch=done, compiled=winner is not None)
    histories = {artifacts.SINGLE_MEMBER: {key: searched.get(key, []) + values
                                           for key, values in trained_on.items()}}
    checkpoint.unlink()
    head = None
    for name in ("transformer", "cnn") if config.ensemble else ():
        keras.utils.set_random_seed(config.seed)
        if uses_linear_head(name, dataset, config):
            members[name], head = fit_linear_head(dataset.embedded, num_classes, config.seed)
            continue
        member = new_model(name, dataset, preprocessor, num_classes, best)
        learning_rate, epochs, patience, batch_size = training_budget(name, member, best, config)
        histories[name] = fit(member.model, member.data, learning_rate, epochs, patience,
                              batch_size, name, label_smoothing=config.label_smoothing,
                              callbacks=tensorboard_callbacks(config, name))
        members[name] = member
    return members, histories, head


def fit_linear_head(embedded, num_classes, seed):
    """The linear head: C chosen on folds (small data) or validation, fitted on the training
    split (the refit gives it the validation rows too)."""
    train_ids, val_ids = embedded.y_train.argmax(axis=1), embedded.y_val.argmax(axis=1)
    choice = choose_linear_head(embedded.x_train, train_ids, embedded.x_val, val_ids,
                                num_classes, seed)
    model = linear_head_model(fit_logistic_regression(embedded.x_train, train_ids, choice.c,
                                                      seed),
                              embedded.x_train.shape[1], num_classes)
    return Member(model, embedded, artifacts.SENTENCE_EMBEDDING), choice


def fit_on_all_rows(model, x, y, class_weight, learning_rate, epochs, batch_size, name,
                    label_smoothing=0.0):
    """A fixed number of epochs over training + validation rows: no held-out rows are left to
    stop on, so the count comes from early stopping on the carve."""
    compile_for_training(model, learning_rate, label_smoothing)
    history = model.fit(x, y, batch_size=batch_size, epochs=epochs, class_weight=class_weight,
                        callbacks=[EpochProgress(f"refit {name}", epochs)], verbose=0)
    return history.history


def refit_members(members, histories, head, weights, default_model, dataset, preprocessor,
                  num_classes, best, config):
    """The published members, trained again on every labelled row with what was chosen on the
    validation split: the CNN-BiLSTM's configuration, each member's epochs, the linear head's
    C; every member with --refit full, the linear head alone with --refit head. A member whose
    ensemble weight is below REFIT_MIN_WEIGHT keeps its carve fit (it barely moves the answer),
    and so does the single CNN-BiLSTM unless it is the default answer or weighs in the
    ensemble. The fitted models are left as they were. Returns (members, {name: what its refit
    was})."""
    refitted, report = dict(members), {}
    for name, member in members.items():
        weight = weights.get(name, 0.0) if weights else (
            1.0 if name == artifacts.SINGLE_MEMBER else 0.0)
        needed = weight >= REFIT_MIN_WEIGHT or (name == artifacts.SINGLE_MEMBER
                                                and default_model == artifacts.SINGLE)
        linear = head is not None and uses_linear_head(name, dataset, config)
        if not needed or (config.refit == "head" and not linear):
            reason = (f"ensemble weight {weight:.2f} < {REFIT_MIN_WEIGHT:.2f}" if not needed
                      else "--refit head")
            log.info("refit: %s skipped (%s): published as fitted on the training split", name,
                     reason)
            report[name] = {"refitted": False, "weight": weight}
            continue
        keras.utils.set_random_seed(config.seed)
        started = time.perf_counter()
        data = dataset.reading(member.input)
        if linear:
            all_ids = data.y_all.argmax(axis=1)
            model = linear_head_model(fit_logistic_regression(data.x_all, all_ids, head.c,
                                                              config.seed),
                                      data.x_all.shape[1], num_classes)
            report[name] = {"refitted": True, "rows": int(len(data.x_all)), "C": head.c}
        else:
            model = new_model(name, dataset, preprocessor, num_classes, best).model
            learning_rate, _, _, batch_size = training_budget(name, member, best, config)
            epochs = best_epoch(histories[name])
            fit_on_all_rows(model, data.x_all, data.y_all, data.class_weight_all,
                            learning_rate, epochs, batch_size, name, config.label_smoothing)
            report[name] = {"refitted": True, "rows": int(len(data.x_all)), "epochs": epochs}
        report[name]["seconds"] = round(time.perf_counter() - started, 1)
        log.info("refit: %s on %d rows (training + validation) %s in %.0f s", name,
                 len(data.x_all), {k: v for k, v in report[name].items()
                                   if k in ("epochs", "C")}, report[name]["seconds"])
        refitted[name] = replace(member, model=model)
    return refitted, report


def widened(model, old_labels, labels):
    """`model` with one output unit per label of `labels` (a superset of `old_labels`, both in
    output order): each old label's unit keeps its weights, a new label's unit starts with no
    weights and the lowest bias (a small prior) and learns in the fine-tuning epochs."""
    if list(old_labels) == list(labels):
        return model
    last = model.layers[-1]
    kernel, bias = last.get_weights()
    position = [labels.index(tag) for tag in old_labels]
    new_kernel = np.zeros((kernel.shape[0], len(labels)), dtype=kernel.dtype)
    new_bias = np.full(len(labels), bias.min(), dtype=bias.dtype)
    new_kernel[:, position], new_bias[position] = kernel, bias
    output = keras.layers.Dense(len(labels), activation="softmax", dtype="float32",
                                name=last.name)(last.input)
    grown = keras.Model(model.inputs, output, name=model.name)
    grown.layers[-1].set_weights([new_kernel, new_bias])
    return grown


def continue_members(published, dataset, config, labels):
    """Each member of the published run (the ensemble's only when config.ensemble), fitted
    again on the new data from its weights: the starting point of --finetune. The token-id
    members keep their published layers and fit their output layer again (`fit_output_layer`);
    labels new since the published run get an output unit each (`widened`); the linear head
    over sentence embeddings, seconds to fit, is fitted again with its published C."""
    new = sorted(set(labels) - set(published.labels))
    if new:
        log.info("finetune: %d new intent(s) learned: %s", len(new), ", ".join(new))
    head_c = (published.manifest or {}).get("linear_head", {}) or {}
    if config.ensemble and not published.ensemble:
        raise ArtifactError(f"{config.out}: the published model has no ensemble; add "
                            "--no-ensemble, or train without --finetune.")
    members, histories = {}, {}
    for spec in published.ensemble if config.ensemble else [published.single]:
        data = dataset.reading(spec.input)
        if data is None:
            raise PretrainedUnavailable(f"{spec.path} reads sentence embeddings, but the "
                                        "pretrained encoder is off or not installed; train "
                                        "without --finetune.")
        keras.utils.set_random_seed(config.seed)
        if spec.input == artifacts.SENTENCE_EMBEDDING and isinstance(head_c.get("c"), (int, float)):
            ids = data.y_train.argmax(axis=1)
            members[spec.name] = Member(linear_head_model(fit_logistic_regression(
                data.x_train, ids, head_c["c"], config.seed), data.x_train.shape[1],
                len(labels)), data, spec.input)
            log.info("finetune: %s fitted again (logistic regression, C=%g)", spec.name,
                     head_c["c"])
            continue
        model = widened(artifacts.load_model(spec.path), published.labels, labels)
        members[spec.name] = Member(model, data, spec.input)
        histories[spec.name] = fit_output_layer(model, data, config, spec.name)
    return members, histories


def fit_output_layer(model, data, config, name):
    """`model`'s (member `name`'s) output layer fitted again on the training split, early-stopped
    on validation, over its other layers as they are: their outputs are computed once, then the
    softmax layer alone trains on them from its current weights. Returns the fit's history."""
    output = model.layers[-1]
    below = keras.Model(model.inputs[0], output.input)
    inputs = replace(data, x_train=probabilities(below, data.x_train).astype("float32"),
                     x_val=probabilities(below, data.x_val).astype("float32"))
    layer = keras.layers.Dense(output.units, activation="softmax", dtype="float32")
    head = keras.Sequential([keras.Input((inputs.x_train.shape[1],)), layer])
    layer.set_weights(output.get_weights())
    history = fit(head, inputs, OUTPUT_LAYER_LEARNING_RATE, OUTPUT_LAYER_EPOCHS,
                  OUTPUT_LAYER_PATIENCE, OUTPUT_LAYER_BATCH_SIZE, f"finetune {name}",
                  label_smoothing=config.label_smoothing,
                  callbacks=tensorboard_callbacks(config, name))
    output.set_weights(layer.get_weights())
    return history
