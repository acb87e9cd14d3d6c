"""Entity annotations in patterns, the `"entities"` section and the `"rules"` section.

A pattern marks an entity inline, Rasa style: `"find [python](skill) jobs in [new york](location)"`;
`[NYC]{"entity": "location", "value": "New York"}` (or Rasa's short `[NYC](location:New York)`)
also gives the canonical value. `parse_pattern` turns a pattern into its plain text and the
character spans of its entities (end exclusive); every malformed annotation is a `DataError`
naming the file, the intent, the pattern and the fix. A literal bracket is written `\\[` / `\\]`.

The optional top-level sections of an intents file:

    "entities": {"location": {"lookup": ["Berlin", ...] | "cities.txt",
                              "regex": ["..."], "synonyms": {"New York": ["NYC", "nyc"]}}}
    "rules": [{"regex": "^(hi|hello)\\\\b", "intent": "greeting"},
              {"phrase": "talk to a human", "intent": "handoff"}]

Regexes (of entity types and rules) run on RE2, in time linear in the message: a hostile message
cannot make them backtrack. Lookup values are matched as whole words, case-insensitively.
"""
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DataError, shorten

# Rasa's entity names: a letter, then letters, digits, `_`, `-` or `.`.
ENTITY_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.\-]{0,63}")
MAX_LOOKUP_VALUES = 200_000
MAX_REGEX_CHARS = 1_000
ANNOTATION_KEYS = {"entity", "value", "role", "group"}
TYPE_KEYS = {"lookup", "regex", "synonyms"}
RE2_INSTALL_HINT = "install the entities extra: pip install 'intentkit[entities]' (google-re2)"


@dataclass(frozen=True)
class Span:
    """One entity in a text: text[start:end] is what was written; `value` its canonical form."""
    start: int
    end: int
    entity: str
    value: str


@dataclass(frozen=True)
class Annotated:
    text: str
    spans: tuple = ()


def _malformed(where, pattern, problem, fix):
    return DataError(f"{where}: pattern {shorten(pattern)} {problem}; {fix}")


def check_entity_name(name, where, pattern=None):
    if not isinstance(name, str) or not ENTITY_NAME.fullmatch(name):
        context = f"pattern {shorten(pattern)} " if pattern is not None else ""
        raise DataError(f"{where}: {context}names the entity type {shorten(name)}; a type name "
                        "starts with a letter, then letters, digits, '_', '-' or '.' (at most "
                        "64), e.g. job_title.")
    return name


def _closing(pattern, start, close, where):
    """Index of the unescaped `close` after `start`; a `[` before it is a nested annotation."""
    index = start
    while index < len(pattern):
        char = pattern[index]
        if char == "\\":
            index += 2
            continue
        if char == close:
            return index
        if char == "[" and close == "]":
            raise _malformed(where, pattern, f"has a '[' inside the annotation opened at "
                             f"character {start - 1} (nested or overlapping entities)",
                             "annotate each value once, spans side by side, never inside "
                             "each other")
        index += 1
    return -1


