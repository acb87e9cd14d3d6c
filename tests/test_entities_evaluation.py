"""Entity scores in every evaluation: the run's report and model card, `intentkit evaluate`,
`--test-data` files with entity rows, cross-validation; errors.csv lists entity mistakes."""
import csv
import json

import pytest
from conftest import annotated_document, quick_config, run_script

from intentkit import artifacts
from intentkit.data.annotations import Span
from intentkit.errors import DataError
from intentkit.evaluation.entities import add_entity_report


def read_errors(path):
    with open(path, newline="", encoding="utf-8") as file:
        return list(csv.reader(file))


def test_the_report_gets_entity_scores_and_entity_mistakes(tmp_path):
    (tmp_path / "metrics.json").write_text(json.dumps({"single": {"accuracy": 0.5}}))
    (tmp_path / "summary.md").write_text("# Evaluation\n")
    texts = ["jobs in Berlin", "=salary in Paris", "hi", "rust jobs"]
    true_spans = [(Span(8, 14, "location", "Berlin"),), (Span(11, 16, "location", "Paris"),),
                  (), (Span(0, 4, "skill", "rust"),)]
    predicted = [[{"entity": "location", "value": "Berlin", "start": 8, "end": 14}],
                 [{"entity": "location", "value": "Paris", "start": 10, "end": 16}],
                 [], []]
    metrics = add_entity_report(tmp_path, texts, ["jobs", "salary", "greeting", "jobs"],
                                ["jobs", "salary", "goodbye", "jobs"], [0.9, 0.8, 0.7, 0.6],
                                true_spans, predicted)
    assert metrics["micro"] == {"precision": 0.5, "recall": 0.3333, "f1": 0.4, "support": 3}
    assert metrics["per_type"]["skill"]["recall"] == 0.0
    assert metrics["whole_message_accuracy"] == 0.25 and metrics["n"] == 4
    stored = json.loads((tmp_path / "metrics.json").read_text())
    assert stored["single"] == {"accuracy": 0.5} and stored["entities"] == metrics
    assert "## Entities" in (tmp_path / "summary.md").read_text()
    rows = read_errors(tmp_path / "errors.csv")
    assert rows[0] == ["text", "true", "predicted", "confidence", "true_entities",
                       "predicted_entities"]
    # The wrong intent first, then the entity mistakes, most confident first; formulas defused.
    assert rows[1:] == [
        ["hi", "greeting", "goodbye", "0.7000", "", ""],
        ["'=salary in Paris", "salary", "salary", "0.8000", "location=Paris[11:16]",
         "location=Paris[10:16]"],
        ["rust jobs", "jobs", "jobs", "0.6000", "skill=rust[0:4]", ""]]


@pytest.mark.slow
def test_the_run_report_and_model_card_give_entity_scores(entity_run):
    metrics = json.loads((entity_run / "report" / "metrics.json").read_text())
    manifest = json.loads((entity_run / artifacts.MANIFEST_FILE).read_text())
    assert metrics["entities"] == manifest["entities"]["test"]
    assert metrics["entities"]["micro"]["support"] >= manifest["entities"]["annotated_rows"][
        "test"] > 0
    assert read_errors(entity_run / "report" / "errors.csv")[0][-2:] == [
        "true_entities", "predicted_entities"]
    card = (entity_run / artifacts.MODEL_CARD_FILE).read_text()
    assert "## Entities" in card and "labeller **crf**" in card
    assert f"F1 {metrics['entities']['micro']['f1']:.4f}" in card


def list_rows():
    """Labelled rows in the SNIPS files' list format, entities as character spans."""
    rows = [("find rust jobs in Berlin", "jobs", [(5, 9, "skill"), (18, 24, "location")]),
            ("salary of a nurse in Paris", "salary", [(12, 17, "job_title"),
                                                      (21, 26, "location")]),
            ("any java openings in NYC", "jobs", [(4, 8, "skill"), (21, 24, "location")]),
            ("hello there friend", "greeting", []), ("goodbye for now", "goodbye", [])]
    return [{"text": text, "intent": intent,
             "entities": [{"start": s, "end": e, "entity": t, "value": text[s:e]}
                          for s, e, t in spans]} for text, intent, spans in rows]


@pytest.mark.slow
def test_evaluate_scores_the_entities_of_a_list_file(entity_run, tmp_path):
    data = tmp_path / "test.json"
    data.write_text(json.dumps(list_rows()))
    completed = run_script("-m", "intentkit", "evaluate", "-m", entity_run, "--data", data,
                           "-o", tmp_path / "report")
    assert completed.returncode == 0, completed.stderr
    assert "entities: micro-F1" in completed.stderr + completed.stdout
    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert metrics["entities"]["micro"]["support"] == 6 and metrics["entities"]["n"] == 5
    assert metrics["entities"]["per_type"]["skill"]["recall"] == 1.0  # a lookup type
    # A bad entity row: one line naming the file and the entry, exit 2.
    bad = list_rows()
    bad[1]["entities"][0]["end"] = 99
    data.write_text(json.dumps(bad))
    completed = run_script("-m", "intentkit", "evaluate", "-m", entity_run, "--data", data)
    assert completed.returncode == 2
    assert "entry [1]: entities[0]" in completed.stderr and "Traceback" not in completed.stderr


@pytest.mark.slow
def test_a_test_file_with_entity_rows_is_the_runs_test_split(tmp_path):
    from intentkit.training.pipeline import train
    data = tmp_path / "intents.json"
    data.write_text(json.dumps(annotated_document(), ensure_ascii=False), encoding="utf-8")
    test_file = tmp_path / "test.json"
    test_file.write_text(json.dumps(list_rows()))
    from dataclasses import replace
    train(replace(quick_config(data, tmp_path / "model"), test_data=str(test_file)))
    manifest = json.loads((tmp_path / "model" / artifacts.MANIFEST_FILE).read_text())
    assert manifest["entities"]["annotated_rows"]["test"] == 3
    assert manifest["entities"]["test"]["micro"]["support"] == 6
    assert manifest["entities"]["test"]["n"] == 5


def test_a_test_file_with_a_bad_entity_row_stops_before_training(tmp_path):
    from dataclasses import replace

    from intentkit.training.pipeline import train
    data = tmp_path / "intents.json"
    data.write_text(json.dumps(annotated_document(), ensure_ascii=False), encoding="utf-8")
    rows = list_rows()
    rows[2]["entities"][1]["start"] = 6  # overlaps the first
    test_file = tmp_path / "test.json"
    test_file.write_text(json.dumps(rows))
    with pytest.raises(DataError, match=r"entry \[2\]: entities at 4-8 and 6-24 overlap"):
        train(replace(quick_config(data, tmp_path / "model"), test_data=str(test_file)))
    assert not (tmp_path / "model" / artifacts.MANIFEST_FILE).exists()


@pytest.mark.slow
def test_cross_validation_gives_entity_scores_per_fold_and_overall(tmp_path):
    from intentkit.training.cv import cross_validate
    data = tmp_path / "intents.json"
    data.write_text(json.dumps(annotated_document(), ensure_ascii=False), encoding="utf-8")
    document = cross_validate(quick_config(data, tmp_path / "cv"), folds=2)
    entities = document["entities"]
    assert 0 < entities["micro_f1"]["mean"] <= 1
    assert {"skill", "location", "job_title"} <= set(entities["per_type_f1"])
    assert "## Entities" in (tmp_path / "cv" / "cv.md").read_text()
    for fold in (1, 2):
        assert "entities" in json.loads(
            (tmp_path / "cv" / f"fold-{fold}" / "metrics.json").read_text())
