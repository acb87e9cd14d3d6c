"""A run's entity extraction as one portable JSON file: `entities.json` of an export.

    document = portable_entities(run)       # ArtifactError when it cannot be exported faithfully
    PortableEntities(document).extract(text)  # what the page (web_page/entities.js) computes

The file holds what serving.entities.EntityExtractor uses, in a form any language can run:
- the CRF labeller (models.entity_tagger.CrfTagger) read from its CRFsuite model file: labels,
  transition weights (labels x labels) and, per attribute, its state-feature weights by label.
  An attribute is what crf_features writes ("w:" + the lower-cased word, "shape:Aa", "len"
  with a value...); `labeller.features` names that feature set, which the reader recomputes.
  Decoding is CRFsuite's: Viterbi (ties to the lower label index), BIO to character spans, the
  confidence the mean of the tokens' marginals (forward-backward), rounded to 4 places;
- the lookup tables and regexes, each as a pattern JavaScript's RegExp (flags "gu") and Python's
  `re` read as RE2 reads the run's own: \\d \\w \\s \\b and `.` spelled out as RE2's ASCII
  classes, a case-insensitive lookup's letters as the sets RE2 folds them to, ^ and $ as the
  ends of the text. What has no such form is refused, naming the entity type and the regex;
- the intent rules (the data file's "rules"), each as such a pattern: a regex rule's matched
  as written, a phrase rule's case-insensitively at word boundaries, as serving's Rules do;
- the synonyms, keyed by str.casefold of the written form, and the few Unicode facts of the
  Python that trained the run that JavaScript does not have: its whitespace (str.isspace), the
  characters str.isdigit counts beyond \\p{Nd}, and where str.casefold differs from lower().

The MiniLM token-head labeller (TokenHeadTagger) is never a run's labeller (training.entities
says why); a run whose entities.json names another labeller than the CRF is refused.
`PortableEntities` is the reference reader: onnx_export checks that it answers as the run's
EntityExtractor on probe messages before anything is written.
"""
import functools
import json
import math
import random
import re
import struct
import sys
import unicodedata

try:  # Python 3.11+
    import re._constants as sre_constants
    import re._parser as sre_parse
except ImportError:  # pragma: no cover (Python 3.10)
    import sre_constants
    import sre_parse

from .. import artifacts
from ..data.annotations import (
    EntityTypes,
    _compile_re2,
    _phrase_regex,
    _word_bounded,
    without_overlaps,
)
from ..errors import ArtifactError
from ..models.entity_tagger import _match_types, crf_features, decode, match_features, tokenize
from .entities import MAX_ENTITY_CHARS, EntityExtractor, load_entities

FILE = "entities.json"
FORMAT = "intentkit-entities"
FORMAT_VERSION = 1
FEATURES = "intentkit-crf-word-features-1"  # models.entity_tagger.crf_features, as it is now
LAST_CODE_POINT = 0x10FFFF
# RE2's Perl classes (ASCII only, whatever the text), as (first, last) code point ranges.
DIGIT = ((0x30, 0x39),)
WORD = ((0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A))
SPACE = ((0x09, 0x0A), (0x0C, 0x0D), (0x20, 0x20))
WORD_CLASS = "[0-9A-Z_a-z]"
BOUNDARY = (f"(?:(?<={WORD_CLASS})(?!{WORD_CLASS})|(?<!{WORD_CLASS})(?={WORD_CLASS}))")
NOT_BOUNDARY = (f"(?:(?<={WORD_CLASS})(?={WORD_CLASS})|(?<!{WORD_CLASS})(?!{WORD_CLASS}))")
TEXT_START, TEXT_END = r"(?<![\s\S])", r"(?![\s\S])"
SYNTAX = set("^$\\.*+?()[]{}|/")
CLASS_SYNTAX = set("\\]-[^")


def _refused(where, why):
    return ArtifactError(f"{where}: JavaScript's RegExp cannot match it as RE2 does ({why}); "
                         "rewrite it in the syntax docs/export.md lists and retrain")


