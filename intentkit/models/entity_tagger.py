"""Entity extraction: BIO sequence labellers over word tokens, mapped back to character spans.

Two labellers, measured against each other on SNIPS by benchmarks/entities.py:
- `CrfTagger`: a linear-chain CRF (sklearn-crfsuite) over hand-made word features: the baseline
  of Rasa's CRFEntityExtractor and snips-nlu.
- `TokenHeadTagger`: a BiLSTM head over the frozen all-MiniLM-L6-v2 token states (the last two
  layers, at each word's first word piece) and a trained word embedding. Trained in Keras; it
  answers with the NumPy forward here (numpy_runtime's LSTM), no TensorFlow at serving.

Both take the deterministic matches of the `"entities"` section (lookup tables, regexes) as
features, one per type: `entity_types` is a data.annotations.EntityTypes (anything with
`.types` and `.find(text)`; models/ sits below data/ and imports nothing of it). Entities are
dicts with Rasa's keys: entity, value, start, end (character offsets into the message, end
exclusive), confidence, extractor. serving.entities joins a labeller with the deterministic
matches and the synonyms.
"""
import json
import re
import threading
from pathlib import Path

import numpy as np

TOKEN = re.compile(r"\w+|[^\w\s]")
OUTSIDE = "O"


def tokenize(text):
    """(start, end) character spans of a text's word tokens: runs of word characters, and
    every other non-space character alone."""
    return [match.span() for match in TOKEN.finditer(text)]


def bio_tags(tokens, spans):
    """B-/I-/O tags of tokens given character spans (a token overlapping a span is inside it)."""
    tags = [OUTSIDE] * len(tokens)
    for span in spans:
        inside = [i for i, (start, end) in enumerate(tokens)
                  if start < span.end and end > span.start]
        for order, i in enumerate(inside):
            tags[i] = ("B-" if order == 0 else "I-") + span.entity
    return tags


def decode(text, tokens, tags, confidences, extractor):
    """Entities (answer dicts) of BIO tags; an I- tag that continues nothing starts an entity."""
    entities, current = [], None
    for (start, end), tag, confidence in zip(tokens, tags, confidences):
        kind, _, entity = tag.partition("-")
        if kind == "I" and current and current["entity"] == entity:
            current["end"] = end
            current["scores"].append(confidence)
            continue
        current = None
        if kind in ("B", "I"):
            current = {"entity": entity, "start": start, "end": end, "scores": [confidence]}
            entities.append(current)
    for entity in entities:
        scores = entity.pop("scores")
        entity.update(value=text[entity["start"]:entity["end"]],
                      confidence=round(float(np.mean(scores)), 4), extractor=extractor)
    return [{key: e[key] for key in ("entity", "value", "start", "end", "confidence",
                                     "extractor")} for e in entities]


def match_features(text, tokens, entity_types, match_types):
    """(len(tokens), len(match_types)) 0/1: the token lies in a lookup/regex match of the type."""
    features = np.zeros((len(tokens), len(match_types)), dtype=np.float32)
    if not match_types:
        return features  # also where entity_types is None
    column = {name: i for i, name in enumerate(match_types)}
    for found in entity_types.find(text):
        for i, (start, end) in enumerate(tokens):
            if start < found["end"] and end > found["start"] and found["entity"] in column:
                features[i, column[found["entity"]]] = 1
    return features


def _shape(word):
    shape = re.sub(r"[A-Z]", "A", re.sub(r"[a-z]", "a", re.sub(r"\d", "0", word)))
    return re.sub(r"(.)\1+", r"\1\1", shape)


def crf_features(text, tokens, matches, match_types):
    """Per token: the word, its affixes and shape, its neighbours' words, and lookup matches."""
    words = [text[start:end] for start, end in tokens]
    lower = [w.lower() for w in words]
    rows = []
    for i, word in enumerate(words):
        row = {"bias": 1.0, "w": lower[i], "p3": lower[i][:3], "s3": lower[i][-3:],
               "s2": lower[i][-2:], "shape": _shape(word), "digit": word.isdigit(),
               "title": word.istitle(), "upper": word.isupper(), "len": min(len(word), 8)}
        for offset in (-2, -1, 1, 2):
            j = i + offset
            row[f"w{offset:+d}"] = lower[j] if 0 <= j < len(words) else ("<s>" if j < 0
                                                                          else "</s>")
        row["bigram-"] = f"{row['w-1']}|{lower[i]}"
        row["bigram+"] = f"{lower[i]}|{row['w+1']}"
        for column, name in enumerate(match_types):
            if matches[i, column]:
                row[f"match:{name}"] = 1.0
        rows.append(row)
    return rows


