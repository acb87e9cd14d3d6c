"""The HTTP service, through real requests to a server on a loopback port."""
import http.client
import json
import select
import urllib.error
import urllib.request

import pytest
from live_server import call, exchange, require, serving

require("fastapi")
require("uvicorn")

from intentkit.errors import ConfigError
from intentkit.serving.app import RateLimit, create_app, read_token
from intentkit.serving.predictor import get_predictor

MESSAGES = ["hello there friend", "what is the salary of a tester", "check my cv please"]
CORRECTION = {"text": "what would a plumber earn", "predicted": "greeting", "correct": "salary"}
TOKEN = "test-token-0123456789abcdef"


@pytest.fixture(scope="module")
def service(trained, tmp_path_factory):
    feedback = tmp_path_factory.mktemp("serve") / "feedback.jsonl"
    # No rate limit to speak of here: these tests send feedback faster than a person would.
    app = create_app(trained["model"], trained["preprocessor"], feedback_path=feedback,
                     max_text_chars=200, max_batch=5, feedback_rate=1000, feedback_burst=1000)
    with serving(app) as url:
        yield {"url": url, "feedback": feedback,
               "predictor": get_predictor(trained["model"], trained["preprocessor"])}


def test_health_names_the_model_version(service, trained):
    status, body = call(service["url"] + "/health")
    assert status == 200
    assert body["status"] == "ok" and body["labels"] == 4 and body["runtime"] == "numpy"
    assert body["model"]["run"] == trained["preprocessor"].resolve().parent.name
    manifest = json.loads((trained["out"] / "manifest.json").read_text())
    assert body["model"]["created"] == manifest["created"]
    # Started without --ensemble/--single: the run's best model on validation answers.
    assert body["model"]["type"] == manifest["default_model"] and body["feedback"] is True


def test_predict_answers_like_the_predictor(service):
    for text in MESSAGES:
        status, body = call(service["url"] + "/predict", "POST", {"text": text, "top_k": 2})
        assert status == 200
        expected = service["predictor"].predict(text, top_k=2)
        assert body["intent"] == expected["intent"] and body["fallback"] == expected["fallback"]
        assert [c["intent"] for c in body["top_k"]] == [c["intent"] for c in expected["top_k"]]
        assert body["confidence"] == pytest.approx(expected["confidence"], abs=1e-6)


def test_batch_answers_each_text_in_order(service):
    status, body = call(service["url"] + "/predict/batch", "POST", {"texts": MESSAGES})
    assert status == 200
    assert [r["intent"] for r in body["results"]] == [
        service["predictor"].predict(text)["intent"] for text in MESSAGES]


@pytest.mark.parametrize("path, body, status, detail", [
    ("/predict", {"text": ""}, 422, "text: String should have at least 1 character"),
    ("/predict", {"text": "x" * 201}, 422, "text: String should have at most 200 characters"),
    ("/predict", {"text": 42}, 422, "text: Input should be a valid string"),
    ("/predict", {"txt": "hi"}, 422, "text: Field required; txt: Extra inputs are not permitted"),
    ("/predict", {"text": "hi", "top_k": 0}, 422, "top_k: Input should be greater than or equal"),
    ("/predict", {"text": "hi", "top_k": True}, 422, "top_k: Input should be a valid integer"),
    ("/predict", {"text": "hi", "top_k": "3"}, 422, "top_k: Input should be a valid integer"),
    ("/predict", {"text": "hi", "top_k": 3.0}, 422, "top_k: Input should be a valid integer"),
    ("/predict/batch", {"texts": ["hi"] * 6}, 422, "texts: List should have at most 5 items"),
    ("/predict/batch", {"texts": []}, 422, "texts: List should have at least 1 item"),
    ("/predict/batch", {"texts": ["hi", ""]}, 422, "texts.1: String should have at least 1"),
    ("/predict", b'{"text": "hi"', 422, "the request body is not valid JSON"),
    ("/predict", b'{"text": "caf\xe9"}', 422,
     "the request body is not valid JSON ('utf-8' codec can't decode byte 0xe9"),
    ("/predict", b"[" * 5000, 422,
     "the request body is not valid JSON (maximum recursion depth exceeded"),
    ("/predict/batch", {"texts": ["x" * 200] * 1200}, 413,
     "request body of 244,811 bytes is over the limit of 10,096; send at most 5 texts"),
    ("/feedback", {"text": "hi", "predicted": "greeting", "correct": "jokes"}, 422,
     "correct intent 'jokes' is not one of the model's intents: goodbye, greeting, resume"),
    ("/feedback", {"text": "  ", "predicted": "greeting", "correct": "salary"}, 422,
     "text is empty"),
    ("/feedback", {**CORRECTION, "confirmed": "yes"}, 422,
     "confirmed: Input should be a valid boolean"),
    ("/feedback", {**CORRECTION, "confirmed": True}, 422,
     "confirmed: rows sent over HTTP are recorded unconfirmed"),
    ("/nowhere", {"text": "hi"}, 404, "Not Found"),
])
def test_bad_requests_get_a_clear_4xx(service, path, body, status, detail):
    def recorded():
        return service["feedback"].read_text() if service["feedback"].exists() else ""
    before = recorded()
    raw = body if isinstance(body, bytes) else None
    answer = call(service["url"] + path, "POST", None if raw else body, raw)
    assert answer == (status, {"detail": answer[1]["detail"]})
    assert answer[1]["detail"].startswith(detail)
    assert "\n" not in answer[1]["detail"]
    assert recorded() == before