# --- the CRFsuite model file ------------------------------------------------------------------


def read_crfsuite(model_bytes):
    """(labels, attributes, features) of a CRFsuite 1st-order model (crf1dm.c's format: a 48-byte
    header, a FEAT chunk of (type, source, target, float64 weight) and two CQDB string tables).
    Type 0 is a state feature (attribute -> label), 1 a transition (label -> label); the
    weights are the file's doubles, not the 6 decimals of Tagger.info()."""
    try:
        magic, _, kind, _, _, _, _, off_features, off_labels, off_attrs = struct.unpack_from(
            "<4sI4sIIIIIII", model_bytes, 0)
        if magic != b"lCRF" or kind != b"FOMC":
            raise ValueError("not a CRFsuite 1st-order model")
        chunk, _, count = struct.unpack_from("<4sII", model_bytes, off_features)
        if chunk != b"FEAT":
            raise ValueError("no feature table")
        features = [struct.unpack_from("<IIId", model_bytes, off_features + 12 + 20 * i)
                    for i in range(count)]
        return _strings(model_bytes, off_labels), _strings(model_bytes, off_attrs), features
    except (struct.error, UnicodeDecodeError, IndexError) as error:
        raise ValueError(f"not a readable CRFsuite model ({error})") from None


def _strings(data, offset):
    """A CQDB's strings by id (its backward array: id -> record of id, size, NUL-ended key)."""
    chunk, _, _, _, count, backward = struct.unpack_from("<4sIIIII", data, offset)
    if chunk != b"CQDB":
        raise ValueError("no string table")
    out = []
    for number in range(count):
        (record,) = struct.unpack_from("<I", data, offset + backward + 4 * number)
        identifier, size = struct.unpack_from("<iI", data, offset + record)
        if identifier != number:
            raise ValueError("a string table out of order")
        out.append(data[offset + record + 8:offset + record + 8 + size].rstrip(b"\0")
                   .decode("utf-8"))
    return out


def portable_labeller(model_bytes, match_types):
    labels, attributes, features = read_crfsuite(model_bytes)
    transitions = [[0.0] * len(labels) for _ in labels]
    weights = {}
    for kind, source, target, weight in features:
        if kind == 0:
            weights.setdefault(attributes[source], []).append([target, weight])
        else:
            transitions[source][target] = weight
    return {"kind": "crf", "features": FEATURES, "match_types": list(match_types),
            "labels": labels, "transitions": transitions, "attributes": weights}


# --- regexes ----------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _every_character():
    return "".join(chr(c) for c in range(LAST_CODE_POINT + 1) if not 0xD800 <= c <= 0xDFFF)


@functools.lru_cache(maxsize=4096)
def _folded(char):
    """The characters RE2 matches `char` with, case-insensitively (its case-folding orbit)."""
    pattern = _compile_re2(re.escape(char), case_sensitive=False)
    return tuple(sorted({ord(m.group()) for m in pattern.finditer(_every_character())}
                        | {ord(char)}))


def _char(code, in_class=False):
    char = chr(code)
    if code < 0x20 or code == 0x7F:
        return f"\\x{code:02x}"
    if 0xD800 <= code <= 0xDFFF:
        raise ValueError("a surrogate code point")
    if char in (CLASS_SYNTAX if in_class else SYNTAX):
        return "\\" + char
    return char


def _ranges(codes):
    """Sorted, merged (first, last) ranges of code points or ranges."""
    merged = []
    for first, last in sorted(codes):
        if merged and first <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], last))
        else:
            merged.append((first, last))
    return merged


def _complement(ranges):
    out, at = [], 0
    for first, last in _ranges(ranges):
        if first > at:
            out.append((at, first - 1))
        at = last + 1
    if at <= LAST_CODE_POINT:
        out.append((at, LAST_CODE_POINT))
    return out


