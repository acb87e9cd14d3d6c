"""The entity part of an export (serving.entity_export): the portable entities.json, read by the
pure-Python reference (CRFsuite's Viterbi and marginals over the exported weights, the exported
patterns on Python's re), finds the run's entities on 1,000 messages; RE2 patterns JavaScript
would read otherwise are refused, naming the type and the regex, with exit 2."""
import hashlib
import json
import random
import shutil
import tempfile
from pathlib import Path

import pytest
from conftest import ENTITY_SECTION, JOBS, SALARY
from live_server import missing

from intentkit import artifacts, cli
from intentkit.data.annotations import _compile_re2, _phrase_regex, parse_pattern
from intentkit.errors import ArtifactError
from intentkit.serving import entity_export
from intentkit.serving.entities import load_entities

for package in ("pycrfsuite", "re2"):
    try:
        __import__(package)
    except ImportError:
        missing(f"{package} is missing: pip install 'intentkit[entities]'")

PIECES = ["python", "Rust", "JAVA", "jobs", "in", "Berlin", "new  york", "NYC", "nyc",
          "São Paulo", "120k", "50K", "ſ", "K", "Kelvin", "🚀", "é", "e\u0301", "İstanbul",
          "ΣΑΣ", "²³", "①", "٣", "\x1c", "\u2028", "\ufeff", "\u00a0", "?", "!!", ",", "c++",
          "C++", "data engineer", "nurse", "DESIGNER", "Ǆemal", "ǅ", "_", "-", "'s", "don't",
          "\t", "\n", "ﬁne", "x" * 30, "Zürich", "ZÜRICH", "teachers", "kotlin", "GO"]
MESSAGES = 1000


def messages(count=MESSAGES, seed=24):
    """The annotated patterns' texts, then pieces of them and awkward text (punctuation,
    Unicode, casing, pieces glued together), seeded."""
    texts = [parse_pattern(p).text for p in JOBS + SALARY]
    rng = random.Random(seed)
    casings = (str, str, str.upper, str.lower, str.title)
    while len(texts) < count:
        glue = "" if rng.random() < 0.2 else " "
        texts.append(rng.choice(casings)(glue.join(
            rng.choice(PIECES + texts[:24]) for _ in range(rng.randint(1, 10)))))
    return texts


def graft_entities(run_dir, entity_run, out, edit=None):
    """`run_dir`'s current run published again in `out` with `entity_run`'s entity files
    (entities.json through `edit(document)` where given), listed and sealed in its manifest: an
    ensemble run with entities without training one more."""
    current = (run_dir / artifacts.RUNS_DIR / artifacts.CURRENT_RUN).resolve()
    source = (entity_run / artifacts.RUNS_DIR / artifacts.CURRENT_RUN).resolve()
    out.mkdir(parents=True)
    staging = tempfile.mkdtemp(prefix=artifacts.STAGING_PREFIX, dir=out)
    for entry in current.iterdir():
        (shutil.copytree if entry.is_dir() else shutil.copy2)(entry, f"{staging}/{entry.name}")
    manifest = json.loads((current / artifacts.MANIFEST_FILE).read_text())
    for name in (artifacts.ENTITIES_FILE, artifacts.ENTITY_LABELLER_FILE):
        raw = (source / name).read_bytes()
        if edit and name == artifacts.ENTITIES_FILE:
            raw = json.dumps(edit(json.loads(raw))).encode()
        (Path(staging) / name).write_bytes(raw)
        manifest["files"][name] = hashlib.sha256(raw).hexdigest()
        manifest["sizes"][name] = len(raw)
    manifest.pop("run_id", None)
    manifest.pop("manifest_sha256", None)
    (Path(staging) / artifacts.MANIFEST_FILE).write_text(
        json.dumps(artifacts.sealed(manifest)))
    artifacts.publish(Path(staging), out)
    return out


