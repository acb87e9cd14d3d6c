"""The message cache in Redis, shared by every worker and replica (`--cache-url redis://...`).

Same interface as intentkit.serving.predictor.MessageCache (get_many / put_many / hits /
misses): each entry is a predictor.Answer, stored under a key scoped by the model's
version, so a new model never answers from an old one's cache. Entries expire after `ttl`
seconds, and at most `size` are kept per version (an index sorted by insertion time; the oldest
go first). Redis is an
optimisation, never a dependency of an answer: any Redis error or a reply slower than `timeout`
makes the call a miss (a warning, at most one per WARN_EVERY seconds), and Redis is then left
alone for BACKOFF seconds, so that a stopped server costs no request more than one timeout.
"""
import hashlib
import json
import logging
import threading
import time

import numpy as np

from ..errors import ConfigError
from .predictor import Answer

log = logging.getLogger(__name__)

DEFAULT_TTL = 3600
DEFAULT_TIMEOUT = 0.005  # seconds: a cache that answers slower than this is not worth waiting on
BACKOFF = 1.0
WARN_EVERY = 30.0
KEY_PREFIX = "intentkit"
MAX_CACHED_CHARS = 500  # as MessageCache: long texts are rarely repeated

_clients = {}
_clients_lock = threading.Lock()


def client_for(url, timeout=DEFAULT_TIMEOUT):
    """One Redis client (and connection pool) per URL and timeout in this process."""
    try:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry
    except ImportError:
        raise ConfigError("--cache-url needs the redis package: pip install 'intentkit[redis]'") \
            from None
    key = (url, timeout)
    with _clients_lock:
        if key not in _clients:
            try:
                _clients[key] = redis.Redis.from_url(
                    url, socket_timeout=timeout, socket_connect_timeout=timeout,
                    health_check_interval=0, retry=Retry(NoBackoff(), 0))
            except ValueError as error:
                raise ConfigError(f"--cache-url {url!r}: {error} (expected e.g. "
                                  "redis://localhost:6379/0)") from None
        return _clients[key]


def _encode(answer):
    """An Answer as bytes: a JSON line of its scalar fields and the dtype, then the
    probabilities' raw bytes."""
    header = {"has_words": bool(answer.has_words), "words": int(answer.words),
              "known_words": int(answer.known_words), "language": answer.language,
              "language_confidence": float(answer.language_confidence),
              "entities": list(answer.entities), "rule": answer.rule,
              "dtype": answer.probabilities.dtype.str}
    return json.dumps(header).encode() + b"\n" + answer.probabilities.tobytes()


# What _encode writes: probabilities are float32 or float64, little- or big-endian.
_DTYPES = {np.dtype(kind).newbyteorder(order).str for kind in ("f4", "f8") for order in "<>"}


def _decode(raw):
    """The Answer _encode wrote, or None for any other value (a shared Redis is not trusted to
    hold only ours: a foreign value is a miss, never an error or an object array)."""
    try:
        line, _, data = raw.partition(b"\n")
        header = json.loads(line)
        if header["dtype"] not in _DTYPES:
            return None
        language, rule = header["language"], header["rule"]
        answer = Answer(bool(header["has_words"]),
                        np.frombuffer(data, dtype=header["dtype"]).copy(),
                        int(header["words"]), int(header["known_words"]),
                        language if isinstance(language, str) else None,
                        float(header["language_confidence"]),
                        tuple(_entity(entity) for entity in header["entities"]),
                        rule if isinstance(rule, str) else None)
    except (AttributeError, KeyError, TypeError, ValueError, UnicodeDecodeError):
        return None
    return answer


def _entity(entity):
    """An entity dict of an answer (serving.entities), with its types checked."""
    return {"entity": str(entity["entity"]), "value": str(entity["value"]),
            "start": int(entity["start"]), "end": int(entity["end"]),
            "confidence": float(entity["confidence"]), "extractor": str(entity["extractor"])}


class RedisMessageCache:
    """The answers of one model version, in Redis (see the module's docstring)."""

    def __init__(self, client, scope, size, ttl=DEFAULT_TTL):
        if size < 0 or ttl < 1:
            raise ConfigError(f"the cache size must be >= 0 and its TTL >= 1 s, not {size} and "
                              f"{ttl}")
        self.client, self.size, self.ttl = client, size, ttl
        self.prefix = f"{KEY_PREFIX}:{scope}:"
        self.index = self.prefix + "index"
        self.hits = self.misses = self.errors = 0
        self._down_until = 0.0
        self._warned_at = -WARN_EVERY
        self._lock = threading.Lock()

    def __len__(self):
        try:
            return int(self.client.zcard(self.index))
        except Exception as error:  # noqa: BLE001 (see _failed)
            self._failed(error)
            return 0

    def _key(self, text):
        return self.prefix + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()

    def _available(self):
        return self.size > 0 and time.monotonic() >= self._down_until

    def _failed(self, error):
        now = time.monotonic()
        with self._lock:
            self.errors += 1
            self._down_until = now + BACKOFF
            warn = now - self._warned_at >= WARN_EVERY
            if warn:
                self._warned_at = now
        if warn:
            log.warning("Redis cache unavailable (%s: %s): answering without it, retrying in "
                        "%.0f s", type(error).__name__, error, BACKOFF)

    def _count(self, hits, misses):
        with self._lock:
            self.hits += hits
            self.misses += misses

    def get_many(self, texts):
        """The cached entry of each text, or None (all None when Redis fails)."""
        if not self._available() or not texts:
            self._count(0, len(texts))
            return [None] * len(texts)
        try:
            raw = self.client.mget([self._key(text) for text in texts])
        except Exception as error:  # noqa: BLE001 (any Redis failure is a miss, never an error)
            self._failed(error)
            self._count(0, len(texts))
            return [None] * len(texts)
        found = [None if value is None else _decode(value) for value in raw]
        hits = sum(entry is not None for entry in found)
        self._count(hits, len(found) - hits)
        return found

    def put_many(self, entries):
        """Stores {text: entry} with the TTL, then trims the version's entries to `size`."""
        entries = {text: entry for text, entry in entries.items()
                   if len(text) <= MAX_CACHED_CHARS}
        if not entries or not self._available():
            return
        now = time.time()
        try:
            pipeline = self.client.pipeline(transaction=False)
            keys = {}
            for text, entry in entries.items():
                key = self._key(text)
                keys[key] = now
                pipeline.set(key, _encode(entry), ex=self.ttl)
            pipeline.zadd(self.index, keys)
            pipeline.zremrangebyscore(self.index, "-inf", now - self.ttl)  # expired ones
            pipeline.expire(self.index, self.ttl)
            pipeline.zcard(self.index)
            count = pipeline.execute()[-1]
            if count > self.size:
                oldest = [key for key, _ in self.client.zpopmin(self.index, count - self.size)]
                if oldest:
                    self.client.delete(*oldest)
        except Exception as error:  # noqa: BLE001 (see get_many)
            self._failed(error)


def redis_cache_factory(url, size, ttl=DEFAULT_TTL, timeout=DEFAULT_TIMEOUT):
    """A function scope -> RedisMessageCache (what Predictor's `cache_factory` takes)."""
    client = client_for(url, timeout)

    def make(scope):
        return RedisMessageCache(client, scope, size, ttl)
    return make