def _class(ranges, negate=False):
    body = "".join(_char(a, True) if a == b else f"{_char(a, True)}-{_char(b, True)}"
                   for a, b in _ranges(ranges))
    return f"[{'^' if negate else ''}{body}]"


CATEGORIES = {sre_constants.CATEGORY_DIGIT: DIGIT, sre_constants.CATEGORY_WORD: WORD,
              sre_constants.CATEGORY_SPACE: SPACE}
NEGATED_CATEGORIES = {sre_constants.CATEGORY_NOT_DIGIT: DIGIT,
                      sre_constants.CATEGORY_NOT_WORD: WORD,
                      sre_constants.CATEGORY_NOT_SPACE: SPACE}
ANCHORS = {sre_constants.AT_BEGINNING: TEXT_START, sre_constants.AT_BEGINNING_STRING: TEXT_START,
           sre_constants.AT_END: TEXT_END, sre_constants.AT_END_STRING: TEXT_END,
           sre_constants.AT_BOUNDARY: BOUNDARY, sre_constants.AT_NON_BOUNDARY: NOT_BOUNDARY}


class _Portable:
    """Writes a parsed RE2 pattern (sre_parse's tree: RE2's syntax is, but for what
    portable_regex refuses, a subset of Python's) in the syntax JavaScript and Python share."""

    def __init__(self, fold):
        self.fold = fold

    def codes(self, code):
        return [(c, c) for c in _folded(chr(code))] if self.fold else [(code, code)]

    def set_ranges(self, items):
        ranges, negate = [], False
        for op, value in items:
            if op is sre_constants.NEGATE:
                negate = True
            elif op is sre_constants.LITERAL:
                ranges += self.codes(value)
            elif op is sre_constants.RANGE and not self.fold:
                ranges.append(value)
            elif op is sre_constants.CATEGORY and value in CATEGORIES:
                ranges += CATEGORIES[value]
            elif op is sre_constants.CATEGORY and value in NEGATED_CATEGORIES:
                ranges += _complement(NEGATED_CATEGORIES[value])
            else:
                raise ValueError(f"the class item {op} {value}")
        return ranges, negate

    def node(self, op, value):
        if op is sre_constants.LITERAL:
            codes = self.codes(value)
            return _char(value) if len(codes) == 1 else _class(codes)
        if op is sre_constants.NOT_LITERAL:
            return _class(self.codes(value), negate=True)
        if op is sre_constants.ANY:
            return "[^\\n]"  # RE2's `.` (no s flag): anything but a newline
        if op is sre_constants.IN:
            return _class(*self.set_ranges(value))
        if op is sre_constants.CATEGORY:
            return _class(*self.set_ranges([(op, value)]))
        if op is sre_constants.AT and value in ANCHORS:
            return ANCHORS[value]
        if op is sre_constants.BRANCH:
            return "(?:" + "|".join(self.sequence(branch) for branch in value[1]) + ")"
        if op is sre_constants.SUBPATTERN:
            _, add_flags, del_flags, pattern = value
            if add_flags or del_flags:
                raise ValueError("inline flags such as (?i) or (?s:...)")
            return "(?:" + self.sequence(pattern) + ")"
        if op in (sre_constants.MAX_REPEAT, sre_constants.MIN_REPEAT):
            low, high, item = value
            if item.getwidth()[0] == 0:
                # RE2 and JavaScript stop repeating an empty match at different points.
                raise ValueError("a repeat of something that can match nothing")
            unbounded = high == sre_constants.MAXREPEAT
            bounds = ({(0, True): "*", (1, True): "+"}.get((low, unbounded)) or
                      ("?" if (low, high) == (0, 1) else f"{{{low}}}" if low == high else
                       f"{{{low},}}" if unbounded else f"{{{low},{high}}}"))
            lazy = "?" if op is sre_constants.MIN_REPEAT else ""
            body = self.sequence(item)
            single = len(item) == 1 and item[0][0] in (sre_constants.LITERAL, sre_constants.IN,
                                                       sre_constants.ANY, sre_constants.CATEGORY,
                                                       sre_constants.NOT_LITERAL)
            return f"{body if single else f'(?:{body})'}{bounds}{lazy}"
        raise ValueError(f"{str(op).lower()} (not in RE2's portable syntax)")

    def side(self, node):
        """True where every character `node` matches is an RE2 word character, False where
        none is, None otherwise (or for anything but a literal)."""
        if node is None or node[0] is not sre_constants.LITERAL:
            return None
        words = [any(a <= code <= b for a, b in WORD) for code, _ in self.codes(node[1])]
        return all(words) if all(words) or not any(words) else None

    def sequence(self, pattern):
        nodes = list(pattern)
        out = []
        for index, (op, value) in enumerate(nodes):
            if op is sre_constants.AT and value is sre_constants.AT_BOUNDARY:
                # \b beside a known character is a one-sided look: shorter lookup patterns.
                after = self.side(nodes[index + 1] if index + 1 < len(nodes) else None)
                before = self.side(nodes[index - 1] if index else None)
                if after is not None:
                    out.append(f"(?<{'!' if after else '='}{WORD_CLASS})")
                    continue
                if before is not None:
                    out.append(f"(?{'!' if before else '='}{WORD_CLASS})")
                    continue
            out.append(self.node(op, value))
        return "".join(out)


