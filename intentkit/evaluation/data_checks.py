"""Check an intents file before training and say what to fix, beyond "it loads".

`check_data` first validates the file exactly as training does (`data.load_intents`: a file that
training rejects raises the same `DataError`), then looks for problems that load but hurt the
model: one text labelled with two intents, near-identical sentences in two intents, intents a
classifier confuses, patterns that look mislabelled, intents with few patterns, imbalance.

The embedding checks use the pretrained encoder (all-MiniLM-L6-v2, see `pretrained.py`) on the
patterns that training would keep, embedded once. Without the encoder they are skipped, with a
warning that says how to install it.
"""
import logging
import warnings
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from threadpoolctl import threadpool_limits

from ..data.annotations import parse_pattern
from ..data.intents import duplicate_key, read_document, validate_intents
from ..encoders.minilm import sentence_encoder
from ..errors import PretrainedUnavailable

log = logging.getLogger(__name__)

ERROR, WARNING = "error", "warning"
EXIT_CLEAN, EXIT_ERRORS = 0, 2

# Finding codes, stable for scripts, in the order a person should read them (most useful first),
# each with the advice printed above its findings.
ADVICE = {
    "invalid-intent": "training refuses the file until these are fixed",
    "duplicate-across-intents": "the same text is a pattern of several intents; training drops "
                                "it from all of them (--on-conflict drop, the default): delete "
                                "the copies from the wrong intents",
    "encoder-unavailable": "the checks that need the sentence encoder were skipped",
    "suspect-label": "these patterns are closer to another intent than to their own: move them "
                     "to that intent or reword them",
    "overlapping-intents": "a classifier confuses these intents: merge them, or add patterns "
                           "that tell them apart",
    "near-duplicate-across-intents": "nearly the same sentence is in two intents: keep it in "
                                     "one, or reword it so that the intents differ",
    "too-few-patterns": "add patterns in the words users actually type",
    "imbalanced-intents": "add patterns to the small intents (or trim the largest)",
    "entity-two-types": "one value is annotated as two entity types: keep one type, or give "
                        "the types values that tell them apart",
    "entity-unannotated-value": "an annotated value appears unannotated elsewhere, which teaches "
                                "the labeller that it is not an entity: annotate it there too",
    "entity-few-examples": "annotate more examples of these entity types (or give them a lookup "
                           "table or regex in the \"entities\" section)",
}
# The checks' thresholds (see check_data).
NEAR_DUPLICATE_THRESHOLD, MIN_PATTERNS, IMBALANCE_RATIO = 0.95, 10, 3.0
MIN_ENTITY_EXAMPLES = 5  # annotations a type without a lookup or regex should have
CONFUSION_THRESHOLD, SUSPECT_CONFIDENCE, FOLDS = 0.1, 0.5, 5
PULLING_PATTERNS = 3  # a suspect label's patterns of the other intent shown (its explanation)
# A block of cross-intent similarities holds at most this many float32 (64 MB).
BLOCK_ELEMENTS = 16_000_000
# The cross-validated logistic regression: C=1 on unit-length embeddings regularises so much that
# big intents absorb the small ones' patterns (size, not overlap); C=10 with balanced class
# weights was the most accurate on filesTech/final.json and flags overlap rather than size.
LOGISTIC_C = 10.0
LOGISTIC_MAX_ITER = 200


@dataclass(frozen=True)
class Finding:
    severity: str  # ERROR or WARNING
    code: str  # a key of ADVICE
    message: str  # one line naming the intents and patterns
    details: dict  # the same, machine-readable

    def to_json(self):
        return {"code": self.code, "message": self.message, "details": self.details}


@dataclass(frozen=True)
class CheckReport:
    source: str
    intents: int
    patterns: int  # as training keeps them: without repeated texts
    findings: list  # errors first, then in ADVICE's order, the most important first

    @property
    def errors(self):
        return [f for f in self.findings if f.severity == ERROR]

    @property
    def warnings(self):
        return [f for f in self.findings if f.severity == WARNING]

    @property
    def exit_code(self):
        return EXIT_ERRORS if self.errors else EXIT_CLEAN

    def to_json(self):
        """A JSON-serialisable dict, for `--json`."""
        return {"source": self.source, "intents": self.intents, "patterns": self.patterns,
                "exit_code": self.exit_code,
                "counts": dict(Counter(finding.code for finding in self.findings)),
                "errors": [f.to_json() for f in self.errors],
                "warnings": [f.to_json() for f in self.warnings]}

    def summary(self):
        return (f"{self.source}: {self.intents} intents, {self.patterns:,} patterns: "
                f"{_count(len(self.errors), 'error')}, {_count(len(self.warnings), 'warning')}")

    def format_text(self, per_code=10):
        """The summary line, then the findings by severity and code, at most `per_code` each."""
        lines = [self.summary()]
        for title, findings in (("Errors", self.errors), ("Warnings", self.warnings)):
            if findings:
                lines += ["", f"{title}:"]
            by_code = defaultdict(list)
            for finding in findings:
                by_code[finding.code].append(finding)
            for code, group in by_code.items():
                lines.append(f"  {code} ({len(group)}): {ADVICE[code]}.")
                lines += [f"    {finding.message}" for finding in group[:per_code]]
                if len(group) > per_code:
                    lines.append(f"    ... {len(group) - per_code} more")
        return "\n".join(lines)