def _differences(extractor, reference, texts):
    return [(text, expected, got) for text in texts
            for expected, got in [(extractor.extract([text])[0], reference.extract([text])[0])]
            if entity_export._differ(expected, got)]


@pytest.fixture(scope="module")
def portable(entity_run):
    run = artifacts.open_published(entity_run)
    extractor, _ = load_entities(run)
    # Through JSON, as the page receives it.
    document = json.loads(entity_export.dumps(entity_export.portable_entities(run)))
    return run, extractor, document


def test_the_portable_file_finds_the_runs_entities(portable):
    run, extractor, document = portable
    texts = messages()
    assert len(set(texts)) > 950
    answers = [extractor.extract([text])[0] for text in texts]
    found = {(e["extractor"], e["entity"]) for row in answers for e in row}
    # Every part is exercised: the labeller's spans, lookups, the regex, a synonym.
    assert {("crf", "skill"), ("crf", "location"), ("crf", "job_title")} <= found
    assert {("lookup", "skill"), ("regex", "salary_amount")} <= found
    assert any(e["value"] == "New York" and e["extractor"] == "crf"
               for row in answers for e in row)
    assert _differences(extractor, entity_export.PortableEntities(document), texts) == []


def test_the_weights_are_the_model_files_own(portable):
    run, extractor, document = portable
    info = extractor.tagger._tagger.info()
    labeller = document["labeller"]
    labels = labeller["labels"]
    assert labels == extractor.tagger._tagger.labels()
    state = {(name, labels[label]): weight for name, pairs in labeller["attributes"].items()
             for label, weight in pairs}
    assert state.keys() == info.state_features.keys()
    assert all(abs(state[key] - weight) < 1e-6 for key, weight in info.state_features.items())
    for (source, target), weight in info.transitions.items():
        assert abs(labeller["transitions"][labels.index(source)][labels.index(target)]
                   - weight) < 1e-6


def test_a_changed_weight_or_pattern_is_caught(portable):
    """The comparison can fail: one transition weight or one lookup pattern changed is seen."""
    run, extractor, document = portable
    texts = messages(200)
    changed = json.loads(json.dumps(document))
    labels = changed["labeller"]["labels"]
    changed["labeller"]["transitions"][labels.index("O")][labels.index("B-location")] -= 5
    assert _differences(extractor, entity_export.PortableEntities(changed), texts)
    changed = json.loads(json.dumps(document))
    lookup = next(m for m in changed["matchers"] if m["entity"] == "skill")
    lookup["pattern"] = lookup["pattern"].replace("[Pp]", "p")
    assert _differences(extractor, entity_export.PortableEntities(changed), texts)


CORPUS = ["", "a", "abc 120k 50K 7k9k", "AB-123 AB-12 ab-123", "#tag_1 #é", "foo.bar baaar.xxx",
          "x\ny\n", "\n", "mail me@example.com, you@x.org!", "ſ K kelvin KELVIN straße STRASSE",
          "colour color colr", "İstanbul istanbul ISTANBUL", "σας ΣΑΣ ς", "🚀🚀 c++ C++x",
          "e\u0301 é à-ü ÀÜ", "x y\t\tz\u00a0w\u2028v", "__init__ a_b 123abc", "abab ab ba"]
REGEXES = [r"[:;]+", r"\b\d+k\b", r"^[A-Z]{2}-\d{3,}$", r"#\w+", r"(?:foo|ba+r)\.?x*?", r"\s+",
           r"\S+@\S+", r"[^\W\d]+", r"\D{2}", r"a.c|x.", r"y$", r"^x", r"\Bab", r"(?P<n>ab)+",
           r"é+", r"[à-ü]+", r"colou?r", r"\d{2,4}", r"[\w.-]+@[\w-]+\.\w+", r"\w+?b",
           r"[^a-z\s]+", r"(a|ab)(c|bcd)?", r"\x41|\t", r"k+", r"ς|σ"]
