"""all-MiniLM-L6-v2 as a trainable Keras model, and its fine-tuning on intents.

The network is the one intentkit.encoders.minilm runs in NumPy (same safetensors weights, same
WordPiece tokenizer, same mean pooling and L2 normalisation), so that the encoder itself can learn
the intents instead of only a head on frozen embeddings. Fine-tuning is supervised contrastive
(in-batch: same intent pulled together, other intents pushed apart) plus cross-entropy of a
cosine-similarity head initialised at the class means; the result saves back to a safetensors
file that `pretrained.SentenceEncoder(weights_file=...)` reads, so the NumPy runtime serves it.

    encoder = finetune_encoder(texts, labels, time_budget_s=300, seed=0)
    encoder.save_weights("encoder.safetensors")
    probabilities = encoder.predict_proba(["how do I reset my PIN?"])  # columns: encoder.classes
"""
import logging
import math
import time

import keras
import numpy as np
import tensorflow as tf
from keras import layers, ops

from .minilm import (
    HEADS,
    HIDDEN,
    INTERMEDIATE,
    LAYER_NORM_EPSILON,
    LAYERS,
    WordPieceTokenizer,
    model_dir,
)

log = logging.getLogger(__name__)

DROPOUT = 0.1  # BERT's hidden_dropout_prob, active only while training
TRAIN_MAX_TOKENS = 64  # intents are short; a long outlier would pad its whole batch
# Any batch size and length: one graph, traced once (tracing the training step takes ~20 s).
IDS = tf.TensorSpec([None, None], tf.int32)


@keras.saving.register_keras_serializable(package="intentkit")
class Embeddings(layers.Layer):
    """Word + position + token-type 0 embeddings, then LayerNorm."""

    def __init__(self, vocab_size, max_positions, **kwargs):
        super().__init__(**kwargs)
        self.vocab_size, self.max_positions = vocab_size, max_positions
        self.norm = layers.LayerNormalization(epsilon=LAYER_NORM_EPSILON, name="norm")
        self.dropout = layers.Dropout(DROPOUT)

    def build(self, ids_shape):
        self.word = self.add_weight((self.vocab_size, HIDDEN), name="word")
        self.position = self.add_weight((self.max_positions, HIDDEN), name="position")
        # Both token-type rows are kept so that the saved file has the package's shapes;
        # single-sentence inputs only ever use row 0.
        self.token_type = self.add_weight((2, HIDDEN), name="token_type")
        self.norm.build((None, None, HIDDEN))

    def call(self, ids, training=False):
        x = (ops.take(self.word, ids, axis=0) + self.position[:ops.shape(ids)[1]]
             + self.token_type[0])
        return self.dropout(self.norm(x), training=training)

    def get_config(self):
        return {**super().get_config(), "vocab_size": self.vocab_size,
                "max_positions": self.max_positions}


