"""Model builders: the CNN-BiLSTM, a small transformer encoder and a multi-kernel CNN.

Every builder takes the same arguments and returns an uncompiled functional model mapping
padded token ids (0 = padding) to class probabilities. Padding is handled explicitly: Conv1D
silently drops Keras masks, so a boolean mask is computed once from the token ids and handed to
every layer that must ignore padding (BiLSTM, attention, pooling).

Custom layers are registered so that `.h5` files load anywhere `intentkit` is importable.
"""
import keras
from keras import layers, ops, regularizers

# The seed's four tuning configurations.
SEED_CONFIGS = (
    {"name": "Baseline", "embedding_dim": 100, "learning_rate": 1e-3, "dropout": 0.3},
    {"name": "Higher dimension", "embedding_dim": 200, "learning_rate": 5e-4, "dropout": 0.4},
    {"name": "Larger model", "embedding_dim": 300, "learning_rate": 1e-3, "dropout": 0.5},
    {"name": "Conservative", "embedding_dim": 150, "learning_rate": 1e-4, "dropout": 0.2},
)


@keras.saving.register_keras_serializable(package="intentkit")
class PaddingMask(layers.Layer):
    """True where a token is real (id != 0), False on padding."""

    def call(self, token_ids):
        return ops.not_equal(token_ids, 0)


@keras.saving.register_keras_serializable(package="intentkit")
class TokenDropout(layers.Layer):
    """While training, replaces a random share of real tokens by the OOV id (1).

    Small chatbot datasets are memorised word by word; hiding words teaches the model to use
    the rest of the sentence and how to treat words it has never seen.
    """

    def __init__(self, rate, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.rate = rate
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, token_ids, training=None):
        if not training or self.rate == 0:
            return token_ids
        drop = keras.random.uniform(ops.shape(token_ids), seed=self.seed_generator) < self.rate
        return ops.where(ops.logical_and(drop, ops.not_equal(token_ids, 0)),
                         ops.ones_like(token_ids), token_ids)

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}


@keras.saving.register_keras_serializable(package="intentkit")
class ZeroPadding(layers.Layer):
    """Zeroes the vectors at padded positions, so convolutions never read learned pad vectors."""

    def call(self, inputs):
        sequence, mask = inputs
        return sequence * ops.expand_dims(ops.cast(mask, sequence.dtype), -1)