def _label(pattern, index, where):
    """The (entity, value or None) of the `(type)`, `(type:value)` or `{json}` at `index`, and
    the index after it."""
    opener = pattern[index] if index < len(pattern) else ""
    if opener not in "({" or not opener:
        raise _malformed(where, pattern, f"has a ']' at character {index - 1} without a "
                         "(type) after it", "write [value](type), e.g. [Berlin](location), or "
                         "escape a literal bracket as \\[ and \\]")
    if opener == "(":
        end = pattern.find(")", index)
        if end < 0:
            raise _malformed(where, pattern, f"opens '(' at character {index} and never "
                             "closes it", "write [value](type) with the ')'")
        name, _, value = pattern[index + 1:end].partition(":")
        check_entity_name(name.strip(), where, pattern)
        if _ and not value.strip():
            raise _malformed(where, pattern, "gives an empty canonical value after ':'",
                             "write [text](type:value) with a value, or drop the ':'")
        return name.strip(), (value.strip() or None), end + 1
    depth, end = 0, -1
    for position in range(index, len(pattern)):
        depth += {"{": 1, "}": -1}.get(pattern[position], 0)
        if depth == 0:
            end = position
            break
    try:
        if end < 0:
            raise ValueError("no closing '}'")
        label = json.loads(pattern[index:end + 1])
    except ValueError as error:
        raise _malformed(where, pattern, f"has a {{...}} at character {index} that is not "
                         f"valid JSON ({error})", 'write [text]{"entity": "type", "value": '
                         '"canonical"} with double quotes') from None
    if not isinstance(label, dict) or not isinstance(label.get("entity"), str):
        raise _malformed(where, pattern, f"has a {{...}} at character {index} without "
                         '"entity"', 'write [text]{"entity": "type", "value": "canonical"}')
    unknown = set(label) - ANNOTATION_KEYS
    if unknown:
        raise _malformed(where, pattern, f"has unknown key(s) {sorted(unknown)} in its {{...}}",
                         f"use only {sorted(ANNOTATION_KEYS)}")
    value = label.get("value")
    if value is not None and (not isinstance(value, str) or not value.strip()):
        raise _malformed(where, pattern, 'gives a "value" that is not a non-empty string',
                         'write "value": "canonical form" or leave "value" out')
    check_entity_name(label["entity"], where, pattern)
    return label["entity"], (value.strip() if value else None), end + 1


def parse_pattern(pattern, where="pattern"):
    """The plain text (stripped) and entity spans of an annotated pattern. `where` names the
    file and intent in error messages."""
    if "[" not in pattern and "]" not in pattern and "\\" not in pattern:
        return Annotated(pattern.strip())
    out, spans, index = [], [], 0
    while index < len(pattern):
        char = pattern[index]
        if char == "\\" and index + 1 < len(pattern) and pattern[index + 1] in "[]\\":
            out.append(pattern[index + 1])
            index += 2
        elif char == "]":
            raise _malformed(where, pattern, f"has a ']' at character {index} that closes no "
                             "'['", "write [value](type), or escape a literal bracket as \\]")
        elif char == "[":
            close = _closing(pattern, index + 1, "]", where)
            if close < 0:
                raise _malformed(where, pattern, f"opens '[' at character {index} and never "
                                 "closes it", "write [value](type), or escape a literal "
                                 "bracket as \\[")
            inner = re.sub(r"\\([\[\]\\])", r"\1", pattern[index + 1:close])
            if not inner.strip():
                raise _malformed(where, pattern, f"annotates an empty value at character "
                                 f"{index}", "put the entity's text between the brackets, "
                                 "e.g. [Berlin](location)")
            entity, value, index = _label(pattern, close + 1, where)
            start = sum(map(len, out)) + len(inner) - len(inner.lstrip())
            out.append(inner)
            end = sum(map(len, out)) - (len(inner) - len(inner.rstrip()))
            spans.append((start, end, entity, value))
        else:
            out.append(char)
            index += 1
    raw = "".join(out)
    shift = len(raw) - len(raw.lstrip())
    text = raw.strip()
    return Annotated(text, tuple(
        Span(start - shift, end - shift, entity, value or text[start - shift:end - shift])
        for start, end, entity, value in spans))


def annotate(text, spans):
    """The inline notation of a text and its spans (the inverse of parse_pattern)."""
    def escape(part):
        return part.replace("\\", "\\\\").replace("[", "\\[").replace("]", "\\]")
    out, position = [], 0
    for span in sorted(spans, key=lambda s: s.start):
        out.append(escape(text[position:span.start]))
        written = text[span.start:span.end]
        label = (f"({span.entity})" if span.value == written else
                 json.dumps({"entity": span.entity, "value": span.value}, ensure_ascii=False))
        out.append(f"[{escape(written)}]{label}")
        position = span.end
    out.append(escape(text[position:]))
    return "".join(out)


