"""Entities through a whole run: trained with the intents, written into the run (verified on
open), answered by the Predictor in both runtimes, the functions and the service (issue 24)."""
import json
import threading
import time

import pytest
from conftest import annotated_document, quick_config, run_script

from intentkit import artifacts
from intentkit.errors import ArtifactError
from intentkit.serving.predictor import Predictor, get_predictor, predict_intent_improved
from intentkit.training.pipeline import train

pytestmark = pytest.mark.slow  # every test here trains or reads a trained run


@pytest.fixture(scope="module")
def plain_run(tmp_path_factory):
    """A run of the same intents without any annotation, entities or rules section."""
    from intentkit.data.annotations import parse_pattern
    work = tmp_path_factory.mktemp("plain")
    data = work / "intents.json"
    document = annotated_document()
    for intent in document["intents"]:
        intent["patterns"] = [parse_pattern(p).text for p in intent["patterns"]]
    data.write_text(json.dumps({"intents": document["intents"]}, ensure_ascii=False),
                    encoding="utf-8")
    train(quick_config(data, work / "model"))
    return work / "model"


def test_the_run_lists_its_entity_files_and_the_labellers_choice(entity_run):
    manifest = json.loads((entity_run / artifacts.MANIFEST_FILE).read_text())
    for name in (artifacts.ENTITIES_FILE, artifacts.ENTITY_LABELLER_FILE):
        assert manifest["files"][name] == artifacts.sha256(entity_run / name)
        assert manifest["sizes"][name] == (entity_run / name).stat().st_size
    entities = manifest["entities"]
    assert entities["labeller"] == "crf"
    assert entities["chosen_by"] == "validation entity micro-F1"
    assert len(entities["candidates"]) == 2
    assert all(0 <= c["val_micro_f1"] <= 1 for c in entities["candidates"])
    assert {"skill", "location", "job_title", "salary_amount"} <= set(entities["types"])
    # The labeller also trained on value-substituted variants of the annotated training rows
    # (on by default; at most the factor, 2, per annotated row).
    assert 0 < entities["substituted_rows"] <= 2 * entities["annotated_rows"]["train"]
    assert 0 <= entities["test"]["micro"]["f1"] <= 1
    assert 0 <= entities["test"]["whole_message_accuracy"] <= 1
    # The manifest still vouches for itself and for every file: the run opens verified.
    artifacts.open_published(entity_run)


def entity_keys(entities):
    return [(e["entity"], e["value"], e["start"], e["end"], e["extractor"]) for e in entities]


@pytest.mark.parametrize("runtime", ["numpy", "keras"])
def test_offsets_point_into_the_message_as_sent(entity_run, runtime):
    predictor = Predictor.from_dir(entity_run, runtime=runtime, cache_size=0)
    text = "🚀🚀 Any rust jobs in São Paulo, or in NYC?! (120k, please) — merci, é"
    result = predictor.predict(text)
    found = {e["entity"]: e for e in result["entities"]}
    assert set(found) >= {"skill", "location", "salary_amount"}, result["entities"]
    for entity in result["entities"]:
        assert set(entity) == {"entity", "value", "start", "end", "confidence", "extractor"}
        assert 0 <= entity["start"] < entity["end"] <= len(text)
        assert 0 < entity["confidence"] <= 1
    assert text[found["skill"]["start"]:found["skill"]["end"]] == "rust"
    assert text[found["salary_amount"]["start"]:found["salary_amount"]["end"]] == "120k"
    locations = [e for e in result["entities"] if e["entity"] == "location"]
    written = {text[e["start"]:e["end"]]: e["value"] for e in locations}
    assert written.get("NYC") == "New York", locations  # the synonym's canonical value


def test_both_runtimes_give_the_same_entities(entity_run):
    texts = ["how much does a data engineer make in Berlin", "find python jobs in Lisbon!",
             "é é — salary of a nurse in London 🙂", "hello there"]
    numpy_results = Predictor.from_dir(entity_run, runtime="numpy").predict_batch(texts)
    keras_results = Predictor.from_dir(entity_run, runtime="keras").predict_batch(texts)
    assert [r["entities"] for r in numpy_results] == [r["entities"] for r in keras_results]
    learned = [e for e in numpy_results[0]["entities"] if e["extractor"] == "crf"]
    assert ("job_title", "data engineer", 16, 29, "crf") in entity_keys(learned)
    assert numpy_results[3]["entities"] == []


def test_an_intent_rule_overrides_the_model(entity_run):
    result = Predictor.from_dir(entity_run).predict("can i talk to a human please")
    assert (result["intent"], result["model_type"], result["confidence"]) == \
        ("greeting", "rule", 1.0)
    assert result["fallback"] is False
    assert Predictor.from_dir(entity_run).predict("find python jobs")["model_type"] != "rule"