@keras.saving.register_keras_serializable(package="intentkit")
class TransformerLayer(layers.Layer):
    """One post-LayerNorm BERT layer: self-attention over the non-padding tokens (id != 0),
    then the GELU feed-forward, each with a residual connection."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.query, self.key, self.value, self.attention_output = (
            layers.Dense(HIDDEN, name=name) for name in ("query", "key", "value", "attention"))
        self.attention_norm = layers.LayerNormalization(epsilon=LAYER_NORM_EPSILON,
                                                        name="attention_norm")
        self.up = layers.Dense(INTERMEDIATE, activation="gelu", name="up")  # Keras' is exact (erf)
        self.down = layers.Dense(HIDDEN, name="down")
        self.output_norm = layers.LayerNormalization(epsilon=LAYER_NORM_EPSILON,
                                                     name="output_norm")
        self.dropout = layers.Dropout(DROPOUT)

    def build(self, x_shape, ids_shape):
        for dense in (self.query, self.key, self.value, self.attention_output, self.up):
            dense.build((None, None, HIDDEN))
        self.down.build((None, None, INTERMEDIATE))
        self.attention_norm.build((None, None, HIDDEN))
        self.output_norm.build((None, None, HIDDEN))

    def call(self, x, ids, training=False):
        batch, length = ops.shape(ids)[0], ops.shape(ids)[1]
        head_size = HIDDEN // HEADS

        def heads(t):  # (batch, length, hidden) -> (batch, heads, length, head_size)
            return ops.transpose(ops.reshape(t, (batch, length, HEADS, head_size)), (0, 2, 1, 3))

        q, k, v = heads(self.query(x)), heads(self.key(x)), heads(self.value(x))
        padding = ops.cast(ops.equal(ids, 0), x.dtype)[:, None, None, :]
        scores = ops.matmul(q, ops.transpose(k, (0, 1, 3, 2))) / math.sqrt(head_size)
        context = ops.matmul(ops.softmax(scores - 1e9 * padding, axis=-1), v)
        context = ops.reshape(ops.transpose(context, (0, 2, 1, 3)), (batch, length, HIDDEN))
        x = self.attention_norm(x + self.dropout(self.attention_output(context),
                                                 training=training))
        return self.output_norm(x + self.dropout(self.down(self.up(x)), training=training))


@keras.saving.register_keras_serializable(package="intentkit")
class MeanPooling(layers.Layer):
    """Mean of the non-padding token states, L2-normalised: the sentence embedding."""

    def call(self, x, ids):
        weights = ops.cast(ops.not_equal(ids, 0), x.dtype)[..., None]
        pooled = ops.sum(x * weights, axis=1) / ops.maximum(ops.sum(weights, axis=1), 1e-9)
        return pooled / ops.maximum(ops.norm(pooled, axis=1, keepdims=True), 1e-12)


def build_encoder(vocab_size, max_positions=512):
    """Token ids (batch, length), 0 = padding -> unit-length sentence embeddings (batch, 384)."""
    ids = keras.Input((None,), dtype="int32", name="token_ids")
    x = Embeddings(vocab_size, max_positions, name="embeddings")(ids)
    for n in range(LAYERS):
        x = TransformerLayer(name=f"layer_{n}")(x, ids)
    return keras.Model(ids, MeanPooling(name="pooling")(x, ids), name="minilm")


def _weight_names(model):
    """(safetensors name, Keras variable, stored transposed?) for every weight of the model.
    PyTorch stores a linear layer's matrix as (out, in), Keras as (in, out)."""
    embeddings = model.get_layer("embeddings")
    names = [("embeddings.word_embeddings.weight", embeddings.word, False),
             ("embeddings.position_embeddings.weight", embeddings.position, False),
             ("embeddings.token_type_embeddings.weight", embeddings.token_type, False),
             ("embeddings.LayerNorm.weight", embeddings.norm.gamma, False),
             ("embeddings.LayerNorm.bias", embeddings.norm.beta, False)]
    for n in range(LAYERS):
        layer, prefix = model.get_layer(f"layer_{n}"), f"encoder.layer.{n}."
        for name, dense in (("attention.self.query", layer.query),
                            ("attention.self.key", layer.key),
                            ("attention.self.value", layer.value),
                            ("attention.output.dense", layer.attention_output),
                            ("intermediate.dense", layer.up), ("output.dense", layer.down)):
            names += [(prefix + name + ".weight", dense.kernel, True),
                      (prefix + name + ".bias", dense.bias, False)]
        for name, norm in (("attention.output.LayerNorm", layer.attention_norm),
                           ("output.LayerNorm", layer.output_norm)):
            names += [(prefix + name + ".weight", norm.gamma, False),
                      (prefix + name + ".bias", norm.beta, False)]
    return names


def _pad(id_lists, max_tokens=None):
    """A (batch, longest row) int32 matrix of the rows, each cut to max_tokens if given."""
    rows = [ids if max_tokens is None or len(ids) <= max_tokens
            else ids[:max_tokens - 1] + ids[-1:] for ids in id_lists]  # keep [SEP] last
    out = np.zeros((len(rows), max(len(ids) for ids in rows)), dtype=np.int32)
    for i, ids in enumerate(rows):
        out[i, :len(ids)] = ids
    return out


class TrainableEncoder:
    """The Keras encoder with its tokenizer; after finetune_encoder also a cosine head:
    `classes` (sorted intents), `head` (unit rows, one per class) and `head_scale`, and
    `training` (steps, epochs, setup_seconds, seconds)."""

    def __init__(self, weights_file=None):
        self.tokenizer = WordPieceTokenizer(model_dir() / "vocab.txt")
        self.model = build_encoder(len(self.tokenizer.vocab))
        self.load_weights(weights_file or model_dir() / "model.safetensors")
        self.classes, self.head, self.head_scale, self.training = None, None, None, None
        self._embed = tf.function(lambda ids: self.model(ids, training=False),
                                  input_signature=[IDS], autograph=False)

    def load_weights(self, path):
        from safetensors.numpy import load_file
        tensors = load_file(str(path))
        for name, variable, transposed in _weight_names(self.model):
            variable.assign(tensors[name].T if transposed else tensors[name])

    def save_weights(self, path):
        """A safetensors file with exactly the package's tensors (names, shapes, dtypes): the
        trained ones replaced, the rest (position_ids, the unused pooler) copied unchanged."""
        from safetensors.numpy import load_file, save_file
        tensors = load_file(str(model_dir() / "model.safetensors"))
        for name, variable, transposed in _weight_names(self.model):
            value = np.asarray(variable.numpy(), dtype=np.float32)
            tensors[name] = np.ascontiguousarray(value.T if transposed else value)
        save_file(tensors, str(path))

    def embed_ids(self, id_lists, batch_size=64):
        out = np.zeros((len(id_lists), HIDDEN), dtype=np.float32)
        order = np.argsort([len(ids) for ids in id_lists], kind="stable")
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            out[rows] = self._embed(_pad([id_lists[r] for r in rows])).numpy()
        return out

    def embed(self, texts, batch_size=64):
        """Embeddings of texts, (len(texts), 384) float32, unit length, batched by length."""
        return self.embed_ids([self.tokenizer.encode(t) for t in texts], batch_size)

    def predict_proba(self, texts):
        """Softmax of the cosine head: columns follow `classes`."""
        if self.head is None:
            raise ValueError("no head: train one with finetune_encoder")
        logits = self.head_scale * self.embed(texts) @ self.head.T
        logits = np.exp(logits - logits.max(axis=1, keepdims=True))
        return logits / logits.sum(axis=1, keepdims=True)