LOOKUPS = [["kelvin", "Straße", "NEW york", "c++", "€", "İstanbul", "σας", "ab", "a b"],
           ["x", "é", "ÀÜ", "e\u0301", "🚀", "y z"]]


def _re2_spans(pattern, text):
    return [m.span() for m in pattern.finditer(text) if m.end() > m.start()]


def _portable_spans(source, text):
    types = entity_export._PortableTypes({"type_synonyms": {}, "matchers": [
        {"entity": "t", "extractor": "regex", "pattern": source}]})
    return [(m["start"], m["end"]) for m in types.find(text)]


@pytest.mark.parametrize("regex", REGEXES)
def test_a_portable_regex_matches_what_re2_matches(regex):
    portable = entity_export.portable_regex(regex)
    for text in CORPUS:
        # One pattern alone: find keeps the longest of overlapping matches, none overlap here.
        assert _portable_spans(portable, text) == _re2_spans(_compile_re2(regex), text), text


@pytest.mark.parametrize("values", LOOKUPS)
def test_a_portable_lookup_matches_case_insensitively_as_re2(values):
    source = _phrase_regex(values)
    portable = entity_export.portable_regex(source, fold=True)
    for text in CORPUS + [" ".join(values), " ".join(values).upper(), "KELVIN Kelvin"]:
        assert _portable_spans(portable, text) == \
            _re2_spans(_compile_re2(source, case_sensitive=False), text), text


@pytest.mark.parametrize("regex, why", [
    ("[[:alpha:]]+", "POSIX class"), ("[a[:^digit:]]", "POSIX class"),
    ("(?i)abc", "inline flags"), ("(?i:a)b", "inline flags"),
    (r"\pL+", "syntax beyond"), ("a{,3}", "'{,'"), ("(a*)*b", "can match nothing"),
    (r"\Qa.b\E", "syntax beyond"), (r"(?s).", "inline flags")])
def test_a_regex_javascript_reads_otherwise_is_refused(regex, why):
    with pytest.raises(ValueError, match=why):
        entity_export.portable_regex(regex)


def test_lookups_and_regexes_alone_are_exported():
    """A run with an "entities" section and no annotation has no labeller: its lookups, regexes
    and synonyms are the whole answer."""
    from intentkit.data.annotations import validate_entities
    from intentkit.serving.entities import EntityExtractor
    types = validate_entities({**ENTITY_SECTION, "code": {"regex": [r"^[A-Z]{2}-\d{3,}$",
                                                                    r"#\w+"]}}, "intents.json")
    synonyms = {("skill", "c++"): "C++"}
    document = json.loads(entity_export.dumps(entity_export.portable_document(
        types, [[*key, value] for key, value in synonyms.items()])))
    assert document["labeller"] is None
    extractor = EntityExtractor(None, types, synonyms)
    texts = messages(300) + ["AB-123", "#tag_1 and #Zürich"]
    assert sum(bool(extractor.extract([t])[0]) for t in texts) > 200
    assert _differences(extractor, entity_export.PortableEntities(document), texts) == []


def test_intent_rules_are_exported_and_match_as_the_runs_rules():
    from intentkit.data.annotations import Rules, validate_entities
    rules = Rules([{"phrase": "talk to a human", "intent": "handoff"},
                   {"regex": r"^(hi|hello)\b", "intent": "greeting"},
                   {"phrase": "c++ jobs", "intent": "jobs"}])
    document = json.loads(entity_export.dumps(entity_export.portable_document(
        validate_entities({}, "intents.json"), [], rules=rules.rules)))
    reference = entity_export.PortableEntities(document)
    texts = [*entity_export.rule_probes(rules), *messages(300), "hello there", "Hello there",
             "say hello", "hi", "hit me", "C++ JOBS in Berlin", "talk  to a HUMAN", "talk to a",
             "Talk to a humane person", "ǅ talk to a human"]
    assert sum(rules.match(text) is not None for text in texts) > 10
    assert [reference.rule(text) for text in texts] == [rules.match(text) for text in texts]