def spans_from_rows(text, entities, where):
    """Spans of a list-format row's `"entities": [{"start", "end", "value", "entity"}]`."""
    if not isinstance(entities, list):
        raise DataError(f'{where}: "entities" must be a list of {{"start", "end", "entity"}}.')
    spans = []
    for number, item in enumerate(entities):
        place = f"{where}: entities[{number}]"
        if not (isinstance(item, dict) and isinstance(item.get("start"), int)
                and isinstance(item.get("end"), int)):
            raise DataError(f'{place} must be {{"start": int, "end": int, "entity": str}}.')
        start, end = item["start"], item["end"]
        if not 0 <= start < end <= len(text):
            raise DataError(f"{place}: start {start} / end {end} are not inside the text "
                            f"({len(text)} characters); end is exclusive.")
        check_entity_name(item.get("entity"), place)
        value = item.get("value", text[start:end])
        if not isinstance(value, str) or not value:
            raise DataError(f'{place}: "value" must be a non-empty string.')
        spans.append(Span(start, end, item["entity"], value))
    spans.sort(key=lambda s: s.start)
    for left, right in zip(spans, spans[1:]):
        if right.start < left.end:
            raise DataError(f"{where}: entities at {left.start}-{left.end} and "
                            f"{right.start}-{right.end} overlap; keep one of them.")
    return tuple(spans)


def _re2():
    try:
        import re2
    except ImportError:
        raise DataError(f"regexes in the entities or rules section need RE2; "
                        f"{RE2_INSTALL_HINT}") from None
    return re2


def compile_regex(pattern, where, case_sensitive=True):
    """An RE2 pattern (linear-time matching), or a DataError naming `where`."""
    if not isinstance(pattern, str) or not pattern or len(pattern) > MAX_REGEX_CHARS:
        raise DataError(f"{where}: a regex must be a non-empty string of at most "
                        f"{MAX_REGEX_CHARS} characters, not {shorten(pattern)}.")
    try:
        return _compile_re2(pattern, case_sensitive)
    except _re2().error as error:
        message = error.args[0].decode() if error.args and isinstance(error.args[0], bytes) \
            else str(error)
        raise DataError(f"{where}: the regex {shorten(pattern)} does not compile ({message}); "
                        "RE2 syntax, without backreferences or lookaround.") from None


def _compile_re2(pattern, case_sensitive=True):
    re2 = _re2()
    options = re2.Options()
    options.log_errors = False
    options.case_sensitive = case_sensitive
    return re2.compile(pattern, options)


def _phrase_regex(phrases):
    """One case-insensitive RE2 matching any phrase as whole words, longest first."""
    ordered = sorted(set(phrases), key=len, reverse=True)
    return r"(?:" + "|".join(_word_bounded(p) for p in ordered) + r")"


def _word_bounded(phrase):
    body = r"\s+".join(re.escape(word) for word in phrase.split())
    # \b only where the phrase begins or ends with a word character (e.g. "c++" ends with '+').
    left = r"\b" if re.match(r"\w", phrase) else ""
    right = r"\b" if re.search(r"\w$", phrase) else ""
    return left + body + right


@dataclass
class EntityType:
    name: str
    lookup: tuple = ()
    regexes: tuple = ()  # the source patterns
    synonyms: dict = field(default_factory=dict)  # written form (casefolded) -> canonical