def _count(number, noun):
    return f"{number:,} {noun}{'' if number == 1 else 's'}"


def check_data(path, near_duplicate_threshold=NEAR_DUPLICATE_THRESHOLD,
               min_patterns=MIN_PATTERNS, imbalance_ratio=IMBALANCE_RATIO,
               confusion_threshold=CONFUSION_THRESHOLD, suspect_confidence=SUSPECT_CONFIDENCE,
               folds=FOLDS, seed=0, embedding_checks=True):
    """Check an intents file (JSON, CSV/TSV or Rasa YAML) and return a `CheckReport`.

    `embedding_checks=False` runs the cheap checks only (no encoder): what training runs first.

    Raises `DataError` where training would (an unreadable or invalid file). Thresholds: cosine
    of two patterns of different intents that counts as a near-duplicate; patterns an intent
    should have; largest/smallest intent ratio; share of an intent's patterns predicted as
    another (cross-validated, `folds` folds) that makes the pair overlap; probability of another
    intent that makes a pattern a suspect label.
    """
    return _checked(path, near_duplicate_threshold, min_patterns, imbalance_ratio,
                    confusion_threshold, suspect_confidence, folds, seed, embedding_checks)[1]


def _checked(path, near_duplicate_threshold, min_patterns, imbalance_ratio, confusion_threshold,
             suspect_confidence, folds, seed, embedding_checks):
    """(the file's IntentData, its CheckReport): the file is read and validated once.

    Every finding is reported: an intent training would refuse is an "invalid-intent" error and
    is left out of the other checks, which still run on the rest."""
    path = Path(path)
    document = read_document(path)
    # The same validation, and the same patterns, as training.
    problems = []
    data = validate_intents(document, path, "drop", problems)
    counts = Counter(data.labels)
    findings = [*(Finding(ERROR, "invalid-intent", str(problem), {"error": str(problem)})
                  for problem in problems),
                *_duplicates_across_intents(_patterns_as_written(document)),
                *_small_intents(counts, min_patterns),
                *(_imbalance(counts, imbalance_ratio) if counts else []), *_entity_findings(data)]
    if embedding_checks and len(counts) >= 2:
        findings += _embedding_findings(data, near_duplicate_threshold, confusion_threshold,
                                        suspect_confidence, folds, seed)
    order = list(ADVICE)
    findings.sort(key=lambda finding: (finding.severity != ERROR, order.index(finding.code)))
    return data, CheckReport(str(path), len(counts), len(data.texts), findings)


def check_before_training(path, on_conflict="drop"):
    """The file's IntentData, after the cheap checks: warnings are logged, errors raise
    DataError naming the file, the texts and the intents. A text of several intents is
    handled as `on_conflict` says (data.ON_CONFLICT): dropped with a warning by default."""
    path = Path(path)
    # Training's own validation first: it raises at the first invalid intent, and applies
    # --on-conflict (its warning names the texts).
    data = validate_intents(read_document(path), path, on_conflict)
    counts = Counter(data.labels)
    for finding in [*_small_intents(counts, MIN_PATTERNS), *_imbalance(counts, IMBALANCE_RATIO)]:
        log.warning("%s: %s: %s", path, finding.code, finding.message)
    return data


def _embedding_findings(data, near_duplicate_threshold, confusion_threshold, suspect_confidence,
                        folds, seed):
    """Near-duplicates, overlapping intents and suspect labels, or why they were not checked."""
    try:
        encoder = sentence_encoder()
    except PretrainedUnavailable as error:
        return [Finding(WARNING, "encoder-unavailable", "near-duplicates, overlapping intents "
                        f"and suspect labels were not checked: {error}", {"reason": str(error)})]
    # One BLAS thread: the encoder runs its own worker threads, and on a 2-core machine shared
    # with other jobs BLAS threads on top of them fitted a fold 4x slower.
    with threadpool_limits(1):
        embedded = _Embedded.of(data, encoder)
        probabilities = embedded.out_of_fold_probabilities(folds, seed)
    return [*_near_duplicates(embedded, near_duplicate_threshold),
            *_overlapping_intents(embedded, probabilities, confusion_threshold),
            *_suspect_labels(embedded, probabilities, suspect_confidence)]


