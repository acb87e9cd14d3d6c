"""The shipped data's entity annotations and lookup tables (filesTech/final.json,
filesTech/lookups/): they load from any working directory, find what a chatbot asks about, leave
everyday words alone, and annotate each type often enough to learn from."""
import subprocess
import sys
from collections import defaultdict

import pytest
from conftest import ROOT

from intentkit.data.intents import load_intents

SHIPPED = ROOT / "filesTech" / "final.json"
TYPES = {"job_title", "skill", "company", "location", "platform", "certification", "salary_amount"}


@pytest.fixture(scope="module")
def shipped():
    return load_intents(SHIPPED)


def test_the_shipped_types_read_their_lookup_files_from_any_working_directory(tmp_path,
                                                                             monkeypatch):
    monkeypatch.chdir(tmp_path)
    types = load_intents(SHIPPED).entity_types.types
    assert set(types) == TYPES
    sizes = {name: len(entity_type.lookup) for name, entity_type in types.items()}
    assert sizes["location"] >= 500 and sizes["job_title"] >= 300 and sizes["skill"] >= 200
    assert sizes["company"] >= 200 and sizes["platform"] >= 40 and sizes["certification"] >= 50


def test_the_shipped_data_loads_without_the_entities_extra():
    """The README's first command installs no RE2 (the `entities` extra), and a regex in the
    "entities" section needs it to load; the shipped file keeps to lookups and annotations, so
    `python jobs.py` loads it on that install."""
    code = ("import sys; sys.modules['re2'] = None\n"
            "from intentkit.data.intents import load_intents\n"
            f"data = load_intents({str(SHIPPED)!r})\n"
            "print(len(data.texts), sum(map(len, data.spans)))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=ROOT, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    texts, spans = map(int, result.stdout.split())
    assert texts > 1224 and spans > 400


@pytest.mark.parametrize("message, expected", [
    ("salary for a data engineer in Berlin",
     [("job_title", "data engineer"), ("location", "Berlin")]),
    ("python jobs in NYC at Google", [("skill", "python"), ("location", "New York"),
                                      ("company", "Google")]),
    ("should I learn k8s or golang", [("skill", "Kubernetes"), ("skill", "Go")]),
    ("jobs at Facebook in Bangalore", [("company", "Meta"), ("location", "Bengaluru")]),
    ("is the CKA worth it for an SRE", [("certification", "CKA"),
                                        ("job_title", "site reliability engineer")]),
])
def test_the_lookups_and_synonyms_find_what_a_chatbot_is_asked(shipped, message, expected):
    found = shipped.entity_types.find(message)
    assert [(e["entity"], e["value"]) for e in found] == expected


@pytest.mark.parametrize("message", [
    "where do hackathons go on a cv", "my company wants us back in the office",
    "should I use indeed", "a nice offer with a 401k match", "I want to excel at interviews",
    "a mobile phone and a reading list", "can you help me find a job",
])
def test_everyday_words_are_not_in_the_lookups(shipped, message):
    assert shipped.entity_types.find(message) == []


def test_no_lookup_value_belongs_to_two_types(shipped):
    owners = defaultdict(set)
    for name, entity_type in shipped.entity_types.types.items():
        for value in entity_type.lookup:
            owners[value.casefold()].add(name)
    assert {value: names for value, names in owners.items() if len(names) > 1} == {}


def test_each_type_is_annotated_at_least_five_times_across_several_intents(shipped):
    examples, intents = defaultdict(int), defaultdict(set)
    for label, spans in zip(shipped.labels, shipped.spans):
        for span in spans:
            examples[span.entity] += 1
            intents[span.entity].add(label)
    assert set(examples) == TYPES
    assert {name for name in TYPES if examples[name] < 5 or len(intents[name]) < 3} == set()
    assert "salary for a data engineer in Berlin" in shipped.texts