@dataclass
class EntityTypes:
    """The declared entity types, with their deterministic matchers compiled lazily."""
    types: dict = field(default_factory=dict)  # name -> EntityType

    def __post_init__(self):
        self._matchers = None

    def to_json(self):
        return {name: {"lookup": list(t.lookup), "regex": list(t.regexes),
                       "synonyms": dict(t.synonyms)} for name, t in sorted(self.types.items())}

    @classmethod
    def from_json(cls, document):
        """The types as to_json wrote them (synonyms already written form -> canonical)."""
        return cls({name: EntityType(name, tuple(spec["lookup"]), tuple(spec["regex"]),
                                     dict(spec["synonyms"]))
                    for name, spec in document.items()})

    def canonical(self, entity, written):
        """The synonym's canonical value of a written form, else the written form."""
        entity_type = self.types.get(entity)
        if entity_type is None:
            return written
        return entity_type.synonyms.get(written.casefold(), written)

    def _compiled(self):
        if self._matchers is None:
            matchers = []
            for name, entity_type in sorted(self.types.items()):
                for source in entity_type.regexes:
                    matchers.append((name, "regex", compile_regex(source, name)))
                if entity_type.lookup:
                    # Chunks keep each RE2 program under its memory limit on long lists. The
                    # pattern is built here from escaped values, so the length limit of a
                    # user's regex (compile_regex) does not apply to it.
                    values = sorted(set(entity_type.lookup), key=len, reverse=True)
                    for chunk in range(0, len(values), 2000):
                        matchers.append((name, "lookup", _compile_re2(
                            _phrase_regex(values[chunk:chunk + 2000]), case_sensitive=False)))
            self._matchers = matchers
        return self._matchers

    def find(self, text):
        """Lookup and regex matches in `text`: dicts in the answer's format, longest match
        first where they overlap."""
        found = []
        for name, extractor, pattern in self._compiled():
            for match in pattern.finditer(text):
                start, end = match.span()
                if end > start:
                    written = text[start:end]
                    found.append({"entity": name, "value": self.canonical(name, written),
                                  "start": start, "end": end, "confidence": 1.0,
                                  "extractor": extractor})
        return without_overlaps(found)


def without_overlaps(entities):
    """Keep the longest (then earliest) of overlapping entities; sorted by start."""
    kept = []
    for entity in sorted(entities, key=lambda e: (-(e["end"] - e["start"]), e["start"])):
        if all(entity["end"] <= other["start"] or entity["start"] >= other["end"]
               for other in kept):
            kept.append(entity)
    return sorted(kept, key=lambda e: e["start"])


def _read_lookup_file(value, base, where):
    path = (Path(base) / value) if base is not None else Path(value)
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise DataError(f"{where}: the lookup file {path} cannot be read ({error.strerror}); "
                        "give a path relative to the intents file, or a list of values.") \
            from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise DataError(f"{where}: the lookup file {path} is not UTF-8 text; save it as UTF-8 "
                        "text with one value per line.") from None
    if "\x00" in text:
        raise DataError(f"{where}: the lookup file {path} is not text (it holds NUL bytes); "
                        "give a text file with one value per line.")
    return [line.strip() for line in text.splitlines() if line.strip()
            and not line.lstrip().startswith("#")]