def _match_types(entity_types):
    if entity_types is None:
        return []
    return sorted(name for name, t in entity_types.types.items() if t.lookup or t.regexes)


class CrfTagger:
    """A linear-chain CRF over word features (sklearn-crfsuite, L-BFGS, elastic net).

    Trained, it keeps its CRFsuite model as bytes (`model_bytes`, what a run stores) and tags
    through one in-memory pycrfsuite Tagger; a Tagger holds the sequence being tagged, so calls
    take turns on a lock (a message takes well under a millisecond)."""
    extractor = "crf"

    def __init__(self, entity_types=None, c1=0.05, c2=0.05, max_iterations=150):
        self.entity_types = entity_types
        self.match_types = _match_types(self.entity_types)
        self.params = dict(c1=c1, c2=c2, max_iterations=max_iterations)
        self._tagger = None
        self._lock = threading.Lock()

    def _features(self, text, tokens):
        matches = match_features(text, tokens, self.entity_types, self.match_types)
        return crf_features(text, tokens, matches, self.match_types)

    def fit(self, texts, spans):
        import sklearn_crfsuite
        rows = [(text, tokenize(text), row_spans) for text, row_spans in zip(texts, spans)]
        rows = [row for row in rows if row[1]]
        crf = sklearn_crfsuite.CRF(algorithm="lbfgs", all_possible_transitions=True,
                                   **self.params)
        crf.fit([self._features(text, tokens) for text, tokens, _ in rows],
                [bio_tags(tokens, row_spans) for _, tokens, row_spans in rows])
        self._open(Path(crf.modelfile.name).read_bytes())
        return self

    def _open(self, model_bytes):
        import pycrfsuite
        tagger = pycrfsuite.Tagger()
        tagger.open_inmemory(model_bytes)
        self.model_bytes, self._tagger = model_bytes, tagger

    @classmethod
    def from_bytes(cls, model_bytes, entity_types=None, params=None):
        """The tagger whose CRFsuite model is `model_bytes` (its `model_bytes` once trained);
        `entity_types` those it was trained with. A ValueError if the bytes are no model."""
        tagger = cls(entity_types, **(params or {}))
        try:
            tagger._open(model_bytes)
        except (ValueError, OSError) as error:
            raise ValueError(f"not a CRFsuite model ({error})") from None
        return tagger

    def predict(self, texts):
        out = []
        for text in texts:
            tokens = tokenize(text)
            if not tokens:
                out.append([])
                continue
            features = self._features(text, tokens)
            with self._lock:
                self._tagger.set(features)
                tags = self._tagger.tag()
                confidences = [self._tagger.marginal(tag, i) for i, tag in enumerate(tags)]
            out.append(decode(text, tokens, tags, confidences, self.extractor))
        return out


