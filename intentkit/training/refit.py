"""Choosing on held-out rows, then refitting on every labelled row (issue 29).

The pipeline chooses what needs held-out rows (the CNN-BiLSTM's configuration, each member's
epochs by early stopping, the ensemble weights, the default answer, the fallback thresholds) on
the validation split, then trains the published members on training + validation rows with what
was chosen, as scikit-learn's `GridSearchCV(refit=True)` does. The test split is never read for a
choice.

The pretrained member's head is, by default, a regularised linear model (multinomial logistic
regression, the strong few-shot peer) over the frozen all-MiniLM-L6-v2 embeddings. Its C is
chosen on out-of-fold predictions over K stratified folds of training + validation when the data
are small (a single 15 % carve is one or two rows per intent), else on the validation split. It
is published as a Keras model (one softmax Dense layer holding the fitted coefficients) so both
serving runtimes read it like any other member.
"""
import logging
from dataclasses import dataclass

import keras
import numpy as np
from keras import layers
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold

log = logging.getLogger(__name__)

# Below this many labelled rows (training + validation) the linear head's C is chosen on
# out-of-fold predictions; above it one validation split holds enough rows per intent.
OUT_OF_FOLD_MAX_ROWS = 5000
FOLDS = 5
LINEAR_HEAD_C = (1.0, 10.0, 100.0)  # the peer's grid
LINEAR_HEAD_MAX_ITER = 3000
# A member whose ensemble weight is below this is not refitted: it barely moves the answer, so
# its validation-fitted model is published as is (its weight and threshold were chosen with it).
REFIT_MIN_WEIGHT = 0.05


@dataclass
class LinearHeadChoice:
    """The linear head's C and how it was chosen."""
    c: float
    chosen_on: str  # "out-of-fold (K folds over training + validation)" or "validation"
    accuracy_by_c: dict  # C -> accuracy on the rows it was chosen on
    folds: int = 0
    val_probabilities: np.ndarray = None  # held-out probabilities of the validation rows


def fold_count(label_ids, folds=FOLDS):
    """How many stratified folds the labels allow (each intent in every fold's training part);
    0 when some intent has a single row."""
    if not len(label_ids):
        return 0
    smallest = min(np.bincount(label_ids)[np.unique(label_ids)])
    return min(folds, int(smallest)) if smallest >= 2 else 0


def fit_logistic_regression(x, label_ids, c, seed):
    return LogisticRegression(C=c, max_iter=LINEAR_HEAD_MAX_ITER, random_state=seed).fit(
        x, label_ids)


def class_probabilities(model, x, num_classes):
    """predict_proba with one column per class id (a class the model never saw scores 0)."""
    probabilities = np.zeros((len(x), num_classes), dtype=np.float32)
    probabilities[:, model.classes_] = model.predict_proba(x)
    return probabilities


def accuracy(probabilities, label_ids):
    return float((probabilities.argmax(axis=1) == label_ids).mean())


def choose_linear_head(x_train, y_train, x_val, y_val, num_classes, seed,
                       max_rows=OUT_OF_FOLD_MAX_ROWS, folds=FOLDS, grid=LINEAR_HEAD_C):
    """C for the linear head, chosen on out-of-fold predictions over training + validation when
    they hold at most `max_rows` rows (and every intent at least 2), else on validation. Also
    returns held-out probabilities of the validation rows for the ensemble's choices. Labels are
    class ids."""
    x_all = np.concatenate([x_train, x_val])
    y_all = np.concatenate([y_train, y_val])
    k = fold_count(y_all, folds) if len(x_all) <= max_rows else 0
    scores, held_out = {}, {}
    if k:
        splits = list(StratifiedKFold(k, shuffle=True, random_state=seed).split(x_all, y_all))
        for c in grid:
            out_of_fold = np.zeros((len(x_all), num_classes), dtype=np.float32)
            for fit_rows, held_rows in splits:
                model = fit_logistic_regression(x_all[fit_rows], y_all[fit_rows], c, seed)
                out_of_fold[held_rows] = class_probabilities(model, x_all[held_rows],
                                                             num_classes)
            scores[c] = accuracy(out_of_fold, y_all)
            held_out[c] = out_of_fold[len(x_train):]
        chosen_on = f"out-of-fold ({k} folds over training + validation)"
    else:
        for c in grid:
            model = fit_logistic_regression(x_train, y_train, c, seed)
            held_out[c] = class_probabilities(model, x_val, num_classes)
            scores[c] = accuracy(held_out[c], y_val)
        chosen_on = "validation"
    best = max(grid, key=lambda c: (scores[c], -c))  # ties: the stronger regularisation
    log.info("linear head: C=%g chosen on %s (accuracy %s)", best, chosen_on,
             ", ".join(f"C={c:g} {a:.4f}" for c, a in scores.items()))
    return LinearHeadChoice(best, chosen_on, {str(c): a for c, a in scores.items()}, k,
                            held_out[best])


def linear_head_model(model, embedding_dim, num_classes, name="minilm_linear_head"):
    """A fitted LogisticRegression as a Keras model (softmax of one Dense layer): the same
    probabilities, published and served like the other members."""
    kernel = np.zeros((embedding_dim, num_classes), dtype=np.float32)
    bias = np.zeros(num_classes, dtype=np.float32)
    if len(model.classes_) == 2 and model.coef_.shape[0] == 1:
        # Binary: sigmoid(z) == softmax([0, z]).
        kernel[:, model.classes_[1]] = model.coef_[0]
        bias[model.classes_[1]] = model.intercept_[0]
    else:
        kernel[:, model.classes_] = model.coef_.T
        bias[model.classes_] = model.intercept_
    missing = np.setdiff1d(np.arange(num_classes), model.classes_)
    bias[missing] = -1e4  # a class never seen in training is never answered
    inputs = keras.Input(shape=(embedding_dim,), name="sentence_embedding")
    dense = layers.Dense(num_classes, activation="softmax", dtype="float32", name="logits")
    outputs = dense(inputs)
    dense.set_weights([kernel, bias])
    return keras.Model(inputs, outputs, name=name)


def best_epoch(history):
    """The epoch (1-based) that early stopping kept: the least validation loss."""
    losses = history.get("val_loss") or []
    return int(np.argmin(losses)) + 1 if losses else len(history.get("loss", [])) or 1
