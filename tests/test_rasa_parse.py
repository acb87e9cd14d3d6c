"""POST /model/parse: the drop-in for a bot wired to Rasa's HTTP API, checked against the response
schema Rasa documents (its OpenAPI spec, docs/static/spec/rasa.yml: ParseResult)."""
import jsonschema  # the test extra
import pytest
from live_server import call, require, serving

require("fastapi")
require("uvicorn")

from intentkit.serving.app import create_app
from intentkit.serving.predictor import get_predictor

# Rasa's `components.schemas` ParseResult, Intent and Entity (rasa.yml), as JSON Schema.
RASA_INTENT = {"type": "object", "required": ["confidence", "name"],
               "properties": {"confidence": {"type": "number"}, "name": {"type": "string"}}}
RASA_ENTITY = {"type": "object", "required": ["start", "end", "value", "entity"],
               "properties": {"start": {"type": "integer"}, "end": {"type": "integer"},
                              "value": {"type": "string"}, "entity": {"type": "string"},
                              "confidence": {"type": "number"}}}
RASA_PARSE_RESULT = {"type": "object", "required": ["text"],
                     "properties": {"entities": {"type": "array", "items": RASA_ENTITY},
                                    "intent": RASA_INTENT,
                                    "intent_ranking": {"type": "array", "items": RASA_INTENT},
                                    "text": {"type": "string"}}}


@pytest.fixture(scope="module")
def parse_service(trained):
    with serving(create_app(trained["model"], trained["preprocessor"])) as url:
        yield url, get_predictor(trained["model"], trained["preprocessor"])


@pytest.mark.parametrize("text", ["hello there friend", "what does a tester earn", "zzz qqq"])
def test_parse_answers_in_rasas_documented_shape(parse_service, text):
    url, predictor = parse_service
    status, body = call(url + "/model/parse", "POST", {"text": text})
    assert status == 200
    jsonschema.validate(body, RASA_PARSE_RESULT)
    # Every key a Rasa client reads is there (the schema requires only "text").
    assert set(body) == {"text", "intent", "entities", "intent_ranking"}
    expected = predictor.predict(text, top_k=10)
    assert body["text"] == text and body["entities"] == []
    assert body["intent"] == {"name": expected["intent"],
                              "confidence": pytest.approx(expected["confidence"], abs=1e-6)}
    assert [c["name"] for c in body["intent_ranking"]] == [c["intent"] for c in expected["top_k"]]
    confidences = [c["confidence"] for c in body["intent_ranking"]]
    assert confidences == sorted(confidences, reverse=True)


def test_parse_takes_rasas_request_and_refuses_a_bad_one(parse_service):
    url, _ = parse_service
    status, body = call(url + "/model/parse", "POST",
                        {"text": "hi", "message_id": "b2831e73-1407-4ba0-a861-0f30a42a2a5a"})
    assert status == 200 and body["message_id"] == "b2831e73-1407-4ba0-a861-0f30a42a2a5a"
    jsonschema.validate(body, RASA_PARSE_RESULT)
    assert call(url + "/model/parse", "POST", {"message": "hi"})[0] == 422
    assert call(url + "/model/parse", "POST", {"text": ""})[0] == 422


def test_examples_are_the_models_own_patterns(parse_service, trained):
    url, predictor = parse_service
    status, body = call(url + "/examples")
    assert status == 200 and body["examples"]
    patterns = {text for texts in predictor.examples.values() for text in texts}
    assert set(body["examples"]) <= patterns
    status, body = call(url + "/intents")
    assert body["threshold"] == pytest.approx(predictor.threshold)
