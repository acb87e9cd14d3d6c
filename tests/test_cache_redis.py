"""The message cache in a real Redis: shared between predictors (workers), scoped by model
version, bounded, expiring, and never an error when Redis is down."""
import logging
import time

import numpy as np
import pytest
from live_server import require
from redis_server import RedisServer

from intentkit import artifacts
from intentkit.errors import ConfigError
from intentkit.serving.cache_redis import RedisMessageCache, client_for, redis_cache_factory
from intentkit.serving.predictor import Answer, Predictor

require("redis")


@pytest.fixture
def redis_server(tmp_path):
    server = RedisServer(tmp_path).start()
    yield server
    server.stop()


BERLIN = {"entity": "location", "value": "Berlin", "start": 21, "end": 27, "confidence": 0.97,
          "extractor": "crf"}


def entry(seed):
    """An answer with every field set: entities and the rule survive the round trip too."""
    return Answer(True, np.random.default_rng(seed).random(4).astype(np.float32), 3, 2, "en",
                  0.9, (BERLIN,), "salary")


def test_entries_round_trip_and_are_scoped_by_version(redis_server):
    client = client_for(redis_server.url, timeout=1.0)
    old, new = RedisMessageCache(client, "run-1:single", 10), RedisMessageCache(
        client, "run-2:single", 10)
    old.put_many({"hi": entry(0)})
    [found] = old.get_many(["hi"])
    assert found._replace(probabilities=None) == entry(0)._replace(probabilities=None)
    assert np.array_equal(found.probabilities, entry(0).probabilities)
    assert found.probabilities.dtype == np.float32
    assert new.get_many(["hi"]) == [None]  # another version never answers from this one
    assert (old.hits, old.misses, new.hits, new.misses) == (1, 0, 0, 1)


def test_size_bound_drops_the_oldest_and_entries_expire(redis_server):
    client = client_for(redis_server.url, timeout=1.0)
    cache = RedisMessageCache(client, "run-1:single", size=3, ttl=1)
    for number in range(5):
        cache.put_many({f"message {number}": entry(number)})
    assert len(cache) == 3
    assert [e is not None for e in cache.get_many([f"message {n}" for n in range(5)])] == \
        [False, False, True, True, True]
    time.sleep(2.1)
    assert cache.get_many(["message 4"]) == [None]


def test_a_stopped_redis_is_a_miss_with_one_warning_never_an_error(redis_server, caplog):
    cache = RedisMessageCache(client_for(redis_server.url), "run-1:single", 10)
    cache.put_many({"hi": entry(0)})
    redis_server.stop()
    caplog.set_level(logging.WARNING)
    started = time.perf_counter()
    for _ in range(50):
        assert cache.get_many(["hi", "bye"]) == [None, None]
        cache.put_many({"bye": entry(1)})
    assert time.perf_counter() - started < 1.0  # no request waits more than a timeout
    warnings = [r for r in caplog.records if "Redis cache unavailable" in r.getMessage()]
    assert len(warnings) == 1
    assert cache.errors >= 1


def test_a_value_that_is_not_ours_is_a_miss(redis_server):
    client = client_for(redis_server.url, timeout=1.0)
    cache = RedisMessageCache(client, "run-1:single", 10)
    cache.put_many({"hi": entry(0)})
    for foreign in (b"", b"junk", b'{"dtype": "|O8"}\n12345678', b"\xff\n"):
        client.set(cache._key("hi"), foreign)
        assert cache.get_many(["hi"]) == [None]


def test_a_bad_cache_url_is_a_config_error():
    with pytest.raises(ConfigError, match="--cache-url 'http://x'"):
        client_for("http://x")


def test_a_second_predictor_answers_from_the_first_ones_entries(trained, redis_server):
    factory = redis_cache_factory(redis_server.url, size=100, timeout=1.0)
    paths = (trained["model"], trained["preprocessor"])
    first = Predictor(*paths, runtime="numpy", cache_factory=factory)
    second = Predictor(*paths, runtime="numpy", cache_factory=factory)  # another worker
    text = "what does a data scientist earn"
    answer = first.predict(text)
    assert first.cache.misses == 1 and second.cache.hits == 0
    assert second.predict(text) == answer
    assert second.cache.hits == 1
    run = (trained["out"] / artifacts.RUNS_DIR / artifacts.CURRENT_RUN).resolve().name
    assert second.cache.prefix.startswith(f"intentkit:{run}:")


def test_a_service_with_the_redis_cache_answers_every_request_while_redis_stops(trained,
                                                                                redis_server):
    require("fastapi")
    require("uvicorn")
    from live_server import call, serving

    from intentkit.serving.app import create_app
    app = create_app(trained["model"], trained["preprocessor"], runtime="numpy",
                     cache_url=redis_server.url)
    with serving(app) as url:
        # Until a repeated message is answered from Redis (a lookup slower than the cache's
        # few-ms timeout on a busy machine is a miss, and Redis is skipped for a second).
        before, deadline = [], time.monotonic() + 20
        while 'result="hit"' not in call_text(url + "/metrics") and time.monotonic() < deadline:
            before += [call(url + "/v1/predict", "POST", {"text": f"hello {n}"})
                       for n in range(3)]
        metrics = call_text(url + "/metrics")
        redis_server.stop()
        after = [call(url + "/v1/predict", "POST", {"text": f"hello {n % 3}"})
                 for n in range(12)]
    assert {status for status, _ in before + after} == {200}
    assert 'result="hit"' in metrics  # answered from Redis before it stopped
    assert [body["intent"] for _, body in after[:3]] == [body["intent"] for _, body in before[:3]]


def call_text(url):
    import urllib.request
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.read().decode()