def portable_regex(source, fold=False):
    """The pattern JavaScript (flags "gu") and Python's re match as RE2 matches `source` (case-
    insensitively with fold=True: a lookup's). ValueError saying what has no such form."""
    if re.search(r"\[:\^?[a-z]+:\]", source):
        raise ValueError("a POSIX class like [[:alpha:]] (write [a-zA-Z])")
    if "{," in source:
        raise ValueError("'{,' (RE2 reads it as text, JavaScript and Python as a repeat)")
    try:
        parsed = sre_parse.parse(source)
    except re.error as error:
        raise ValueError(f"syntax beyond what JavaScript reads the same ({error})") from None
    if parsed.state.flags & ~sre_constants.SRE_FLAG_UNICODE:
        raise ValueError("inline flags such as (?i)")
    return _Portable(fold).sequence(parsed)


def portable_matchers(entity_types, where="entities"):
    """The lookup and regex matchers of the types in EntityTypes._compiled's order (types by
    name, each type's regexes, then its lookup in chunks of 2,000 values), as portable patterns."""
    matchers = []
    for name, entity_type in sorted(entity_types.types.items()):
        for number, source in enumerate(entity_type.regexes):
            try:
                pattern = portable_regex(source)
            except ValueError as why:
                raise _refused(f"{where}: the entity type {name!r}, regex[{number}] "
                               f"{source!r}", why) from None
            matchers.append({"entity": name, "extractor": "regex", "source": source,
                             "pattern": pattern})
        if entity_type.lookup:
            values = sorted(set(entity_type.lookup), key=len, reverse=True)
            for chunk in range(0, len(values), 2000):
                try:
                    pattern = portable_regex(_phrase_regex(values[chunk:chunk + 2000]),
                                             fold=True)
                except ValueError as why:
                    raise _refused(f"{where}: the entity type {name!r}, its lookup", why) \
                        from None
                matchers.append({"entity": name, "extractor": "lookup", "pattern": pattern})
    return matchers


def portable_rules(rules, where="rules"):
    """The intent rules (Rules.rules: {"intent", "regex" | "phrase"}) in order, as portable
    patterns: a regex as written (case-sensitive), a phrase as Rules matches it (case-insensitive,
    word-bounded)."""
    out = []
    for number, rule in enumerate(rules):
        try:
            pattern = (portable_regex(rule["regex"]) if "regex" in rule
                       else portable_regex(_word_bounded(rule["phrase"]), fold=True))
        except ValueError as why:
            raise _refused(f"{where}[{number}] ({rule['intent']!r}) "
                           f"{rule.get('regex', rule.get('phrase'))!r}", why) from None
        out.append({"intent": rule["intent"], "pattern": pattern})
    return out


