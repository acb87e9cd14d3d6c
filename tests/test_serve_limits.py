"""Issue 31, the service under heavy but legal traffic: /health never waits for predictions,
admission is bounded (503 + Retry-After), stalled bodies and request heads time out, Host is
checked, a 422 stays small, X-Forwarded-For counts only from configured proxies, SIGTERM ends
within its timeout."""
import concurrent.futures
import http.client
import json
import os
import signal
import socket
import subprocess
import threading
import time

import pytest
from conftest import intentkit_command
from live_server import call, exchange, require, serving

require("fastapi")
require("uvicorn")

from intentkit.errors import ConfigError
from intentkit.models import numpy_runtime
from intentkit.serving import review
from intentkit.serving.app import create_app
from intentkit.serving.http_protocol import HeadDeadlineProtocol, protocol_factory
from intentkit.serving.predictor import Predictor

MAX_IN_FLIGHT = 2


@pytest.fixture(scope="module")
def service(trained):
    app = create_app(trained["model"], trained["preprocessor"], max_in_flight=MAX_IN_FLIGHT,
                     read_timeout_s=1.0)
    with serving(app) as url:
        yield url


def test_health_answers_while_more_predictions_arrive_than_the_pool_has_threads(
        service, monkeypatch):
    release, started = threading.Event(), []
    answer = Predictor.predict_batch

    def held(self, texts, *args, **kwargs):
        started.append(1)
        release.wait(60)
        return answer(self, texts, *args, **kwargs)
    monkeypatch.setattr(Predictor, "predict_batch", held)
    requests = 45  # more than the 40 threads of the pool
    with concurrent.futures.ThreadPoolExecutor(requests) as pool:
        futures = [pool.submit(exchange, service + "/predict/batch", "POST",
                               {"texts": ["what does a tester earn"]}) for _ in range(requests)]
        try:
            deadline = time.monotonic() + 60
            while (sum(f.done() for f in futures) < requests - MAX_IN_FLIGHT
                   and time.monotonic() < deadline):
                time.sleep(0.05)
            connection = http.client.HTTPConnection(service.removeprefix("http://"), timeout=5)
            connection.request("GET", "/health")
            assert connection.getresponse().status == 200
            refused = [f.result(timeout=30) for f in futures if f.done()]
        finally:
            release.set()
        answers = [f.result(timeout=60) for f in futures]
    assert len(started) == MAX_IN_FLIGHT  # each admitted request ran once
    busy = [headers for status, _, headers in answers if status == 503]
    assert len(busy) == requests - MAX_IN_FLIGHT and len(refused) >= len(busy)
    assert all(headers["Retry-After"] == "1" for headers in busy)
    assert sum(status == 200 for status, _, _ in answers) == MAX_IN_FLIGHT