def supervised_contrastive_loss(embeddings, labels, temperature):
    """Khosla et al. 2020 on unit embeddings: each row's same-intent rows are its positives,
    every other row of the batch a negative. Rows without a positive in the batch are skipped."""
    same = ops.cast(ops.equal(labels[:, None], labels[None, :]), "float32")
    others = 1.0 - ops.eye(ops.shape(labels)[0])
    logits = ops.matmul(embeddings, ops.transpose(embeddings)) / temperature - 1e9 * (1 - others)
    log_probability = logits - ops.logsumexp(logits, axis=1, keepdims=True)
    positives = same * others
    count = ops.sum(positives, axis=1)
    per_row = -ops.sum(log_probability * positives, axis=1) / ops.maximum(count, 1.0)
    has_positive = ops.cast(count > 0, "float32")
    return ops.sum(per_row * has_positive) / ops.maximum(ops.sum(has_positive), 1.0)


def _class_groups(label_ids, group_size, rng):
    """One epoch as groups of `group_size` same-intent rows (a lone leftover joins the group
    before it, so every row has a positive), in random order."""
    groups = []
    for label in np.unique(label_ids):
        rows = rng.permutation(np.flatnonzero(label_ids == label))
        chunks = [list(rows[i:i + group_size]) for i in range(0, len(rows), group_size)]
        if len(chunks) > 1 and len(chunks[-1]) == 1:
            leftover = chunks.pop()
            chunks[-1] += leftover
        groups += chunks
    return [groups[i] for i in rng.permutation(len(groups))]


def _epoch_batches(label_ids, lengths, batch_size, group_size, rng):
    """One epoch's batches of whole groups, about `batch_size` rows each. Groups are batched in
    order of length, batches then shuffled: on CPU a batch costs its longest row times its size,
    and random batches of intents (median 13 tokens) would mostly compute padding."""
    groups = _class_groups(label_ids, group_size, rng)
    groups.sort(key=lambda group: max(lengths[r] for r in group))
    batches, batch = [], []
    for group in groups:
        batch += group
        if len(batch) >= batch_size:
            batches.append(batch)
            batch = []
    batches += [batch] if batch else []
    return [batches[i] for i in rng.permutation(len(batches))]