@keras.saving.register_keras_serializable(package="intentkit")
class MaskedGlobalMaxPooling1D(layers.Layer):
    """Max over the real time steps only; consumes the mask (the output has no time axis)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True

    def compute_mask(self, inputs, mask=None):
        return None

    def call(self, inputs):
        sequence, mask = inputs
        very_negative = ops.cast(-1e4, sequence.dtype)  # fits float16 under mixed precision
        return ops.max(ops.where(ops.expand_dims(mask, -1), sequence, very_negative), axis=1)


@keras.saving.register_keras_serializable(package="intentkit")
class TokenAndPositionEmbedding(layers.Layer):
    """Token embedding plus a learned position embedding (the seed's transformer had no word
    order)."""

    def __init__(self, max_length, vocab_size, embedding_dim, **kwargs):
        super().__init__(**kwargs)
        self.max_length = max_length
        self.vocab_size = vocab_size
        self.embedding_dim = embedding_dim
        self.token_embedding = layers.Embedding(vocab_size, embedding_dim)
        self.position_embedding = layers.Embedding(max_length, embedding_dim)

    def call(self, token_ids):
        positions = ops.arange(ops.shape(token_ids)[-1])
        return self.token_embedding(token_ids) + self.position_embedding(positions)

    def get_config(self):
        return {**super().get_config(), "max_length": self.max_length,
                "vocab_size": self.vocab_size, "embedding_dim": self.embedding_dim}


@keras.saving.register_keras_serializable(package="intentkit")
class TransformerEncoderBlock(layers.Layer):
    """Self-attention + feed-forward, each with residual and LayerNorm; padding is never attended
    to."""

    def __init__(self, embedding_dim, num_heads, key_dim, ff_dim, dropout, **kwargs):
        super().__init__(**kwargs)
        self.embedding_dim = embedding_dim
        self.num_heads = num_heads
        self.key_dim = key_dim
        self.ff_dim = ff_dim
        self.dropout = dropout
        self.attention = layers.MultiHeadAttention(num_heads, key_dim, dropout=dropout)
        self.feed_forward = keras.Sequential(
            [layers.Dense(ff_dim, activation="relu"), layers.Dense(embedding_dim)])
        self.attention_norm = layers.LayerNormalization(epsilon=1e-6)
        self.feed_forward_norm = layers.LayerNormalization(epsilon=1e-6)
        self.attention_dropout = layers.Dropout(dropout)
        self.feed_forward_dropout = layers.Dropout(dropout)

    def call(self, inputs, training=None):
        sequence, mask = inputs
        attention_mask = ops.logical_and(ops.expand_dims(mask, 1), ops.expand_dims(mask, 2))
        attended = self.attention(sequence, sequence, attention_mask=attention_mask,
                                  training=training)
        sequence = self.attention_norm(
            sequence + self.attention_dropout(attended, training=training))
        transformed = self.feed_forward(sequence)
        return self.feed_forward_norm(
            sequence + self.feed_forward_dropout(transformed, training=training))

    def get_config(self):
        return {**super().get_config(), "embedding_dim": self.embedding_dim,
                "num_heads": self.num_heads, "key_dim": self.key_dim, "ff_dim": self.ff_dim,
                "dropout": self.dropout}


def _classifier_head(features, num_classes, units, dropout, l2=None):
    for width in units:
        features = layers.Dense(width, activation="relu",
                                kernel_regularizer=regularizers.L2(l2) if l2 else None)(features)
        features = layers.Dropout(dropout)(features)
    # float32 output keeps softmax stable under mixed precision.
    return layers.Dense(num_classes, activation="softmax", dtype="float32")(features)


def build_cnn_bilstm(vocab_size, max_length, num_classes, embedding_dim=100, dropout=0.3,
                     lstm_units=128, conv_filters=64, kernel_sizes=(2, 3, 4), l2=1e-4,
                     token_dropout=0.1, word_vectors=None):
    """The seed's "advanced model": parallel n-gram convolutions feeding a masked BiLSTM.

    The seed stacked its three convolutions and used recurrent_dropout; here they run in
    parallel (one n-gram width each) and the LSTM keeps the cuDNN-compatible defaults.
    `word_vectors` (vocab_size, width): the embedding's starting rows, trained on; their width
    replaces embedding_dim.
    """
    if word_vectors is not None:
        embedding_dim = word_vectors.shape[1]
    token_ids = keras.Input(shape=(max_length,), dtype="int32", name="token_ids")
    mask = PaddingMask(name="padding_mask")(token_ids)
    embedding = layers.Embedding(vocab_size, embedding_dim, name="embedding")
    embedded = embedding(TokenDropout(token_dropout)(token_ids))
    embedded = layers.SpatialDropout1D(dropout)(embedded)
    embedded = ZeroPadding()([embedded, mask])
    ngrams = layers.Concatenate()([
        layers.Conv1D(conv_filters, width, padding="same", activation="relu")(embedded)
        for width in kernel_sizes])
    ngrams = ZeroPadding()([ngrams, mask])
    sequence = layers.Bidirectional(layers.LSTM(
        lstm_units, return_sequences=True, kernel_regularizer=regularizers.L2(l2)))(
        ngrams, mask=mask)
    pooled = MaskedGlobalMaxPooling1D()([sequence, mask])
    # Momentum 0.9, not 0.99: small chatbot datasets give few steps per epoch, and slow running
    # statistics made early validation scores (and early stopping) lag far behind training.
    pooled = layers.BatchNormalization(momentum=0.9)(pooled)
    outputs = _classifier_head(pooled, num_classes, units=(256, 128), dropout=dropout, l2=l2)
    model = keras.Model(token_ids, outputs, name="cnn_bilstm")
    if word_vectors is not None:
        embedding.set_weights([word_vectors])
    return model


def build_transformer(vocab_size, max_length, num_classes, embedding_dim=128, dropout=0.2,
                      num_heads=8, key_dim=16, ff_dim=512, token_dropout=0.1):
    """One transformer encoder block over token + position embeddings (the seed's shape)."""
    token_ids = keras.Input(shape=(max_length,), dtype="int32", name="token_ids")
    mask = PaddingMask(name="padding_mask")(token_ids)
    embedded = TokenAndPositionEmbedding(max_length, vocab_size, embedding_dim)(
        TokenDropout(token_dropout)(token_ids))
    embedded = layers.SpatialDropout1D(dropout)(embedded)
    encoded = TransformerEncoderBlock(embedding_dim, num_heads, key_dim, ff_dim, dropout)(
        [embedded, mask])
    pooled = MaskedGlobalMaxPooling1D()([encoded, mask])
    outputs = _classifier_head(pooled, num_classes, units=(128,), dropout=0.3)
    return keras.Model(token_ids, outputs, name="transformer")


def build_cnn(vocab_size, max_length, num_classes, embedding_dim=128, dropout=0.3,
              conv_filters=128, kernel_sizes=(1, 2, 3, 4), token_dropout=0.1):
    """Kim-style CNN: parallel convolutions of several widths, max-pooled over real tokens."""
    token_ids = keras.Input(shape=(max_length,), dtype="int32", name="token_ids")
    mask = PaddingMask(name="padding_mask")(token_ids)
    embedded = layers.Embedding(vocab_size, embedding_dim)(TokenDropout(token_dropout)(token_ids))
    embedded = layers.SpatialDropout1D(dropout)(embedded)
    embedded = ZeroPadding()([embedded, mask])
    pooled = layers.Concatenate()([
        MaskedGlobalMaxPooling1D()([
            layers.Conv1D(conv_filters, width, padding="same", activation="relu")(embedded),
            mask])
        for width in kernel_sizes])
    outputs = _classifier_head(pooled, num_classes, units=(128,), dropout=dropout)
    return keras.Model(token_ids, outputs, name="cnn")


def build_embedding_classifier(embedding_dim, num_classes, units=(512,), dropout=0.3):
    """The trained head of the pretrained member: a small MLP over fixed sentence embeddings
    (all-MiniLM-L6-v2's, computed by intentkit.encoders.minilm)."""
    embeddings = keras.Input(shape=(embedding_dim,), name="sentence_embedding")
    features = layers.Dropout(dropout)(embeddings)
    outputs = _classifier_head(features, num_classes, units=units, dropout=dropout)
    return keras.Model(embeddings, outputs, name="minilm_head")


MODEL_BUILDERS = {"cnn_bilstm": build_cnn_bilstm, "transformer": build_transformer,
                  "cnn": build_cnn}