def test_a_stalled_request_body_is_cut_off(service):
    host, port = service.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=15) as connection:
        connection.sendall(b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                           b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
        reply = connection.recv(4096)  # the old service waited for ever (socket timeout)
    assert reply.startswith(b"HTTP/1.1 408")


@pytest.mark.parametrize("host, status", [("evil.example", 400), ("localhost", 200),
                                          ("127.0.0.1", 200), ("attacker.test:80", 400)])
def test_only_local_host_names_are_answered_by_default(service, host, status):
    connection = http.client.HTTPConnection(service.removeprefix("http://"), timeout=30)
    connection.putrequest("GET", "/health", skip_host=True)
    connection.putheader("Host", host)
    connection.endheaders()
    assert connection.getresponse().status == status


def test_configured_host_names_are_answered(trained):
    app = create_app(trained["model"], trained["preprocessor"], allowed_hosts=["bot.example"])
    with serving(app) as url:
        connection = http.client.HTTPConnection(url.removeprefix("http://"), timeout=30)
        connection.putrequest("GET", "/health", skip_host=True)
        connection.putheader("Host", "bot.example")
        connection.endheaders()
        assert connection.getresponse().status == 200
    with pytest.raises(ConfigError, match="allowed host"):
        create_app(trained["model"], trained["preprocessor"], allowed_hosts=["a/b"])


def test_a_body_of_many_unknown_keys_gets_a_small_422(service):
    body = {"text": "hi", **{f"unknown_key_{i:06d}": 1 for i in range(30_000)}}  # ~0.6 MB
    raw = json.dumps(body).encode()
    assert len(raw) > 500_000
    status, answer, headers = exchange(service + "/predict", "POST", raw=raw)
    assert status == 422 and int(headers["Content-Length"]) < 2000
    assert "more problems" in answer["detail"]


def test_a_model_the_numpy_runtime_cannot_run_is_503_not_500(trained, monkeypatch):
    def unsupported(path):
        raise NotImplementedError("layer X is not supported by the NumPy runtime")
    monkeypatch.setattr(numpy_runtime, "_load_numpy_model", unsupported)
    # cache_size 7: a cache key of its own, not a Predictor loaded by another test
    app = create_app(trained["model"], trained["preprocessor"], runtime="numpy", cache_size=7)
    with serving(app, ready_status=503) as url:
        status, body = call(url + "/predict", "POST", {"text": "hello"})
    assert status == 503 and "no model is loaded" in body["detail"]


def test_a_bad_review_setting_stops_the_start(trained, monkeypatch, tmp_path):
    monkeypatch.setenv(review.ENV_LOG, str(tmp_path / "queue.jsonl"))
    monkeypatch.setenv(review.ENV_MAX_BYTES, "1MB")
    with pytest.raises(ConfigError, match=review.ENV_MAX_BYTES):
        create_app(trained["model"], trained["preprocessor"])


# --- the real command: proxies, shutdown --------------------------------------------------------

def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture()
def command_service(trained, tmp_path):
    port = free_port()
    process = subprocess.Popen(
        [intentkit_command(), "serve", "--model-dir", str(trained["out"]), "--runtime", "numpy",
         "--port", str(port), "--feedback", str(tmp_path / "feedback.jsonl"),
         "--shutdown-timeout", "1", "--max-in-flight", "4", "--header-timeout", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        assert process.poll() is None, process.stdout.read()
        try:
            if call(url + "/health")[0] == 200:
                break
        except OSError:
            pass
        assert time.monotonic() < deadline, "the service did not start"
        time.sleep(0.2)
    yield process, url
    if process.poll() is None:
        process.kill()
    process.wait(timeout=30)


def test_x_forwarded_for_from_an_untrusted_client_does_not_reset_the_rate_limit(
        command_service):
    _, url = command_service
    correction = {"text": "what would a plumber earn", "predicted": "greeting",
                  "correct": "salary"}
    statuses = [call(url + "/feedback", "POST", correction,
                     headers={"X-Forwarded-For": f"10.0.{i}.1"})[0] for i in range(30)]
    assert statuses.count(201) <= 6 and statuses.count(429) >= 24  # burst 5, rate 2/s


def test_sigterm_ends_the_service_within_its_shutdown_timeout(command_service):
    process, url = command_service
    batch = {"texts": [("salary of a data engineer in berlin " * 90)[:3000]] * 100}
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        for _ in range(4):
            pool.submit(call, url + "/predict/batch", "POST", batch)
        time.sleep(2)  # the batches are being answered
        started = time.monotonic()
        os.kill(process.pid, signal.SIGTERM)
        process.wait(timeout=60)
        assert time.monotonic() - started < 20


def closed_by_server_within(connection, seconds):
    """Seconds until the server closed `connection` (recv returns b""), or None if it stayed
    open for `seconds`."""
    connection.settimeout(seconds)
    started = time.monotonic()
    try:
        while connection.recv(4096):
            pass  # a response to an earlier, complete request
    except TimeoutError:
        return None
    except ConnectionError:
        pass  # closed with a reset (unread bytes were left): closed all the same
    return time.monotonic() - started


def open_connection(url):
    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=10)


@pytest.mark.parametrize("sent", [b"", b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n"],
                         ids=["nothing", "half a head"])
def test_a_request_head_that_does_not_arrive_in_time_closes_the_connection(
        command_service, sent):
    _, url = command_service
    with open_connection(url) as connection:
        connection.sendall(sent)
        closed_after = closed_by_server_within(connection, 8)
    assert closed_after is not None and closed_after < 5  # --header-timeout 1


def test_a_trickled_head_after_a_keep_alive_request_is_cut_off_too(command_service):
    _, url = command_service
    with open_connection(url) as connection:
        connection.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert connection.recv(4096).startswith(b"HTTP/1.1 200")
        started = time.monotonic()
        closed = False
        for _ in range(8):  # one header byte every 0.5 s: each byte resets no deadline
            try:
                connection.sendall(b"X")
            except OSError:
                closed = True
                break
            connection.settimeout(0.5)
            try:
                if connection.recv(4096) == b"":
                    closed = True
                    break
            except TimeoutError:
                pass
            except ConnectionError:  # closed with a reset: our unread header bytes
                closed = True
                break
        assert closed and time.monotonic() - started < 4


def test_a_prompt_request_is_answered_as_before(command_service):
    _, url = command_service
    assert call(url + "/health")[0] == 200


def test_the_protocol_factory_survives_pickling_for_worker_processes():
    import pickle
    factory = pickle.loads(pickle.dumps(protocol_factory(2.5)))
    assert factory.func is HeadDeadlineProtocol and factory.keywords == {"head_timeout_s": 2.5}