# --- Unicode facts of this Python -------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def unicode_facts():
    """What the page needs of this Python's Unicode data beyond \\p{...}: its whitespace, the
    characters str.isdigit takes beyond \\p{Nd}, str.casefold where it is not lower()."""
    spaces, digits, folds = [], [], {}
    for char in _every_character():
        if char.isspace():
            spaces.append(ord(char))
        if char.isdigit() and unicodedata.category(char) != "Nd":
            digits.append(ord(char))
        if char.casefold() != char.lower():
            folds[char] = char.casefold()
    return {"python": sys.version.split()[0], "unicode_version": unicodedata.unidata_version,
            "space": spaces, "digit_extra": digits, "casefold": folds}


# --- the document -----------------------------------------------------------------------------


def portable_entities(run):
    """The portable document of an opened run's entity extraction; None for a run without
    entities. ArtifactError naming what cannot be exported faithfully."""
    stored = run.read_entities()
    if stored is None:
        return None
    document, model_bytes = stored
    where = run.directory / FILE
    entity_types = EntityTypes.from_json(document["entity_types"])
    labeller = document["labeller"]
    portable = None
    if labeller is not None:
        if labeller.get("kind") != "crf":
            raise ArtifactError(f"{where}: its labeller {labeller.get('kind')!r} cannot be "
                                "exported for the browser (only the CRF labeller can: the "
                                "MiniLM token head's BiLSTM over 768-wide token states has no "
                                "exported form); export a run trained with the CRF")
        if labeller["match_types"] != _match_types(entity_types):
            raise ArtifactError(f"{where}: the labeller's lookup/regex types "
                                f"{labeller['match_types']} are not its types'; retrain")
        try:
            portable = portable_labeller(model_bytes, labeller["match_types"])
        except ValueError as error:
            raise ArtifactError(f"{where}: its labeller's model cannot be read ({error}); "
                                "retrain with `intentkit train`") from None
    return portable_document(entity_types, document["synonyms"], portable, where,
                             document["rules"])


def portable_document(entity_types, synonyms, labeller=None, where="entities", rules=()):
    """The portable document of EntityTypes, the learned synonyms ([entity, written form
    casefolded, canonical] rows, as a run's entities.json lists them), portable_labeller's
    labeller (None for lookups and regexes only) and the intent rules (Rules.rules)."""
    return {"format": FORMAT, "format_version": FORMAT_VERSION, "max_chars": MAX_ENTITY_CHARS,
            "labeller": labeller, "matchers": portable_matchers(entity_types, where),
            "rules": portable_rules(rules, f"{where}: rules"),
            "synonyms": [list(row) for row in synonyms],
            "type_synonyms": {name: dict(t.synonyms)
                              for name, t in sorted(entity_types.types.items()) if t.synonyms},
            "unicode": unicode_facts()}


def dumps(document):
    return json.dumps(document, ensure_ascii=False, separators=(",", ":"))


# --- the reference reader ---------------------------------------------------------------------


def crfsuite_attributes(rows):
    """crf_features's rows as CRFsuite reads them (python-crfsuite's to_item): a string value
    is the attribute "key:value" with value 1, a number or bool the attribute "key" with it
    as value; CRFsuite looks a name up as a C string, up to a NUL."""
    return [[((f"{key}:{value}" if isinstance(value, str) else key).split("\0")[0],
              1.0 if isinstance(value, str) else float(value)) for key, value in row.items()]
            for row in rows]


class _PortableTypes:
    """EntityTypes's find and canonical, from the portable patterns and synonyms."""

    def __init__(self, document):
        self.synonyms = document["type_synonyms"]
        self.patterns = [(m["entity"], m["extractor"], re.compile(m["pattern"]))
                         for m in document["matchers"]]

    def canonical(self, entity, written):
        return self.synonyms.get(entity, {}).get(written.casefold(), written)

    def find(self, text):
        """Each pattern searched on from where its last match ended (one character on after an
        empty match, as the re2 module's finditer goes); empty matches left out."""
        found = []
        for entity, extractor, pattern in self.patterns:
            at = 0
            while at <= len(text) and (match := pattern.search(text, at)):
                start, end = match.span()
                if end > start:
                    found.append({"entity": entity, "value": self.canonical(entity,
                                                                            text[start:end]),
                                  "start": start, "end": end, "confidence": 1.0,
                                  "extractor": extractor})
                at = end if end > start else end + 1
        return without_overlaps(found)


