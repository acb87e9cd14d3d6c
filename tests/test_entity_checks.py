"""`intentkit check`'s entity findings: two types for one value, values left unannotated,
types with few examples (the cheap checks, without the encoder)."""
import json

from intentkit.evaluation.data_checks import check_data


def _report(tmp_path, patterns, entities=None):
    document = {"intents": [{"tag": "find_job", "patterns": patterns},
                            {"tag": "greet", "patterns": [f"hello {n}" for n in range(10)]}]}
    if entities:
        document["entities"] = entities
    path = tmp_path / "intents.json"
    path.write_text(json.dumps(document))
    return check_data(path, embedding_checks=False)


def _by_code(report, code):
    return [f for f in report.findings if f.code == code]


def test_entity_findings(tmp_path):
    report = _report(tmp_path, [
        "jobs in [Berlin](location)", "jobs in [Paris](location)", "jobs in [Rome](location)",
        "jobs in [Oslo](location)", "[Berlin](company) is hiring", "anything in Berlin?",
        "moving to berlin soon", "[python](skill) jobs", "plain job search",
        "jobs in [Lima](location)"])
    (two_types,) = _by_code(report, "entity-two-types")
    assert two_types.details == {"value": "berlin", "types": ["company", "location"]}
    (unannotated,) = _by_code(report, "entity-unannotated-value")
    assert unannotated.details["patterns"] == ["anything in Berlin?", "moving to berlin soon"]
    few = {f.details["entity"]: f.details["examples"] for f in _by_code(report,
                                                                         "entity-few-examples")}
    assert few == {"company": 1, "skill": 1}  # location has 5
    assert "entity-few-examples" in report.format_text()


def test_a_lookup_makes_few_examples_enough_and_clean_data_has_no_entity_findings(tmp_path):
    report = _report(tmp_path, [f"[python](skill) job {n}" for n in range(2)]
                     + [f"job number {n}" for n in range(8)],
                     entities={"skill": {"lookup": ["python", "java"]}})
    assert not [f for f in report.findings if f.code.startswith("entity")]
    unannotated = _report(tmp_path, [f"job number {n}" for n in range(10)])
    assert not [f for f in unannotated.findings if f.code.startswith("entity")]