def finetune_encoder(texts, labels, *, time_budget_s, seed=0, epochs=10, batch_size=64,
                     group_size=4, learning_rate=5e-5, head_learning_rate=1e-2, temperature=0.1,
                     head_scale=20.0, cross_entropy_weight=1.0, warmup=0.1, progress=log):
    """Fine-tune all-MiniLM-L6-v2 on (texts, labels); returns a TrainableEncoder with its head.

    Each batch holds groups of `group_size` rows of one intent (so every row has positives), and
    the loss is the supervised contrastive loss at `temperature` plus `cross_entropy_weight` x
    the cross-entropy of a cosine head (`head_scale` x cosine to one unit vector per intent,
    started at the intent's mean frozen embedding). AdamW, linear warm-up then linear decay to 0.
    The word-embedding matrix stays frozen: 12 M of the 22 M weights, its few-shot updates would
    only move the words seen in training, and skipping them saves optimizer time.
    If the planned `epochs` would overrun `time_budget_s` (setup included), the schedule is cut
    to the steps that the speed measured so far allows, re-measured every step, so the learning
    rate still decays to 0 inside the budget; in any case it stops after the step that crosses
    the budget."""
    keras.utils.set_random_seed(seed)
    start = time.monotonic()
    rng = np.random.default_rng(seed)
    encoder = TrainableEncoder()
    classes = sorted(set(labels))
    label_ids = np.array([classes.index(label) for label in labels], dtype=np.int32)
    id_lists = [encoder.tokenizer.encode(t) for t in texts]
    frozen = encoder.embed_ids(id_lists)
    centroids = np.stack([frozen[label_ids == c].mean(axis=0) for c in range(len(classes))])
    head = tf.Variable(centroids / np.linalg.norm(centroids, axis=1, keepdims=True), name="head")
    embeddings = encoder.model.get_layer("embeddings")
    variables = [v for v in encoder.model.trainable_variables if v is not embeddings.word]
    encoder_optimizer = keras.optimizers.AdamW(learning_rate, weight_decay=0.01)
    head_optimizer = keras.optimizers.Adam(head_learning_rate)
    encoder_optimizer.build(variables)
    head_optimizer.build([head])

    @tf.function(input_signature=[IDS, tf.TensorSpec([None], tf.int32),
                                  tf.TensorSpec([], tf.float32)], autograph=False)
    def train_step(ids, batch_labels, rate):
        encoder_optimizer.learning_rate.assign(rate * learning_rate)
        head_optimizer.learning_rate.assign(rate * head_learning_rate)
        with tf.GradientTape() as tape:
            batch_embeddings = encoder.model(ids, training=True)
            contrastive = supervised_contrastive_loss(batch_embeddings, batch_labels, temperature)
            logits = head_scale * ops.matmul(batch_embeddings,
                                             ops.transpose(tf.math.l2_normalize(head, axis=1)))
            cross_entropy = ops.mean(keras.losses.sparse_categorical_crossentropy(
                batch_labels, logits, from_logits=True))
            loss = contrastive + cross_entropy_weight * cross_entropy
        gradients = tape.gradient(loss, variables + [head])
        encoder_optimizer.apply_gradients(zip(gradients[:-1], variables))
        head_optimizer.apply_gradients([(gradients[-1], head)])
        return contrastive, cross_entropy

    lengths = [min(len(ids), TRAIN_MAX_TOKENS) for ids in id_lists]

    def batches():  # epoch after epoch, without end
        while True:
            yield from _epoch_batches(label_ids, lengths, batch_size, group_size, rng)

    steps_per_epoch = len(_epoch_batches(label_ids, lengths, batch_size, group_size, rng))
    planned = total = epochs * steps_per_epoch
    shortened, logged = False, time.monotonic()
    setup_seconds = logged - start  # loading, tokenizing, embedding for the head's start
    progress.info("fine-tuning the encoder on %d texts, %d intents: %d epochs x %d steps, "
                  "budget %.0f s", len(texts), len(classes), epochs, steps_per_epoch,
                  time_budget_s)
    for step, batch in enumerate(batches(), start=1):
        warm = min(1.0, step / max(1.0, warmup * total))
        rate = warm * min(1.0, (total - step + 1) / max(1.0, (1 - warmup) * total))
        contrastive, cross_entropy = train_step(
            _pad([id_lists[r] for r in batch], TRAIN_MAX_TOKENS), label_ids[batch],
            tf.constant(rate, tf.float32))
        now = time.monotonic()
        elapsed = now - start
        if step == 1:
            traced = now  # the first step traced the graph: time the steps after it
        elif step >= 4:
            # Fit the schedule to what the budget allows at the speed so far (the machine may be
            # shared, the speed change), so that the rate decays to 0 within the budget.
            affordable = step + int((time_budget_s - elapsed) * (step - 1) / (now - traced))
            if affordable < planned and not shortened:
                progress.info("%.2f s a step: the budget allows %d of %d steps; schedule "
                              "shortened", (now - traced) / (step - 1), affordable, planned)
                shortened = True
            total = max(step, min(planned, affordable))
        if elapsed > time_budget_s and step < total:
            progress.warning("time budget of %.0f s reached at step %d/%d",
                             time_budget_s, step, total)
            total = step
        if now - logged > 15 or step >= total:
            progress.info("step %d/%d epoch %.1f: contrastive %.3f, cross-entropy %.3f, "
                          "%.0f s elapsed, ETA %.0f s", step, total, step / steps_per_epoch,
                          float(contrastive), float(cross_entropy), elapsed,
                          elapsed / step * (total - step))
            logged = now
        if step >= total:
            break
    encoder.classes = classes
    encoder.head = tf.math.l2_normalize(head, axis=1).numpy()
    encoder.head_scale = head_scale
    encoder.training = {"steps": step, "epochs": step / steps_per_epoch,
                        "setup_seconds": setup_seconds,
                        "seconds": time.monotonic() - start}
    progress.info("encoder fine-tuned in %.0f s (%d steps, %.1f epochs)",
                  encoder.training["seconds"], step, encoder.training["epochs"])
    return encoder
