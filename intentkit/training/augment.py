"""Augmentation and balancing of the TRAINING split only (the split happens before this).

Three ways to write a new variant of a pattern, as in the seed, but all of them actually run:
- synonym replacement: one replaceable word becomes a single-word WordNet synonym taken from the
  word's most frequent senses (all of one part of speech, so "find" stays a verb);
- random insertion: a synonym of a word in the sentence (or a neutral filler) at a random position;
- paraphrase: rule-based rewrites ("can you" -> "could you", "I want to" -> "I'd like to", ...).
Words that carry the intent are never replaced: wh-words, negations, modals, function words and,
per intent, the words that are distinctive of that intent in the training split.
"""
import functools
import logging
import random
import re
from collections import Counter, defaultdict

from sklearn.utils import resample

from ..data.intents import duplicate_key
from ..text import wordnet

log = logging.getLogger(__name__)

METHODS = ("synonym", "insertion", "paraphrase")

# Never replaced: they decide what is being asked, and WordNet has odd senses for them
# ("a" -> "angstrom", "it" -> "information technology").
PROTECTED_WORDS = set("""
what whats how why when where which who whom whose whether
not no never nor none nobody nothing cannot cant dont doesnt didnt isnt arent wasnt wont
can could would should will shall may might must do does did am is are was were be been have has
had i me my mine you your yours we our us they them their he she his her it its this that these
those a an the and or but if then than so to of in on at by for from with about into over under
up down out off again please hi hello hey thanks thank bye yes yeah ok okay
""".split())
FILLERS = ("please", "actually", "just", "really", "also", "maybe")
# The most frequent senses of a word; rarer ones are usually wrong in a chatbot message.
SENSES_CONSIDERED = 3
PARAPHRASES = [(re.compile(pattern, re.IGNORECASE), replacement) for pattern, replacement in (
    (r"^can you\b", "could you"), (r"^could you\b", "can you"),
    (r"\bi want to\b", "i'd like to"), (r"\bi'd like to\b", "i want to"),
    (r"\bi would like to\b", "i want to"), (r"\bi need to\b", "i have to"),
    (r"\bhow do i\b", "how can i"), (r"\bhow can i\b", "how do i"),
    (r"\bwhat is\b", "what's"), (r"\bwhat's\b", "what is"),
    (r"\bi am\b", "i'm"), (r"\bi'm\b", "i am"), (r"\bdo not\b", "don't"), (r"\bdon't\b", "do not"),
    (r"\bwhere can i\b", "where do i"), (r"\bis there a way to\b", "can i"),
    (r"^tell me\b", "can you tell me"), (r"^can you tell me\b", "tell me"),
    (r"^show me\b", "could you show me"), (r"^help me\b", "can you help me"),
    (r"^i need help with\b", "help me with"), (r"^give me\b", "i'd like"),
)]
_WORD = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)?")


def distinctive_words(texts, labels, min_share=0.5, min_count=2):
    """Per intent, the words at least `min_share` of whose occurrences fall in that intent."""
    per_label = defaultdict(Counter)
    for text, label in zip(texts, labels):
        per_label[label].update({word.lower() for word in _WORD.findall(text)})
    totals = Counter()
    for counts in per_label.values():
        totals.update(counts)
    return {label: {word for word, count in counts.items()
                    if count >= min_count and count / totals[word] >= min_share}
            for label, counts in per_label.items()}


def synonyms(word):
    """Single-word WordNet synonyms from the word's most frequent senses of one part of speech."""
    reader = wordnet.wordnet()
    return [] if reader is None else list(_synonyms(reader, word))


# A training split asks for the same words thousands of times (each pattern's variants try its
# words in turn), and a WordNet lookup is ~1 ms: remembered per reader, they cost it once.
@functools.lru_cache(maxsize=2**16)
def _synonyms(reader, word):
    senses = reader.synsets(word)
    if not senses:
        return ()
    # WordNet lists nouns first; the sense-tagged corpus counts say which use is most common.
    usage = Counter()
    for sense in senses:
        usage[sense.pos()] += sum(lemma.count() for lemma in sense.lemmas()
                                  if lemma.name().lower() == word)
    part_of_speech = max(usage, key=lambda pos: (usage[pos], pos == senses[0].pos()))
    found = []
    for sense in [s for s in senses if s.pos() == part_of_speech][:SENSES_CONSIDERED]:
        for lemma in sense.lemma_names():
            candidate = lemma.lower()
            if candidate.isalpha() and candidate != word and candidate not in found:
                found.append(candidate)
    return tuple(found)