class PortableEntities:
    """Entities from the portable document alone: its weights decoded by CRFsuite's Viterbi and
    forward-backward, its patterns run by Python's re, joined as EntityExtractor joins them."""
    extractor = "crf"

    def __init__(self, document):
        self.labeller = document["labeller"]
        self.types = _PortableTypes(document)
        synonyms = {(entity, written): canonical
                    for entity, written, canonical in document["synonyms"]}
        self.joined = EntityExtractor(self if self.labeller else None, self.types, synonyms)
        self.rules = [(rule["intent"], re.compile(rule["pattern"]))
                      for rule in document["rules"]]

    def extract(self, texts):
        return self.joined.extract(texts)

    def rule(self, text):
        """The intent of the first rule matching `text` (Rules.match's answer), or None."""
        return next((intent for intent, pattern in self.rules if pattern.search(text)), None)

    def predict(self, texts):
        """The labeller's entities (CrfTagger.predict's answer)."""
        out = []
        for text in texts:
            tokens = tokenize(text)
            out.append(decode(text, tokens, *self.tag(text, tokens), self.extractor)
                       if tokens else [])
        return out

    def tag(self, text, tokens):
        """(tags, their marginals) as CRFsuite gives them: Viterbi (ties to the lower label
        index), forward-backward."""
        labeller = self.labeller
        labels, transitions = labeller["labels"], labeller["transitions"]
        match_types = labeller["match_types"]
        matches = match_features(text, tokens, self.types, match_types)
        size, scores = len(labels), []
        for row in crfsuite_attributes(crf_features(text, tokens, matches, match_types)):
            score = [0.0] * size
            for name, value in row:
                for label, weight in labeller["attributes"].get(name, ()):
                    score[label] += weight * value
            scores.append(score)
        best, back = list(scores[0]), []
        for score in scores[1:]:
            previous, best, pointers = best, [], []
            for j in range(size):
                top, top_i = -math.inf, -1
                for i in range(size):
                    if top < previous[i] + transitions[i][j]:
                        top, top_i = previous[i] + transitions[i][j], i
                best.append(top + score[j])
                pointers.append(top_i)
            back.append(pointers)
        path = [max(range(size), key=lambda j: (best[j], -j))]
        for pointers in reversed(back):
            path.append(pointers[path[-1]])
        path.reverse()
        forward = [scores[0]]
        for score in scores[1:]:
            forward.append([score[j] + _log_sum([forward[-1][i] + transitions[i][j]
                                                 for i in range(size)]) for j in range(size)])
        backward = [[0.0] * size]
        for score in reversed(scores[1:]):
            backward.insert(0, [_log_sum([transitions[i][j] + score[j] + backward[0][j]
                                          for j in range(size)]) for i in range(size)])
        total = _log_sum(forward[-1])
        return [labels[y] for y in path], [math.exp(forward[t][y] + backward[t][y] - total)
                                           for t, y in enumerate(path)]


def _log_sum(values):
    top = max(values)
    return top + math.log(sum(math.exp(v - top) for v in values))


# --- the export -------------------------------------------------------------------------------

CONFIDENCE_TOLERANCE = 1e-4  # one unit of the 4th place, where two roundings part ways
NO_ENTITIES = ("the run has no entities (its data had no annotations, lookups or regexes): "
               "the page shows none")