class TokenHeadTagger:
    """BiLSTM over frozen MiniLM token states + a trained word embedding; softmax BIO tags."""
    extractor = "minilm_bilstm"
    WEIGHTS, CONFIG = "entity_tagger.npz", "entity_tagger.json"

    def __init__(self, encoder, entity_types=None, units=128, word_dim=64, dropout=0.25,
                 epochs=30, patience=4, batch_size=32, seed=0):
        self.encoder = encoder
        self.entity_types = entity_types
        self.match_types = _match_types(self.entity_types)
        self.settings = dict(units=units, word_dim=word_dim, dropout=dropout, epochs=epochs,
                             patience=patience, batch_size=batch_size, seed=seed)

    # --- features ------------------------------------------------------------------------
    def _windows(self, text, tokens):
        """[CLS] pieces [SEP] id lists that fit the encoder (256 pieces), over consecutive
        tokens, each with its (token index, first piece position) pairs: a long message is
        encoded window by window, so that every word has its states."""
        tokenizer = self.encoder.tokenizer
        room = tokenizer.max_tokens - 2
        windows, ids, firsts = [], [], []
        for index, (start, end) in enumerate(tokens):
            pieces = (tokenizer.pieces(text[start:end]) or [tokenizer.unk])[:room]
            if ids and len(ids) + len(pieces) > room:
                windows.append(([tokenizer.cls, *ids, tokenizer.sep], firsts))
                ids, firsts = [], []
            firsts.append((index, len(ids) + 1))
            ids.extend(pieces)
        windows.append(([tokenizer.cls, *ids, tokenizer.sep], firsts))
        return windows

    def _inputs(self, texts):
        """Per text: (tokens, token states (T, 768) float32, word ids (T,), matches (T, M))."""
        tokenized = [tokenize(text) for text in texts]
        windows = [self._windows(text, tokens) for text, tokens in zip(texts, tokenized)]
        states = iter(self.encoder.token_states([ids for row in windows for ids, _ in row]))
        rows, first_windows = [], []
        for text, tokens, row_windows in zip(texts, tokenized, windows):
            token_states = None
            for number, (_, firsts) in enumerate(row_windows):
                window_states = next(states)
                if number == 0:
                    first_windows.append(window_states)
                    token_states = np.zeros((len(tokens), window_states.shape[1]), np.float32)
                for index, position in firsts:
                    token_states[index] = window_states[position]
            words = np.array([self.vocab.get(text[s:e].lower(), 1) for s, e in tokens],
                             dtype=np.int64)
            matches = match_features(text, tokens, self.entity_types, self.match_types)
            rows.append((tokens, token_states, words, np.pad(matches, ((0, 0), (0, 1)))))
        # The sentence embedding comes free with the token states (the mean of the last layer
        # over the first window): kept for a caller that also classifies the intent.
        width = first_windows[0].shape[1] // 2 if first_windows else 0
        pooled = np.array([row[:, width:].mean(axis=0) for row in first_windows], np.float32)
        self.last_sentence_embeddings = pooled / np.maximum(
            np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12) if len(pooled) else pooled
        return rows

    @staticmethod
    def _batch(rows, indices):
        # Lengths rounded up to a multiple of 8: a handful of shapes, so Keras traces its
        # training step a handful of times, not once per batch length.
        length = -(-max(len(rows[i][0]) for i in indices) // 8) * 8
        width = rows[indices[0]][1].shape[1], rows[indices[0]][3].shape[1]
        states = np.zeros((len(indices), length, width[0]), np.float32)
        words = np.zeros((len(indices), length), np.int64)
        matches = np.zeros((len(indices), length, width[1]), np.float32)
        for b, i in enumerate(indices):
            n = len(rows[i][0])
            states[b, :n], words[b, :n], matches[b, :n] = rows[i][1], rows[i][2], rows[i][3]
        return states, words, matches

    # --- training (Keras) ----------------------------------------------------------------
    def _build(self, state_width, match_width):
        import keras
        from keras import layers
        s = self.settings
        states = keras.Input((None, state_width), name="states")
        words = keras.Input((None,), dtype="int64", name="words")
        matches = keras.Input((None, match_width), name="matches")
        embedded = layers.Embedding(len(self.vocab) + 2, s["word_dim"], mask_zero=True,
                                    name="word_embedding")(words)
        features = layers.Concatenate(name="features")(
            [layers.Dropout(s["dropout"])(states), embedded, matches])
        hidden = layers.Bidirectional(layers.LSTM(s["units"], return_sequences=True),
                                      name="bilstm")(features)
        hidden = layers.Dropout(s["dropout"])(hidden)
        tags = layers.Dense(len(self.tags), activation="softmax", name="tags")(hidden)
        model = keras.Model([states, words, matches], tags)
        model.compile(optimizer=keras.optimizers.Adam(1e-3),
                      loss="sparse_categorical_crossentropy")
        return model

    def fit(self, texts, spans, val_texts=None, val_spans=None, val_score=None, progress=None):
        """Train on texts and their spans; with validation rows and `val_score(true spans,
        predicted entities) -> float` (e.g. the entity micro-F1), keep the best epoch's weights
        and stop after `patience` epochs without a better score."""
        import keras
        keras.utils.set_random_seed(self.settings["seed"])
        counts = {}
        for text in texts:
            for start, end in tokenize(text):
                counts[text[start:end].lower()] = counts.get(text[start:end].lower(), 0) + 1
        # Ids 0 (padding) and 1 (unknown); words seen once stay unknown so that the unknown
        # id is trained on words like those a user will write that training never saw.
        self.vocab = {word: i + 2 for i, word in enumerate(sorted(w for w, c in counts.items()
                                                                  if c > 1))}
        self.tags = [OUTSIDE] + sorted({prefix + span.entity for row in spans for span in row
                                        for prefix in ("B-", "I-")})
        tag_index = {tag: i for i, tag in enumerate(self.tags)}
        rows = self._inputs(texts)
        self.train_sentence_embeddings = self.last_sentence_embeddings
        targets = [np.array([tag_index[t] for t in bio_tags(row[0], row_spans)])
                   for row, row_spans in zip(rows, spans)]
        keep = [i for i, row in enumerate(rows) if len(row[0])]
        model = self._build(rows[0][1].shape[1], rows[0][3].shape[1])
        val_rows = self._inputs(val_texts) if val_texts else None
        rng = np.random.default_rng(self.settings["seed"])
        size = self.settings["batch_size"]
        best, best_weights, waited = -1.0, None, 0
        for epoch in range(self.settings["epochs"]):
            # Batches of similar lengths (little padding), in a shuffled order.
            order = sorted(rng.permutation(keep), key=lambda i: len(rows[i][0]) // 4)
            batches = [order[start:start + size] for start in range(0, len(order), size)]
            for number in rng.permutation(len(batches)):
                indices = batches[number]
                states, words, matches = self._batch(rows, indices)
                target = np.zeros(words.shape, np.int64)
                weight = (words > 0).astype(np.float32)
                for b, i in enumerate(indices):
                    target[b, :len(targets[i])] = targets[i]
                model.train_on_batch([states, words, matches], target, sample_weight=weight)
            self._take_weights(model)
            if val_rows is None or val_score is None:
                continue
            score = val_score(val_spans, self._predict_rows(val_texts, val_rows))
            if progress:
                progress(epoch, score)
            if score > best:
                best, best_weights, waited = score, model.get_weights(), 0
            else:
                waited += 1
                if waited >= self.settings["patience"]:
                    break
        if best_weights is not None:
            model.set_weights(best_weights)
            self._take_weights(model)
        self.epochs_run = epoch + 1
        self.keras_model = model  # for a check against the NumPy forward; never saved
        return self

    def _take_weights(self, model):
        """The NumPy forward's arrays and layer configs from the Keras model."""
        bilstm = model.get_layer("bilstm")
        self.layer_config = {"bilstm": bilstm.get_config()}
        self.weights = {"embedding": model.get_layer("word_embedding").get_weights()[0]}
        for i, array in enumerate(bilstm.get_weights()):
            self.weights[f"bilstm_{i}"] = array
        self.weights["dense_kernel"], self.weights["dense_bias"] = \
            model.get_layer("tags").get_weights()
        self._forward = None

    # --- inference (NumPy) ---------------------------------------------------------------
    def _network(self):
        if self._forward is None:
            from .numpy_runtime import _bidirectional
            bilstm = _bidirectional(self.layer_config["bilstm"],
                                    [self.weights[f"bilstm_{i}"] for i in range(6)])
            embedding, kernel, bias = (self.weights[k] for k in ("embedding", "dense_kernel",
                                                                 "dense_bias"))

            def forward(states, words, matches):
                features = np.concatenate([states, embedding[words], matches], axis=-1)
                logits = bilstm(features, words > 0) @ kernel + bias
                logits -= logits.max(axis=-1, keepdims=True)
                np.exp(logits, out=logits)
                return logits / logits.sum(axis=-1, keepdims=True)
            self._forward = forward
        return self._forward

    def probabilities(self, texts):
        """(tokens, (T, tags) probabilities) per text, from the NumPy forward."""
        rows = self._inputs(texts)
        out = []
        for row in rows:
            if not row[0]:
                out.append((row[0], np.zeros((0, len(self.tags)), np.float32)))
                continue
            out.append((row[0], self._network()(row[1][None], row[2][None], row[3][None])[0]))
        return out

    def _predict_rows(self, texts, rows):
        out = []
        for text, row in zip(texts, rows):
            if not row[0]:
                out.append([])
                continue
            probabilities = self._network()(row[1][None], row[2][None], row[3][None])[0]
            best = probabilities.argmax(axis=-1)
            out.append(decode(text, row[0], [self.tags[i] for i in best],
                              probabilities[np.arange(len(best)), best], self.extractor))
        return out

    def predict(self, texts):
        return self._predict_rows(texts, self._inputs(texts))

    # --- files -----------------------------------------------------------------------------
    def save(self, directory):
        directory = Path(directory)
        np.savez(directory / self.WEIGHTS, **self.weights)
        (directory / self.CONFIG).write_text(json.dumps({
            "tags": self.tags, "vocab": self.vocab, "settings": self.settings,
            "layer_config": self.layer_config, "match_types": self.match_types,
            "encoder_sha256": self.encoder.sha256}, ensure_ascii=False))

    @classmethod
    def load(cls, directory, encoder, entity_types=None):
        """The tagger saved in `directory`; `entity_types` those it was trained with (the
        run keeps them beside it)."""
        directory = Path(directory)
        config = json.loads((directory / cls.CONFIG).read_text(encoding="utf-8"))
        tagger = cls(encoder, entity_types, **config["settings"])
        if tagger.match_types != config["match_types"]:
            raise ValueError(f"{directory}: the tagger was trained with lookup/regex types "
                             f"{config['match_types']}, not {tagger.match_types}")
        tagger.tags, tagger.vocab = config["tags"], config["vocab"]
        tagger.layer_config = config["layer_config"]
        with np.load(directory / cls.WEIGHTS) as arrays:
            tagger.weights = {name: arrays[name] for name in arrays.files}
        tagger._forward = None
        return tagger