def _patterns_as_written(document):
    """Each intent's patterns before validation drops the repeated ones (already validated)."""
    return {intent["tag"].strip(): [parse_pattern(pattern).text for pattern in intent["patterns"]]
            for intent in document["intents"]}


def _duplicates_across_intents(patterns_by_tag):
    written_by_key = defaultdict(dict)  # duplicate_key -> {tag: the pattern as written there}
    for tag, patterns in patterns_by_tag.items():
        for pattern in patterns:
            written_by_key[duplicate_key(pattern)].setdefault(tag, pattern)
    for written in written_by_key.values():
        if len(written) > 1:
            tags = list(written)
            text = written[tags[0]]
            yield Finding(ERROR, "duplicate-across-intents",
                          f"{text!r} is a pattern of {_names(tags)}",
                          {"text": text, "intents": written})


def _entity_findings(data):
    """Entity problems that load but teach the labeller wrong: a value annotated as two types,
    annotated values left unannotated elsewhere, types with few examples."""
    if not any(data.spans or ()):
        return
    from ..models.entity_tagger import tokenize
    types_of_value, examples = defaultdict(set), Counter()
    for text, spans in zip(data.texts, data.spans):
        for span in spans:
            types_of_value[text[span.start:span.end].casefold()].add(span.entity)
            examples[span.entity] += 1
    for value, types in sorted(types_of_value.items()):
        if len(types) > 1:
            yield Finding(WARNING, "entity-two-types",
                          f"{value!r} is annotated as {_names(sorted(types))}",
                          {"value": value, "types": sorted(types)})
    longest = max(len(tokenize(value)) for value in types_of_value)
    missed = defaultdict(list)  # value -> texts where it is written without an annotation
    for text, spans in zip(data.texts, data.spans):
        tokens = tokenize(text)
        for first in range(len(tokens)):
            for last in range(first, min(first + longest, len(tokens))):
                start, end = tokens[first][0], tokens[last][1]
                value = text[start:end].casefold()
                if value in types_of_value and not any(
                        start < span.end and end > span.start for span in spans):
                    missed[value].append(text)
    for value, texts in sorted(missed.items(), key=lambda item: -len(item[1])):
        yield Finding(WARNING, "entity-unannotated-value",
                      f"{value!r} ({_names(sorted(types_of_value[value]))}) is unannotated in "
                      f"{_count(len(texts), 'pattern')}, e.g. {texts[0]!r}",
                      {"value": value, "types": sorted(types_of_value[value]),
                       "patterns": texts[:10]})
    for entity, count in sorted(examples.items(), key=lambda item: item[1]):
        entity_type = data.entity_types.types.get(entity)
        if count < MIN_ENTITY_EXAMPLES and not (entity_type and (entity_type.lookup
                                                                 or entity_type.regexes)):
            yield Finding(WARNING, "entity-few-examples",
                          f"{entity!r} is annotated {_count(count, 'time')}; at least "
                          f"{MIN_ENTITY_EXAMPLES} are recommended",
                          {"entity": entity, "examples": count,
                           "recommended": MIN_ENTITY_EXAMPLES})


def _small_intents(counts, min_patterns):
    for tag, count in sorted(counts.items(), key=lambda item: item[1]):
        if count < min_patterns:
            yield Finding(WARNING, "too-few-patterns",
                          f"{tag!r} has {count} distinct patterns; at least {min_patterns} are "
                          "recommended",
                          {"intent": tag, "patterns": count, "recommended": min_patterns})


def _imbalance(counts, ratio_limit):
    largest = max(counts, key=counts.get)
    smallest = min(counts, key=counts.get)
    ratio = counts[largest] / counts[smallest]
    if ratio <= ratio_limit:
        return
    small = sorted((tag for tag in counts if counts[tag] * ratio_limit < counts[largest]),
                   key=counts.get)
    yield Finding(WARNING, "imbalanced-intents",
                  f"{largest!r} has {counts[largest]} patterns, {ratio:.1f}x the "
                  f"{counts[smallest]} of {smallest!r}; {len(small)} intent(s) have less than "
                  f"1/{ratio_limit:g} of the largest: {_names(small, limit=5)}",
                  {"largest": {"intent": largest, "patterns": counts[largest]},
                   "smallest": {"intent": smallest, "patterns": counts[smallest]},
                   "ratio": round(ratio, 2), "limit": ratio_limit,
                   "below_limit": {tag: counts[tag] for tag in small}})