def test_an_intent_rule_javascript_reads_otherwise_is_refused():
    with pytest.raises(ArtifactError, match=r"rules\[1\] \('greeting'\) '\(\?i\)\^hello': "
                       "JavaScript's RegExp cannot match it as RE2 does \\(inline flags"):
        entity_export.portable_rules([{"phrase": "talk to a human", "intent": "handoff"},
                                      {"regex": "(?i)^hello", "intent": "greeting"}])


def test_the_feature_set_is_the_one_entities_js_computes():
    """entities.js computes `intentkit-crf-word-features-1` by hand: a change to the labeller's
    features fails here first (then bump entity_export.FEATURES and change entities.js)."""
    import numpy as np

    from intentkit.models.entity_tagger import crf_features, tokenize
    text = "Héllo NYC, 120k²!"
    tokens = tokenize(text)
    matches = np.zeros((len(tokens), 1))
    matches[1, 0] = 1
    rows = entity_export.crfsuite_attributes(crf_features(text, tokens, matches, ["location"]))
    assert entity_export.FEATURES == "intentkit-crf-word-features-1"
    assert rows[1] == [
        ("bias", 1.0), ("w:nyc", 1.0), ("p3:nyc", 1.0), ("s3:nyc", 1.0), ("s2:yc", 1.0),
        ("shape:AA", 1.0), ("digit", 0.0), ("title", 0.0), ("upper", 1.0), ("len", 3.0),
        ("w-2:<s>", 1.0), ("w-1:héllo", 1.0), ("w+1:,", 1.0), ("w+2:120k²", 1.0),
        ("bigram-:héllo|nyc", 1.0), ("bigram+:nyc|,", 1.0), ("match:location", 1.0)]
    assert rows[3][:10] == [
        ("bias", 1.0), ("w:120k²", 1.0), ("p3:120", 1.0), ("s3:0k²", 1.0), ("s2:k²", 1.0),
        ("shape:00a²", 1.0), ("digit", 0.0), ("title", 0.0), ("upper", 0.0), ("len", 5.0)]
    assert rows[4][-2:] == [("bigram-:120k²|!", 1.0), ("bigram+:!|</s>", 1.0)]


def test_python_word_characters_are_javascripts_letters_and_numbers():
    """entities.js reads Python's \\w as [\\p{L}\\p{N}_]: true of this Python's Unicode data."""
    import re
    import unicodedata
    everything = entity_export._every_character()
    python = set(re.findall(r"\w", everything))
    assert python == {c for c in everything if c == "_" or unicodedata.category(c)[0] in "LN"}


def test_an_unexportable_regex_is_refused_with_exit_2(entity_run, tmp_path, caplog):
    def add_regex(document):
        document["entity_types"]["salary_amount"]["regex"].append("(?i)\\d+ euros?")
        return document
    run = graft_entities(entity_run, entity_run, tmp_path / "run", add_regex)
    out = tmp_path / "exported"
    assert cli.main(["export", "--format", "onnx", "-m", str(run), "-o", str(out)]) == 2
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "\n" not in errors[0]
    assert "/entities.json: the entity type 'salary_amount', regex[1] " \
        "'(?i)\\\\d+ euros?': JavaScript's RegExp cannot match it as RE2 does (inline flags" \
        in errors[0]
    assert not out.exists()


def test_only_the_crf_labeller_is_exported(portable, monkeypatch):
    run = portable[0]
    stored = run.read_entities()
    document = json.loads(json.dumps(stored[0]))
    document["labeller"]["kind"] = "minilm_bilstm"
    monkeypatch.setattr(type(run), "read_entities", lambda self: (document, stored[1]))
    with pytest.raises(ArtifactError, match="labeller 'minilm_bilstm' cannot be exported"):
        entity_export.portable_entities(run)