def test_chunked_body_over_the_limit_is_refused_while_it_streams(service):
    """A chunked body has no Content-Length: the limit counts the bytes as they arrive, and the
    413 comes while the client is still sending, long before the 64 MB it would send."""
    host, port = service["url"].removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    connection.connect()
    sent = 0

    def body():
        nonlocal sent
        yield b'{"texts": ["'
        while sent < 64 * 2**20:
            if select.select([connection.sock], [], [], 0)[0]:
                return  # the server has answered: stop sending
            sent += 2**16
            yield b"x" * 2**16
    connection.request("POST", "/predict/batch", body(), encode_chunked=True, headers={
        "Content-Type": "application/json", "Transfer-Encoding": "chunked"})
    response = connection.getresponse()
    answer = (response.status, json.loads(response.read()))
    connection.close()
    assert answer == (413, {"detail": "request body is over the limit of 10,096 bytes; send at "
                                      "most 5 texts of 200 characters"})
    # Loopback socket buffers hold a few MB in flight before the client sees the answer.
    assert sent < 16 * 2**20, f"the server read {sent:,} bytes before answering"
    assert call(service["url"] + "/health")[0] == 200


def test_feedback_is_recorded_unconfirmed_with_the_model_version(service, trained):
    """Anyone who reaches the port can send feedback: a person confirms a row before training
    uses it."""
    status, body = call(service["url"] + "/feedback", "POST", CORRECTION)
    assert status == 201
    rows = [json.loads(line) for line in service["feedback"].read_text().splitlines()]
    assert rows[-1] == body["recorded"]
    assert (rows[-1]["text"], rows[-1]["predicted"], rows[-1]["correct"]) == (
        CORRECTION["text"], "greeting", "salary")
    assert rows[-1]["confirmed"] is False
    assert rows[-1]["model"] == trained["preprocessor"].resolve().parent.name


def test_feedback_needs_the_token_when_one_is_set(trained, tmp_path):
    feedback = tmp_path / "feedback.jsonl"
    app = create_app(trained["model"], trained["preprocessor"], feedback_path=feedback,
                     token=TOKEN)
    with serving(app) as url:
        refused = [exchange(url + "/feedback", "POST", CORRECTION, headers=headers) for headers in (
            None, {"Authorization": "Bearer " + "x" * len(TOKEN)},
            {"Authorization": "Bearer " + TOKEN[:-1]}, {"Authorization": "Basic " + TOKEN})]
        accepted = call(url + "/feedback", "POST", CORRECTION,
                        headers={"Authorization": "Bearer " + TOKEN})
        predicted = call(url + "/predict", "POST", {"text": "hi"})
    for status, body, headers in refused:
        assert (status, body) == (401, {"detail": "feedback needs a token: send Authorization: "
                                                  "Bearer <token>"})
        assert headers["WWW-Authenticate"] == "Bearer"
    assert accepted[0] == 201 and predicted[0] == 200, "the token guards feedback only"
    assert len(feedback.read_text().splitlines()) == 1
    with pytest.raises(ConfigError, match="at least 16 characters"):
        create_app(trained["model"], trained["preprocessor"], token="short")