def test_a_run_without_entities_answers_an_empty_list(plain_run):
    assert not (plain_run / ".runs" / "current" / artifacts.ENTITIES_FILE).exists()
    manifest = json.loads((plain_run / artifacts.MANIFEST_FILE).read_text())
    assert artifacts.ENTITIES_FILE not in manifest["files"] and "entities" not in manifest
    predictor = Predictor.from_dir(plain_run)
    assert predictor.predict("find python jobs in Berlin")["entities"] == []
    paths = {"model_path": plain_run / artifacts.MODEL_FILE,
             "preprocessor_path": plain_run / artifacts.PREPROCESSOR_FILE}
    assert predict_intent_improved("find python jobs", **paths)["entities"] == []


def test_the_cache_keeps_entities_and_a_caller_cannot_change_them(entity_run):
    predictor = Predictor.from_dir(entity_run)
    first = predictor.predict("find rust jobs in Berlin")
    first["entities"][0]["value"] = "changed"
    first["entities"].clear()
    second = predictor.predict("find rust jobs in Berlin")
    assert predictor.cache.hits == 1
    assert ("skill", "rust", 5, 9, "crf") in entity_keys(second["entities"]) or \
        ("skill", "rust", 5, 9, "lookup") in entity_keys(second["entities"])


def test_threads_get_the_entities_one_thread_gets(entity_run):
    predictor = Predictor.from_dir(entity_run, cache_size=0)
    texts = [f"find {skill} jobs in {city} for {n}k" for n, (skill, city) in enumerate(
        [("python", "Berlin"), ("rust", "Paris"), ("java", "London"), ("go", "Madrid")] * 5)]
    expected = [r["entities"] for r in predictor.predict_batch(texts)]
    results, errors = {}, []

    def work(number):
        try:
            results[number] = [predictor.predict(text)["entities"] for text in texts]
        except Exception as error:  # noqa: BLE001 (reported below)
            errors.append(error)
    threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and all(found == expected for found in results.values())


def test_a_hostile_message_is_answered_quickly(entity_run):
    predictor = Predictor.from_dir(entity_run, cache_size=0)
    predictor.predict("warm up")
    for text in ("a" * 100_000, "a " * 50_000, "[" * 100_000, "1k " * 30_000):
        started = time.perf_counter()
        result = predictor.predict(text)
        assert time.perf_counter() - started < 2.0
        assert all(e["end"] <= 2000 for e in result["entities"])


def test_a_changed_entity_file_is_refused_and_noticed(entity_run, tmp_path):
    import shutil
    copy = tmp_path / "model"
    shutil.copytree(entity_run / ".runs" / "current", copy)
    predictor = Predictor.from_dir(copy)
    labeller = copy / artifacts.ENTITY_LABELLER_FILE
    raw = labeller.read_bytes()
    labeller.write_bytes(raw[:100] + bytes([raw[100] ^ 1]) + raw[101:])
    assert predictor.is_stale()
    with pytest.raises(ArtifactError, match="does not match"):
        Predictor.from_dir(copy)
    document = json.loads((entity_run / artifacts.ENTITIES_FILE).read_text())
    document["labeller"]["file"] = "../../etc/passwd"
    shutil.copy(entity_run / artifacts.ENTITY_LABELLER_FILE, labeller)
    (copy / artifacts.ENTITIES_FILE).write_text(json.dumps(document))
    with pytest.raises(ArtifactError):
        Predictor.from_dir(copy)


def test_get_predictor_and_the_command_line_answer_entities(entity_run):
    paths = (entity_run / artifacts.MODEL_FILE, entity_run / artifacts.PREPROCESSOR_FILE)
    result = predict_intent_improved("find kotlin jobs in Paris", *paths, strict=True)
    assert ("skill", "kotlin", 5, 11) in [k[:4] for k in entity_keys(result["entities"])]
    assert get_predictor(*paths).predict("find kotlin jobs in Paris")["entities"] == \
        result["entities"]
    completed = run_script("-m", "intentkit", "predict", "-m", entity_run,
                           "find kotlin jobs in Paris")
    assert completed.returncode == 0, completed.stderr
    assert json.loads(completed.stdout.splitlines()[-1])["entities"] == result["entities"]


def test_the_service_answers_entities_in_every_shape(entity_run):
    from live_server import call, require, serving
    require("fastapi")
    from intentkit.serving.app import create_app
    text = "salary of a nurse in NYC 🙂"
    expected = Predictor.from_dir(entity_run).predict(text)["entities"]
    assert any(e["entity"] == "location" and e["value"] == "New York" for e in expected)
    with serving(create_app(entity_run / artifacts.MODEL_FILE,
                            entity_run / artifacts.PREPROCESSOR_FILE)) as url:
        status, body = call(url + "/predict", "POST", {"text": text})
        assert status == 200 and body["entities"] == expected
        status, body = call(url + "/predict/batch", "POST", {"texts": [text, "hi"]})
        assert status == 200 and [r["entities"] for r in body["results"]] == [expected, []]
        status, body = call(url + "/model/parse", "POST", {"text": text})
        assert status == 200 and body["entities"] == expected
        started = time.perf_counter()
        status, body = call(url + "/predict", "POST", {"text": "a" * 10_000})
        assert status == 200 and time.perf_counter() - started < 5
