"""`intentkit serve --workers 2`, started as a user starts it: two worker processes answer on one
port, and a run published while they answer is picked up by both without a failed request."""
import contextlib
import dataclasses
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import intentkit_command, republish
from live_server import call, require

require("fastapi")
require("uvicorn")

from intentkit.cli import main
from intentkit.errors import ConfigError
from intentkit.serving.app import SETTINGS_VARIABLE, ServeSettings

pytestmark = pytest.mark.slow  # trains models (minutes)

TEXTS = ["what does a data scientist earn", "hello there friend", "check my resume please"]


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def serve_workers(out, tmp_path, workers=2):
    """`intentkit serve --workers N` in its own process group; yields its URL once it answers."""
    port = free_port()
    log = tmp_path / "serve.log"
    with open(log, "wb") as output:
        process = subprocess.Popen(
            [intentkit_command(), "serve", "--model-dir", str(out), "--runtime", "numpy",
             "--workers", str(workers), "--port", str(port),
             "--feedback", str(tmp_path / "feedback.jsonl")],
            stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "not answering after 120 s:\n" + log.read_text()
            with contextlib.suppress(OSError):
                if call(url + "/health")[0] == 200:
                    break
            time.sleep(0.2)
        yield url, process
    finally:
        process.send_signal(signal.SIGTERM)  # the parent stops its workers
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def health_until(url, done, seconds=60):
    """GET /health on several connections at once (each may reach either worker) until
    done(answers) holds; the answers, as (pid, run) pairs."""
    def one(_):
        status, body = call(url + "/health")
        assert status == 200, body
        return body["pid"], body["model"]["run"]
    answers = set()
    deadline = time.monotonic() + seconds
    with ThreadPoolExecutor(4) as pool:
        while not done(answers) and time.monotonic() < deadline:
            answers.update(pool.map(one, range(4)))
    return answers


def test_two_workers_answer_and_both_pick_up_a_published_run(trained, tmp_path):
    out = tmp_path / "model"
    shutil.copytree(trained["out"], out, symlinks=True)
    first_run = republish(out, 0.0)
    with serve_workers(out, tmp_path) as (url, process):
        seen = health_until(url, lambda answers: len({pid for pid, _ in answers}) >= 2)
        pids = {pid for pid, _ in seen}
        assert len(pids) == 2 and process.pid not in pids, seen
        assert {run for _, run in seen} == {first_run}

        # Clients keep asking, singly and in batches, while a retrain publishes another run.
        answers, stop = [], threading.Event()  # (sent, received, status, fallback) per answer

        def ask(client):
            while not stop.is_set():
                sent = time.monotonic()
                try:
                    if client % 2:
                        status, body = call(url + "/predict/batch", "POST", {"texts": TEXTS})
                    else:
                        status, body = call(url + "/predict", "POST", {"text": TEXTS[client]})
                except Exception as error:  # noqa: BLE001 (a refused connection is a failure)
                    status, body = repr(error), {}
                received = time.monotonic()
                answers.extend((sent, received, status, result.get("fallback"))
                               for result in body.get("results", [body]))
        clients = [threading.Thread(target=ask, args=(n,)) for n in range(4)]
        for client in clients:
            client.start()
        try:
            time.sleep(1)
            published = time.monotonic()
            second_run = republish(out, 1.01)
            seen = health_until(url, lambda answers: {pid for pid, run in answers
                                                      if run == second_run} >= pids)
            switched = time.monotonic()  # both workers have answered from the new run
            time.sleep(1)
        finally:
            stop.set()
            for client in clients:
                client.join()
    assert {pid for pid, run in seen if run == second_run} == pids, \
        f"not every worker reported run {second_run} within 60 s: {seen}"
    failed = [answer for answer in answers if answer[2] != 200]
    assert answers and not failed, failed[:5]
    before = [fallback for _, received, _, fallback in answers if received < published]
    after = [fallback for sent, _, _, fallback in answers if sent > switched]
    assert before and not any(before), "the first run (threshold 0) never answers the fallback"
    assert after and all(after), "an answer from the old run after both workers had the new one"


def test_settings_reach_workers_through_the_environment_without_the_token(tmp_path,
                                                                          monkeypatch):
    monkeypatch.chdir(tmp_path)
    token = "test-token-0123456789abcdef"
    (tmp_path / "token").write_text(token)
    settings = ServeSettings("m/model.h5", "m/model.pickle", True, "numpy", 5, "feedback.jsonl",
                             "token", False, {"max_batch": 7, "feedback_rate": 0.5}, True)
    environ = {}
    settings.to_environment(environ)
    assert token not in environ[SETTINGS_VARIABLE], "workers read the token from its file"
    monkeypatch.chdir("/")  # a worker started elsewhere reads the same files
    assert ServeSettings.from_environment(environ) == dataclasses.replace(
        settings, model_path=str(tmp_path / "m/model.h5"),
        preprocessor_path=str(tmp_path / "m/model.pickle"),
        feedback_path=str(tmp_path / "feedback.jsonl"), token_file=str(tmp_path / "token"))
    ServeSettings.from_environment(environ).create_app()  # reads the token: no error
    with pytest.raises(ConfigError, match=f"{SETTINGS_VARIABLE} is not set"):
        ServeSettings.from_environment({})


def test_workers_must_be_at_least_one(capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["serve", "--workers", "0"])
    assert stopped.value.code == 2 and "--workers: must be at least 1" in capsys.readouterr().err