class Augmenter:
    """Writes up to `factor` new, distinct variants of every training pattern.

    Parameters
    ----------
    factor : int
        New variants wanted per pattern (0 turns augmentation off).
    methods : tuple of str
        Any of "synonym", "insertion", "paraphrase", tried in turn.
    seed : int
        Same seed and input, same output.
    """

    def __init__(self, factor=3, methods=METHODS, seed=42):
        unknown = set(methods) - set(METHODS)
        if unknown:
            raise ValueError(f"unknown augmentation method(s) {sorted(unknown)}; use {METHODS}")
        if factor < 0:
            raise ValueError("factor must be >= 0")
        self.factor = factor
        self.methods = tuple(methods)
        self.seed = seed

    def _replaceable(self, words, protected):
        return [i for i, word in enumerate(words)
                if _WORD.fullmatch(word) and len(word) > 3
                and word.lower() not in PROTECTED_WORDS and word.lower() not in protected]

    def synonym(self, text, protected, rng):
        words = text.split()
        positions = self._replaceable(words, protected)
        rng.shuffle(positions)
        for position in positions:
            options = [s for s in synonyms(words[position].lower()) if s not in protected]
            if options:
                words[position] = rng.choice(options)
                return " ".join(words)
        return None

    def insertion(self, text, protected, rng):
        words = text.split()
        positions = self._replaceable(words, protected)
        rng.shuffle(positions)
        inserted = next((rng.choice(options) for options in
                         (synonyms(words[p].lower()) for p in positions[:3]) if options),
                        rng.choice(FILLERS))
        words.insert(rng.randint(0, len(words)), inserted)
        return " ".join(words)

    def paraphrase(self, text, protected, rng):
        rules = [(pattern, replacement) for pattern, replacement in PARAPHRASES
                 if pattern.search(text)]
        if not rules:
            return None
        pattern, replacement = rng.choice(rules)
        return pattern.sub(replacement, text, count=1)

    def augment(self, texts, labels, exclude=()):
        """Originals first, then the new variants. `exclude`: texts that must never be produced
        (validation and test rows), compared like duplicate patterns are."""
        if self.factor == 0:
            return list(texts), list(labels)
        rng = random.Random(self.seed)
        protected = distinctive_words(texts, labels)
        seen = {duplicate_key(text) for text in texts} | {duplicate_key(t) for t in exclude}
        new_texts, new_labels = [], []
        report_every = max(1, len(texts) // 10)
        for row, (text, label) in enumerate(zip(texts, labels)):
            made = 0
            for attempt in range(3 * self.factor):
                method = getattr(self, self.methods[(row + attempt) % len(self.methods)])
                variant = method(text, protected.get(label, set()), rng)
                key = duplicate_key(variant) if variant else ""
                if key and key not in seen:
                    seen.add(key)
                    new_texts.append(variant)
                    new_labels.append(label)
                    made += 1
                    if made == self.factor:
                        break
            if len(texts) >= 2000 and (row + 1) % report_every == 0:
                log.info("augmenting: %d/%d patterns, %d variants", row + 1, len(texts),
                         len(new_texts))
        log.info("augmentation: %d training patterns + %d new variants", len(texts), len(new_texts))
        return list(texts) + new_texts, list(labels) + new_labels


def upsample(texts, labels, seed=42):
    """Resample every intent with replacement up to the largest intent's count (the seed's way)."""
    by_label = defaultdict(list)
    for text, label in zip(texts, labels):
        by_label[label].append(text)
    target = max(len(rows) for rows in by_label.values())
    out_texts, out_labels = [], []
    for label in sorted(by_label):
        rows = by_label[label]
        extra = resample(rows, replace=True, n_samples=target - len(rows),
                         random_state=seed) if len(rows) < target else []
        out_texts += rows + list(extra)
        out_labels += [label] * target
    return out_texts, out_labels