def validate_entities(section, path, base=None):
    """EntityTypes of an `"entities"` section; `base` is the folder lookup files are read from."""
    where = f'{path}: "entities"'
    if section is None:
        return EntityTypes()
    if not isinstance(section, dict):
        raise DataError(f'{where} must be an object mapping each type to {{"lookup": [...], '
                        '"regex": [...], "synonyms": {...}}, e.g. {"location": {"lookup": '
                        '["Berlin"]}}.')
    types = {}
    for name, spec in section.items():
        check_entity_name(name, where)
        place = f"{where}[{name!r}]"
        spec = {} if spec is None else spec
        if not isinstance(spec, dict):
            raise DataError(f'{place} must be an object with "lookup", "regex" and/or '
                            '"synonyms".')
        unknown = set(spec) - TYPE_KEYS
        if unknown:
            raise DataError(f"{place} has unknown key(s) {sorted(unknown)}; use "
                            f"{sorted(TYPE_KEYS)}.")
        lookup = spec.get("lookup", [])
        if isinstance(lookup, str):
            lookup = _read_lookup_file(lookup, base, f"{place}.lookup")
        if not isinstance(lookup, list) or not all(isinstance(v, str) and v.strip()
                                                   for v in lookup):
            raise DataError(f"{place}.lookup must be a list of non-empty strings or the path "
                            "of a text file with one value per line.")
        if len(lookup) > MAX_LOOKUP_VALUES:
            raise DataError(f"{place}.lookup has {len(lookup):,} values (limit "
                            f"{MAX_LOOKUP_VALUES:,}); keep the ones your users write.")
        regexes = spec.get("regex", [])
        regexes = [regexes] if isinstance(regexes, str) else regexes
        if not isinstance(regexes, list):
            raise DataError(f"{place}.regex must be a regex or a list of regexes.")
        for number, source in enumerate(regexes):
            compile_regex(source, f"{place}.regex[{number}]")
        synonyms = {}  # written form (casefolded) -> canonical
        given = spec.get("synonyms", {})
        if not isinstance(given, dict) or not all(
                isinstance(k, str) and k.strip() and isinstance(v, list)
                and all(isinstance(s, str) and s.strip() for s in v)
                for k, v in given.items()):
            raise DataError(f'{place}.synonyms must map each canonical value to a list of '
                            'the ways users write it, e.g. {"New York": ["NYC", "nyc"]}.')
        for canonical, written_forms in given.items():
            for written in written_forms:
                key = written.strip().casefold()
                if synonyms.get(key, canonical) != canonical:
                    raise DataError(f"{place}.synonyms: {written!r} is a synonym of both "
                                    f"{synonyms[key]!r} and {canonical!r}; keep one.")
                synonyms[key] = canonical
        types[name] = EntityType(name, tuple(v.strip() for v in lookup), tuple(regexes),
                                 synonyms)
    return EntityTypes(types)


@dataclass
class Rules:
    """Intent rules: the first rule matching a message decides its intent over the model."""
    rules: list = field(default_factory=list)  # [{"intent", "regex" | "phrase"}]

    def __post_init__(self):
        self._compiled = None

    def match(self, text):
        """The intent of the first matching rule, or None."""
        if self._compiled is None:
            self._compiled = [(rule["intent"], compile_regex(
                rule["regex"] if "regex" in rule else _word_bounded(rule["phrase"]),
                f"rules: {rule['intent']}", case_sensitive="regex" in rule))
                for rule in self.rules]
        for intent, pattern in self._compiled:
            if pattern.search(text):
                return intent
        return None


def validate_rules(section, path, tags):
    """Rules of a `"rules"` section; each names an intent of `tags`."""
    if section is None:
        return Rules()
    where = f'{path}: "rules"'
    if not isinstance(section, list):
        raise DataError(f'{where} must be a list like [{{"regex": "^(hi|hello)\\\\b", '
                        '"intent": "greeting"}, {"phrase": "talk to a human", "intent": '
                        '"handoff"}].')
    rules = []
    for number, rule in enumerate(section):
        place = f"{where}[{number}]"
        if not isinstance(rule, dict) or set(rule) - {"intent", "regex", "phrase"} or \
                ("regex" in rule) == ("phrase" in rule):
            raise DataError(f'{place} must be {{"regex": ..., "intent": ...}} or {{"phrase": '
                            '..., "intent": ...}} (one of regex / phrase).')
        if rule.get("intent") not in tags:
            raise DataError(f"{place} names the intent {shorten(rule.get('intent'))}, which "
                            f"is not a tag of the intents; use one of {shorten(sorted(tags))}.")
        if "regex" in rule:
            compile_regex(rule["regex"], f"{place}.regex")
        elif not isinstance(rule["phrase"], str) or not rule["phrase"].strip():
            raise DataError(f"{place}.phrase must be a non-empty string.")
        rules.append(dict(rule))
    return Rules(rules)


def learned_synonyms(texts, spans):
    """(entity, written form casefolded) -> canonical of annotations whose value differs from
    the written text ([NYC]{"entity": "location", "value": "New York"})."""
    synonyms = {}
    for text, row in zip(texts, spans):
        for span in row:
            written = text[span.start:span.end]
            if span.value != written:
                synonyms[span.entity, written.casefold()] = span.value
    return synonyms