AWKWARD_PROBES = ("", "?", "🚀 ǅemal İSTANBUL straße STRASSE ﬁne", "e\u0301 café 120k 50K",
                  "AB-12 #tag_1\u2028x\u00a0y\ufeffz\x1cw", "²³ ① ٣ 42", "ſ K K", "don't c++!!")


def probe_messages(document, entity_types, count=300, seed=0):
    """`count` messages to verify the export on: the awkward ones, then 1-12 pieces each of the
    labeller's words (its "w:" attributes) and the lookup values, in varied casing, seeded."""
    labeller = document["labeller"] or {"attributes": {}}
    pieces = sorted({name[2:] for name in labeller["attributes"] if name.startswith("w:")}
                    | {value for t in entity_types.types.values() for value in t.lookup}
                    | {written for _, written, _ in document["synonyms"]}) or ["hello"]
    rng = random.Random(seed)
    casings = (str, str, str.upper, str.title, str.capitalize)
    made = [rng.choice(casings)(" ".join(rng.choice(pieces) for _ in range(rng.randint(1, 12))))
            for _ in range(max(count - len(AWKWARD_PROBES), 0))]
    return list(AWKWARD_PROBES) + made


def rule_probes(rules):
    """Messages around each phrase rule's phrase (its casings, inside and glued to words) for
    the rules' verification; regex rules meet the caller's probes."""
    out = []
    for rule in rules.rules:
        phrase = rule.get("phrase")
        if phrase:
            out += [phrase, phrase.upper(), f"please, {phrase.title()} now", f"x{phrase}",
                    f"{phrase}s", "  ".join(phrase.split())]
    return out


def _differ(expected, got):
    """Whether two answers differ: in anything but the confidence, or in it by more than the
    last rounded place (the marginals are summed in another order)."""
    return len(expected) != len(got) or any(
        {k: v for k, v in a.items() if k != "confidence"} !=
        {k: v for k, v in b.items() if k != "confidence"} or
        abs(a["confidence"] - b["confidence"]) > CONFIDENCE_TOLERANCE
        for a, b in zip(expected, got))


def write_export(run, document, directory, probes=()):
    """Writes `document` (portable_entities's) as directory/entities.json once the reference
    reader answers as the run's EntityExtractor on `probes` and probe_messages; returns
    export.json's `entities`. ArtifactError naming the first message that differs."""
    if document is None:
        return {"exported": False, "why": NO_ENTITIES}
    extractor, rules = load_entities(run)
    entity_types = extractor.entity_types
    texts = list(probes) + probe_messages(document, entity_types) + rule_probes(rules)
    reference = PortableEntities(document)
    for text in texts:
        expected, got = extractor.extract([text])[0], reference.extract([text])[0]
        if _differ(expected, got):
            raise ArtifactError(f"export refused: the exported entities of {text[:60]!r} are "
                                f"{got}, the run finds {expected}; the run's entity extraction "
                                "cannot be exported faithfully")
        if rules.match(text) != reference.rule(text):
            raise ArtifactError(f"export refused: the exported intent rules send {text[:60]!r} "
                                f"to {reference.rule(text)!r}, the run's to {rules.match(text)!r};"
                                " the run's rules cannot be exported faithfully")
    path = directory / FILE
    path.write_text(dumps(document), encoding="utf-8")
    labeller = document["labeller"]
    return {"exported": True, "file": FILE, "bytes": path.stat().st_size,
            "sha256": artifacts.sha256(path), "format": FORMAT, "format_version": FORMAT_VERSION,
            "labeller": labeller["kind"] if labeller else None,
            "features": labeller["features"] if labeller else None,
            "attributes": len(labeller["attributes"]) if labeller else 0,
            "types": sorted(set(entity_types.types) | {
                label.partition("-")[2] for label in (labeller["labels"] if labeller else ())}
                - {""}),
            "matchers": len(document["matchers"]), "rules": len(document["rules"]),
            "verification": {"messages": len(texts), "reference": "entity_export."
                             "PortableEntities (Python re on the exported patterns)",
                             "confidence_tolerance": CONFIDENCE_TOLERANCE}}