def test_token_comes_from_the_token_file_or_the_environment(tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    assert read_token(token_file, {"INTENTKIT_TOKEN": "other-token-0123456789"}) == TOKEN
    assert read_token(None, {"INTENTKIT_TOKEN": TOKEN}) == TOKEN
    assert read_token(None, {}) is None
    token_file.write_text("\n")
    with pytest.raises(ConfigError, match="token is empty"):
        read_token(token_file, {})
    with pytest.raises(ConfigError, match="INTENTKIT_TOKEN is set but empty"):
        read_token(None, {"INTENTKIT_TOKEN": ""})


def test_feedback_writes_are_rate_limited_per_client(trained, tmp_path):
    feedback = tmp_path / "feedback.jsonl"
    app = create_app(trained["model"], trained["preprocessor"], feedback_path=feedback,
                     feedback_rate=0.01, feedback_burst=2)  # a burst of 2, then one per 100 s
    with serving(app) as url:
        answers = [exchange(url + "/feedback", "POST", CORRECTION) for _ in range(3)]
    assert [status for status, _, _ in answers] == [201, 201, 429]
    _, body, headers = answers[2]
    wait = int(headers["Retry-After"])
    assert 90 <= wait <= 100
    assert body == {"detail": f"too many feedback requests from this client; retry in {wait} s"}
    assert len(feedback.read_text().splitlines()) == 2


def test_rate_limit_forgets_refilled_buckets_only():
    """Many client addresses cannot grow the buckets without bound, nor reset a busy client."""
    fast = RateLimit(rate=1e9, burst=1, max_clients=2)
    assert [fast.wait(client) for client in "abc"] == [0, 0, 0]
    assert list(fast.buckets) == ["c"], "a and b refilled within a nanosecond"
    slow = RateLimit(rate=1e-3, burst=1, max_clients=2)
    assert [slow.wait(client) for client in "abc"] == [0, 0, 0]
    assert slow.wait("a") > 900, "a bucket still refilling is kept"


def test_full_feedback_file_refuses_new_rows(trained, tmp_path):
    feedback = tmp_path / "feedback.jsonl"
    feedback.write_text(json.dumps({**CORRECTION, "text": "x" * 3000, "confirmed": False}) + "\n")
    before = feedback.read_bytes()
    app = create_app(trained["model"], trained["preprocessor"], feedback_path=feedback,
                     max_feedback_bytes=len(before) + 50)
    with serving(app) as url:
        answer = call(url + "/feedback", "POST", CORRECTION)
    assert answer == (507, {"detail": f"the feedback file is full ({len(before) + 50:,} bytes): "
                                      "nothing recorded until its rows are reviewed and moved"})
    assert feedback.read_bytes() == before


def test_feedback_off_and_missing_model_are_clear(trained, tmp_path, caplog):
    with serving(create_app(trained["model"], trained["preprocessor"])) as url:
        status, body = call(url + "/feedback", "POST",
                            {"text": "hi", "predicted": "greeting", "correct": "salary"})
        assert (status, body["detail"]) == (
            404, "feedback is off: start the service with --feedback-out FILE")
    missing = tmp_path / "missing.pickle"
    with serving(create_app(trained["model"], missing), ready_status=503) as url:
        for path, body in (("/health", None), ("/predict", {"text": "hi"})):
            status, answer = call(url + path, "POST" if body else "GET", body)
            assert (status, answer) == (503, {"detail": "no model is loaded; see the server log"})
    assert f"model not available: {tmp_path}" in caplog.text, "the path is in the log"
    with pytest.raises(ConfigError, match="--max-batch must be at least 1"):
        create_app(trained["model"], trained["preprocessor"], max_batch=0)


def status_of(url):
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_api_docs_are_off_unless_asked(service, trained):
    """/docs and /redoc load their scripts from a CDN: off unless --docs."""
    assert [status_of(service["url"] + path) for path in ("/docs", "/redoc", "/openapi.json")] \
        == [404, 404, 200]
    with serving(create_app(trained["model"], trained["preprocessor"], docs=True)) as url:
        assert [status_of(url + path) for path in ("/docs", "/redoc")] == [200, 200]


def test_page_is_served(service):
    with urllib.request.urlopen(service["url"] + "/", timeout=30) as response:
        page = response.read().decode()
    assert response.headers["content-type"].startswith("text/html")
    assert 'id="message"' in page and "http" not in page.split("<script>")[1], \
        "the page must not load anything from elsewhere"


def test_ensemble_service_answers_through_the_pretrained_member(trained):
    """The default published layout: the ensemble's transformer member reads MiniLM embeddings."""
    app = create_app(trained["model"], trained["preprocessor"], use_ensemble=True)
    predictor = get_predictor(trained["model"], trained["preprocessor"], use_ensemble=True)
    with serving(app) as url:
        status, health = call(url + "/health")
        assert status == 200 and health["model"]["type"] == "ensemble"
        status, body = call(url + "/predict/batch", "POST", {"texts": MESSAGES})
    assert status == 200
    for result, text in zip(body["results"], MESSAGES):
        expected = predictor.predict(text)
        assert result["model_type"] == "ensemble" and result["intent"] == expected["intent"]
        assert result["confidence"] == pytest.approx(expected["confidence"], abs=1e-6)
