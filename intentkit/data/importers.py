"""Intents from other formats: a CSV/TSV of `text,intent` rows and Rasa NLU YAML.

Each importer turns its file into the intents document of our JSON format; `data.load_intents`
then runs the same checks on it as on a JSON file (minimum patterns, duplicates, lengths), so
the messages are the same whatever the format. Rows the importer alone can see (a malformed CSV
line, a Rasa item without examples) are reported here, with the file and the line or item.
"""
import csv
import io
import logging
from collections import defaultdict

from ..errors import DataError
from .annotations import parse_pattern
from .readers import parse_yaml, read_text

log = logging.getLogger(__name__)

RASA_OTHER_ITEMS = ("synonym", "regex", "lookup")


def _document(patterns_by_tag, entities=None):
    document = {"intents": [{"tag": tag, "patterns": patterns, "responses": []}
                            for tag, patterns in patterns_by_tag.items()]}
    if entities:
        document["entities"] = entities
    return document


def read_table(path):
    """A CSV (or TSV) with a header naming the columns `text` and `intent`."""
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    # A reader over the text as a file opened with newline="": a quoted cell keeps the line
    # ends inside it (splitting the text into lines first glued "hi\nthere" into "hithere").
    rows = csv.reader(io.StringIO(read_text(path), newline=""), delimiter=delimiter)
    patterns = defaultdict(list)
    try:
        header = [name.strip().lower() for name in next(rows, [])]
        if "text" not in header or "intent" not in header:
            raise DataError(f"{path}: line 1 must be the header naming the columns text and "
                            f"intent (e.g. `text{delimiter}intent`), not {header!r}.")
        text_column, intent_column = header.index("text"), header.index("intent")
        for row in rows:
            if not row:
                continue  # blank line
            where = f"{path}: line {rows.line_num}"
            if len(row) != len(header):
                raise DataError(f"{where} has {len(row)} field(s) where the header has "
                                f"{len(header)}; quote texts that contain the delimiter.")
            text, intent = row[text_column].strip(), row[intent_column].strip()
            if not text or not intent:
                empty = "text" if not text else "intent"
                raise DataError(f"{where}: the {empty} is empty; fill it in or remove the line.")
            patterns[intent].append(text)
    except csv.Error as error:
        raise DataError(f"{path}: line {rows.line_num}: {error}.") from None
    return _document(patterns)


def read_rasa(path):
    """Rasa NLU YAML: `nlu:` items `- intent: NAME` with an `examples: |` block of `- ...`."""
    document = parse_yaml(read_text(path), path, strings=True)
    if not isinstance(document, dict) or not isinstance(document.get("nlu"), list):
        raise DataError(f"{path}: expected Rasa NLU data: a top-level `nlu:` list of items like "
                        "`- intent: greet` with `examples: |` lines `- hello`.")
    patterns = defaultdict(list)
    entity_items = []  # (where, kind, name, values) of lookup / regex / synonym items
    for index, item in enumerate(document["nlu"]):
        where = f"{path}: nlu[{index}]"
        if isinstance(item, dict) and any(kind in item for kind in RASA_OTHER_ITEMS):
            kind = next(kind for kind in RASA_OTHER_ITEMS if kind in item)
            entity_items.append((where, kind, item[kind], _example_lines(item, where, kind)))
            continue
        if not isinstance(item, dict) or not isinstance(item.get("intent"), str):
            raise DataError(f"{where} has no `intent:` name; each item must be "
                            "`- intent: NAME` with `examples: |`.")
        intent = item["intent"].strip()
        # Annotations stay in the pattern: data.validate_intents parses them.
        patterns[intent].extend(_example_lines(item, where, f"intent {intent!r}"))
    return _document(patterns, _entities_section(path, patterns, entity_items))


def _example_lines(item, where, what):
    examples = item.get("examples")
    if not isinstance(examples, str):
        raise DataError(f"{where} ({what}): `examples:` is missing or not a `|` block of "
                        "`- example` lines.")
    lines = []
    for number, line in enumerate(examples.splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        if not line.startswith("-"):
            raise DataError(f"{where} ({what}): examples line {number} ({line!r}) must start "
                            "with '- '.")
        lines.append(line[1:].strip())
    return lines


def _entities_section(path, patterns, entity_items):
    """Our "entities" section from Rasa's lookup, regex and synonym items. Rasa names a lookup
    or regex after its entity; a synonym names only its canonical value, so it goes to the
    types whose annotations give that value."""
    types_of_value = defaultdict(set)
    for tag, tag_patterns in patterns.items():
        for pattern in tag_patterns:
            for span in parse_pattern(pattern, f"{path}: intent {tag!r}").spans:
                types_of_value[span.value].add(span.entity)
    section = defaultdict(dict)
    for where, kind, name, values in entity_items:
        if not isinstance(name, str) or not name.strip():
            raise DataError(f"{where}: `{kind}:` needs a name.")
        name = name.strip()
        if kind == "lookup":
            section[name].setdefault("lookup", []).extend(values)
        elif kind == "regex":
            section[name].setdefault("regex", []).extend(values)
        else:
            types = types_of_value.get(name)
            if not types:
                log.warning("%s: synonym %r skipped: no annotation gives it as an entity's "
                            "value, so its entity type is unknown", where, name)
            for entity in sorted(types or ()):
                section[entity].setdefault("synonyms", {}).setdefault(name, []).extend(values)
    return dict(section)


IMPORTERS = {".csv": read_table, ".tsv": read_table, ".yml": read_rasa, ".yaml": read_rasa}


def read_foreign(path):
    """The intents document of a CSV/TSV/Rasa YAML file (not yet validated)."""
    return IMPORTERS[path.suffix.lower()](path)
