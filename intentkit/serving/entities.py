"""The entities of a message: a trained labeller plus the deterministic lookup and regex
matches of the `"entities"` section, values mapped to their canonical form by the synonyms."""
from ..data.annotations import EntityTypes, without_overlaps


class EntityExtractor:
    """A trained labeller (or none) plus the lookup/regex matches and synonyms of the types."""

    def __init__(self, tagger=None, entity_types=None, synonyms=None):
        self.tagger = tagger
        self.entity_types = entity_types or EntityTypes()
        self.synonyms = synonyms or {}  # (entity, written casefolded) -> canonical

    def extract(self, texts):
        found = self.tagger.predict(texts) if self.tagger else [[] for _ in texts]
        out = []
        for text, entities in zip(texts, found):
            for entity in entities:
                entity["value"] = self.synonyms.get(
                    (entity["entity"], entity["value"].casefold()),
                    self.entity_types.canonical(entity["entity"], entity["value"]))
            # A deterministic match fills in where the labeller found nothing.
            free = [m for m in self.entity_types.find(text)
                    if all(m["end"] <= e["start"] or m["start"] >= e["end"] for e in entities)]
            out.append(without_overlaps(entities + free))
        return out
