"""The entities of a message: a trained labeller plus the deterministic lookup and regex
matches of the `"entities"` section, values mapped to their canonical form by the synonyms.

Entities are dicts with Rasa's keys: entity, value, start, end (character offsets into the
message as sent, end exclusive), confidence, extractor. Only the first MAX_ENTITY_CHARS
characters of a message are read, so that a hostile message costs what a long one does."""
from ..data.annotations import EntityTypes, Rules, without_overlaps
from ..errors import ArtifactError

# A user message worth extracting from is far shorter (the service accepts 10,000 characters);
# a prefix keeps every offset valid in the message as sent.
MAX_ENTITY_CHARS = 2000
CRF_INSTALL_HINT = "install the entities extra: pip install 'intentkit[entities]'"


class EntityExtractor:
    """A trained labeller (or none) plus the lookup/regex matches and synonyms of the types."""

    def __init__(self, tagger=None, entity_types=None, synonyms=None):
        self.tagger = tagger
        self.entity_types = entity_types or EntityTypes()
        self.synonyms = synonyms or {}  # (entity, written casefolded) -> canonical

    def extract(self, texts):
        texts = [text[:MAX_ENTITY_CHARS] for text in texts]
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


def load_entities(run):
    """(EntityExtractor or None, Rules) of an opened run (artifacts.Run), its files verified;
    (None, no rules) for a run trained without entities."""
    stored = run.read_entities()
    if stored is None:
        return None, Rules()
    document, model = stored
    where = run.directory / "entities.json"
    try:
        entity_types = EntityTypes.from_json(document["entity_types"])
        synonyms = {(entity, written): canonical
                    for entity, written, canonical in document["synonyms"]}
        rules = Rules([dict(rule) for rule in document["rules"]])
        labeller = document["labeller"]
    except (KeyError, TypeError, ValueError) as error:
        raise ArtifactError(f"{where}: not written by this version of intentkit "
                            f"({error!r}). Retrain with `intentkit train`.") from None
    tagger = None
    if labeller is not None:
        try:
            import pycrfsuite  # noqa: F401 (the labeller's runtime, an extra)

            from ..models.entity_tagger import CrfTagger
        except ImportError:
            raise ArtifactError(f"{where}: the run extracts entities with a CRF; "
                                f"{CRF_INSTALL_HINT}") from None
        try:
            tagger = CrfTagger.from_bytes(model, entity_types, labeller["params"])
        except (ValueError, TypeError, KeyError) as error:
            raise ArtifactError(f"{where}: its labeller cannot be loaded ({error}). Retrain "
                                "with `intentkit train`.") from None
        if tagger.match_types != labeller["match_types"]:
            raise ArtifactError(f"{where}: the labeller was trained with the lookup/regex "
                                f"types {labeller['match_types']}, the file gives "
                                f"{tagger.match_types}. Retrain with `intentkit train`.")
    return EntityExtractor(tagger, entity_types, synonyms), rules
