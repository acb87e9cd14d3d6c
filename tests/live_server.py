"""Test helpers for the HTTP service: optional extras, a real server on a loopback port."""
import contextlib
import importlib
import json
import os
import socket
import threading
import time
import urllib.error
import urllib.request

import pytest


def missing(message):
    """Skip the tests of an optional extra that is not installed, saying how to install it; fail
    instead when INTENTKIT_REQUIRE_EXTRAS=1 (CI sets it: nothing may be skipped there)."""
    if os.environ.get("INTENTKIT_REQUIRE_EXTRAS") == "1":
        pytest.fail(message, pytrace=False)
    pytest.skip(message, allow_module_level=True)


def require(module):
    """Import a module of requirements-serve.txt, or skip (see `missing`)."""
    try:
        return importlib.import_module(module)
    except ImportError:
        missing(f"{module} is missing: pip install -r requirements-serve.txt")


def exchange(url, method="GET", body=None, raw=None, headers=None):
    """(status, decoded JSON, response headers) of one real HTTP request; 4xx/5xx are returned,
    not raised."""
    data = raw if raw is not None else None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json", **(headers or {})}
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read()), response.headers
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read()), error.headers


def call(url, method="GET", body=None, raw=None, headers=None):
    """(status, decoded JSON) of one real HTTP request (see `exchange`)."""
    return exchange(url, method, body, raw, headers)[:2]


@contextlib.contextmanager
def serving(app, ready_status=200):
    """Run `app` with uvicorn in a thread on 127.0.0.1 (a free port); yield its base URL once
    GET /health answers `ready_status`."""
    import uvicorn
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    try:
        deadline = time.monotonic() + 60
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
            time.sleep(0.05)
        assert call(url + "/health")[0] == ready_status
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        listener.close()