def _names(tags, limit=None):
    """'a', 'b' and 'c'; past `limit` names, 'a', 'b' and 3 more."""
    shown = [repr(tag) for tag in tags[:limit]]
    if len(tags) > len(shown):
        shown.append(f"{len(tags) - len(shown)} more")
    return ", ".join(shown[:-1]) + " and " + shown[-1] if len(shown) > 1 else shown[0]


@dataclass(frozen=True)
class _Embedded:
    """The patterns that training keeps, embedded once, with their rows sorted by intent."""
    tags: list  # intent names in file order; a label id indexes this list
    texts: list
    label_ids: np.ndarray
    starts: np.ndarray  # the first row of each intent
    vectors: np.ndarray  # unit-length float32, one row per text

    @classmethod
    def of(cls, data, encoder):
        tags = list(dict.fromkeys(data.labels))
        index = {tag: i for i, tag in enumerate(tags)}
        label_ids = np.array([index[label] for label in data.labels])
        order = np.argsort(label_ids, kind="stable")
        texts = [data.texts[row] for row in order]
        log.info("%s: embedding %d patterns", data.source, len(texts))
        vectors = encoder.embed(texts, progress=lambda done, total: log.info(
            "embedded %d/%d patterns", done, total))
        label_ids = label_ids[order]
        return cls(tags, texts, label_ids, np.searchsorted(label_ids, np.arange(len(tags))),
                   vectors)

    @property
    def counts(self):
        return np.bincount(self.label_ids, minlength=len(self.tags))

    def sums(self):
        """Each intent's sum of embeddings, shape (intents, 384)."""
        return np.add.reduceat(self.vectors, self.starts, axis=0)

    def out_of_fold_probabilities(self, folds, seed):
        """Each pattern's intent probabilities from a logistic regression fitted without it."""
        probabilities = np.zeros((len(self.texts), len(self.tags)), dtype=np.float32)
        splitter = StratifiedKFold(min(folds, self.counts.min()), shuffle=True, random_state=seed)
        for fold, (train, held_out) in enumerate(splitter.split(self.vectors, self.label_ids)):
            log.info("cross-validation fold %d/%d", fold + 1, splitter.n_splits)
            model = LogisticRegression(C=LOGISTIC_C, max_iter=LOGISTIC_MAX_ITER,
                                       class_weight="balanced")
            with warnings.catch_warnings():
                # A few more iterations would not move a probability enough to change a finding.
                warnings.simplefilter("ignore", ConvergenceWarning)
                model.fit(self.vectors[train], self.label_ids[train])
            probabilities[np.ix_(held_out, model.classes_)] = model.predict_proba(
                self.vectors[held_out])
        return probabilities

    def pattern(self, row):
        return {"intent": self.tags[self.label_ids[row]], "text": self.texts[row]}


