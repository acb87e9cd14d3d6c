"""Entity value substitution: more training rows for the entity labeller, spans kept exact.

A variant of an annotated training pattern has each of its entity values replaced by another
value of the same type: "salary for a [data engineer](job_title) in [Berlin](location)" gives
"salary for a [nurse](job_title) in [Lagos](location)". The labeller sees each type's values in
more contexts and learns the context rather than the value (Rasa's and snips-nlu's data
augmentation do the same). The values of a type are the ones the training split's annotations
write, the type's lookup table and its synonyms' canonical values (never a validation or test
row's). Each new span is computed from the pieces of the new text, so it covers exactly the new
value whatever the lengths, punctuation or script.

Only the training split's rows are varied (the split is made first); a variant that reads like
a validation or test row, or like a training row or an earlier variant (`duplicate_key`), is
not made. Same rows, types, factor, cap and seed: same variants.
"""
import logging
import random

from ..data.annotations import Span
from ..data.intents import duplicate_key

log = logging.getLogger(__name__)


def type_values(texts, spans, entity_types):
    """Per entity type, the sorted distinct values a variant may take: the written forms of the
    rows' annotations, the type's lookup values and its synonyms' canonical values."""
    values = {}
    for text, row in zip(texts, spans):
        for span in row:
            values.setdefault(span.entity, set()).add(text[span.start:span.end])
    for name, entity_type in entity_types.types.items():
        values.setdefault(name, set()).update(entity_type.lookup)
        values[name].update(entity_type.synonyms.values())
    return {name: sorted(value for value in found if value.strip())
            for name, found in values.items()}


def substituted(text, spans, replacements):
    """The text with each span's written form replaced by `replacements[i]` (spans in any order,
    not overlapping), and its spans moved and resized to match. `replacements[i]` is a
    (written, canonical value) pair, or None to keep span i as it is."""
    order = sorted(range(len(spans)), key=lambda i: spans[i].start)
    pieces, new_spans, position, length = [], [], 0, 0
    for i in order:
        span = spans[i]
        before = text[position:span.start]
        written, value = (replacements[i] if replacements[i] is not None
                          else (text[span.start:span.end], span.value))
        start = length + len(before)
        pieces += [before, written]
        length = start + len(written)
        new_spans.append(Span(start, length, span.entity, value))
        position = span.end
    pieces.append(text[position:])
    return "".join(pieces), tuple(new_spans)


class EntitySubstituter:
    """Writes up to `factor` variants of every annotated training pattern, at most `max_rows`
    in all (the patterns are visited in an order drawn from `seed`, so a cap leaves out
    patterns at random, not the last intents of the file).

    `canonical(entity, written)` gives the canonical value of a written form (the learned and
    declared synonyms), `values` each type's candidate values (`type_values`)."""

    def __init__(self, values, canonical, factor=2, max_rows=5000, seed=42):
        if factor < 0 or max_rows < 0:
            raise ValueError("factor and max_rows must be >= 0")
        self.values = values
        # Per type, where each written form (casefolded) stands in its values: a draw skips
        # them without copying the values (a lookup may hold 200,000).
        self._positions = {}
        for name, found in values.items():
            positions = self._positions[name] = {}
            for position, value in enumerate(found):
                positions.setdefault(value.casefold(), []).append(position)
        self.canonical = canonical
        self.factor = factor
        self.max_rows = max_rows
        self.seed = seed

    def variant(self, text, spans, rng):
        """A variant of the text with every span whose type has another value substituted, or
        None when no span has one."""
        replacements = []
        for span in spans:
            values = self.values.get(span.entity, ())
            skipped = self._positions.get(span.entity, {}).get(
                text[span.start:span.end].casefold(), ())
            if len(values) > len(skipped):
                # A uniform draw among the values other than the written one.
                position = rng.randrange(len(values) - len(skipped))
                for other in skipped:
                    position += position >= other
                choice = values[position]
                replacements.append((choice, self.canonical(span.entity, choice)))
            else:
                replacements.append(None)
        if all(r is None for r in replacements):
            return None
        return substituted(text, spans, replacements)

    def substitute(self, texts, spans, exclude=()):
        """(new texts, their spans): the variants only, the rows themselves not repeated.
        `exclude`: texts that must never be produced (validation and test rows), compared
        like duplicate patterns are."""
        if self.factor == 0 or self.max_rows == 0:
            return [], []
        rng = random.Random(self.seed)
        seen = {duplicate_key(text) for text in texts} | {duplicate_key(t) for t in exclude}
        annotated = [row for row, row_spans in enumerate(spans) if row_spans]
        rng.shuffle(annotated)
        new_texts, new_spans = [], []
        for row in annotated:
            made = 0
            for _ in range(3 * self.factor):
                variant = self.variant(texts[row], spans[row], rng)
                if variant is None:
                    break
                key = duplicate_key(variant[0])
                if key not in seen:
                    seen.add(key)
                    new_texts.append(variant[0])
                    new_spans.append(variant[1])
                    made += 1
                    if made == self.factor or len(new_texts) == self.max_rows:
                        break
            if len(new_texts) == self.max_rows:
                break
        log.info("entity substitution: %d annotated training patterns + %d variants",
                 len(annotated), len(new_texts))
        return new_texts, new_spans