def _cross_intent_pairs(vectors, starts, threshold):
    """Row pairs of different intents whose cosine is >= threshold, each pair once: (first
    rows, second rows, cosines). Rows are sorted by intent, so a block of one intent's rows is
    multiplied only by the rows of the intents after it: no same-intent pair is computed, and a
    block holds at most BLOCK_ELEMENTS cosines."""
    ends = [*starts[1:], len(vectors)]
    firsts, seconds, cosines = [np.zeros(0, int)], [np.zeros(0, int)], [np.zeros(0, np.float32)]
    for start, end in zip(starts, ends):
        later = vectors[end:]
        step = max(1, BLOCK_ELEMENTS // max(1, len(later)))
        for block_start in range(start, end, step):
            block = vectors[block_start:min(block_start + step, end)] @ later.T
            rows, columns = np.nonzero(block >= threshold)
            firsts.append(rows + block_start)
            seconds.append(columns + end)
            cosines.append(block[rows, columns])
    return np.concatenate(firsts), np.concatenate(seconds), np.concatenate(cosines)


def _near_duplicates(embedded, threshold):
    firsts, seconds, cosines = _cross_intent_pairs(embedded.vectors, embedded.starts, threshold)
    for pair in np.argsort(-cosines, kind="stable"):
        first, second = embedded.pattern(firsts[pair]), embedded.pattern(seconds[pair])
        yield Finding(WARNING, "near-duplicate-across-intents",
                      f"{first['text']!r} ({first['intent']!r}) ~ {second['text']!r} "
                      f"({second['intent']!r}): cosine {cosines[pair]:.3f}",
                      {"cosine": round(float(cosines[pair]), 4), "patterns": [first, second]})


def _overlapping_intents(embedded, probabilities, threshold):
    """Pairs where either intent has >= threshold of its patterns predicted as the other."""
    intents = len(embedded.tags)
    confusion = np.zeros((intents, intents))
    np.add.at(confusion, (embedded.label_ids, probabilities.argmax(axis=1)), 1)
    confusion /= embedded.counts[:, None]
    np.fill_diagonal(confusion, 0)
    centroids = _unit(embedded.sums())
    firsts, seconds = np.nonzero(np.triu(np.maximum(confusion, confusion.T) >= threshold, k=1))
    combined = confusion[firsts, seconds] + confusion[seconds, firsts]
    for pair in np.argsort(-combined, kind="stable"):
        a, b = firsts[pair], seconds[pair]
        if confusion[b, a] > confusion[a, b]:
            a, b = b, a
        tag_a, tag_b = embedded.tags[a], embedded.tags[b]
        cosine = float(centroids[a] @ centroids[b])
        yield Finding(WARNING, "overlapping-intents",
                      f"{tag_a!r} / {tag_b!r}: {confusion[a, b]:.0%} of {tag_a!r} "
                      f"predicted as {tag_b!r}, {confusion[b, a]:.0%} the other way; "
                      f"centroid cosine {cosine:.2f}",
                      {"intents": [tag_a, tag_b], "confusion": [round(float(confusion[a, b]), 4),
                                                                round(float(confusion[b, a]), 4)],
                       "centroid_cosine": round(cosine, 4)})


def _unit(rows):
    return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)


def _suspect_labels(embedded, probabilities, confidence):
    """Patterns nearer another intent's centroid than their own one computed without them, that
    a cross-validated classifier also gives to that intent with probability >= confidence: two
    independent signs that the label is wrong."""
    sums = embedded.sums()
    rows = np.arange(len(embedded.texts))
    own_sums = sums[embedded.label_ids]
    own_dot = np.einsum("ij,ij->i", embedded.vectors, own_sums)
    own_norm_squared = np.einsum("ij,ij->i", own_sums, own_sums) - 2 * own_dot + 1
    # The pattern itself pulls its own centroid towards it: leave it out (vectors are unit).
    own_cosine = (own_dot - 1) / np.sqrt(np.maximum(own_norm_squared, 1e-12))
    other_cosines = embedded.vectors @ _unit(sums).T
    other_cosines[rows, embedded.label_ids] = -np.inf
    nearest_other = other_cosines.argmax(axis=1)
    nearest_cosine = other_cosines[rows, nearest_other]
    other_probability = probabilities[rows, nearest_other]
    suspects = np.flatnonzero((nearest_cosine > own_cosine) & (other_probability >= confidence)
                              & (probabilities.argmax(axis=1) == nearest_other))
    for row in suspects[np.argsort(-other_probability[suspects], kind="stable")]:
        pattern = embedded.pattern(row)
        other = embedded.tags[nearest_other[row]]
        pulling = _pulling_patterns(embedded, row, nearest_other[row])
        yield Finding(WARNING, "suspect-label",
                      f"{pattern['text']!r} in {pattern['intent']!r} looks like {other!r} "
                      f"(p={other_probability[row]:.2f}; centroid cosine "
                      f"{nearest_cosine[row]:.2f} vs {own_cosine[row]:.2f} to its own); pulled "
                      "by " + ", ".join(f"{p['text']!r} ({p['similarity']:.2f})"
                                        for p in pulling),
                      {**pattern, "suggested_intent": other,
                       "probability": round(float(other_probability[row]), 4),
                       "centroid_cosine": {"suggested": round(float(nearest_cosine[row]), 4),
                                           "own": round(float(own_cosine[row]), 4)},
                       "pulled_by": pulling})


def _pulling_patterns(embedded, row, other, count=PULLING_PATTERNS):
    """The `count` patterns of intent `other` nearest to pattern `row`: the ones that pull it
    there (the explanation of a suspect label, as intentkit.serving.explain's nearest patterns)."""
    start = embedded.starts[other]
    end = embedded.starts[other + 1] if other + 1 < len(embedded.starts) else len(
        embedded.texts)
    cosines = embedded.vectors[start:end] @ embedded.vectors[row]
    nearest = np.argsort(-cosines, kind="stable")[:count]
    return [{"text": embedded.texts[start + i], "similarity": round(float(cosines[i]), 4)}
            for i in nearest]
