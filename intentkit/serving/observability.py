"""What a team watches: Prometheus metrics (GET /metrics) and structured request logs.

Metrics (prometheus-client, in the `serve` extra), labelled by endpoint, variant and model
version: requests (by status), latency (a histogram), fallback answers, message-cache lookups
(hits and misses: the hit rate). With `intentkit serve --workers N` each worker writes its values
into a shared directory (prometheus-client's multiprocess mode, set up by the command) and any
worker answers the sum.

Request logs: one JSON line per request (time, endpoint, status, latency, variant, model version,
intent, confidence, fallback); the message texts only when asked for (`--log-texts`): chat
messages carry personal data.
"""
import json
import os
import threading
from datetime import UTC, datetime

from ..errors import ConfigError

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    """The service's Prometheus metrics, in their own registry (one per app)."""

    def __init__(self, multiprocess_dir=None):
        try:
            import prometheus_client
        except ImportError:
            raise ConfigError("/metrics needs prometheus-client: pip install "
                              "'intentkit[serve]' (or start the service with --no-metrics)") \
                from None
        self.prometheus = prometheus_client
        self.multiprocess_dir = multiprocess_dir
        self.registry = prometheus_client.CollectorRegistry()
        labels = ("endpoint", "variant", "model_version")
        self.requests = prometheus_client.Counter(
            "intentkit_requests", "Requests answered", (*labels, "status"),
            registry=self.registry)
        self.latency = prometheus_client.Histogram(
            "intentkit_request_latency_seconds", "Time to answer a request", labels,
            buckets=LATENCY_BUCKETS, registry=self.registry)
        self.answers = prometheus_client.Counter(
            "intentkit_answers", "Messages classified", ("variant", "model_version"),
            registry=self.registry)
        self.fallbacks = prometheus_client.Counter(
            "intentkit_fallbacks", "Messages answered with the fallback intent",
            ("variant", "model_version"), registry=self.registry)
        self.cache = prometheus_client.Counter(
            "intentkit_cache_lookups", "Message-cache lookups (hit rate: hit / all)",
            ("variant", "model_version", "result"), registry=self.registry)

    def observe(self, endpoint, status, seconds, variant="", model_version="", results=()):
        version = model_version or ""
        self.requests.labels(endpoint, variant, version, str(status)).inc()
        self.latency.labels(endpoint, variant, version).observe(seconds)
        if results:
            self.answers.labels(variant, version).inc(len(results))
            fallbacks = sum(bool(result.get("fallback")) for result in results)
            if fallbacks:
                self.fallbacks.labels(variant, version).inc(fallbacks)

    def count_cache(self, variant, model_version, hits, misses):
        if hits:
            self.cache.labels(variant, model_version or "", "hit").inc(hits)
        if misses:
            self.cache.labels(variant, model_version or "", "miss").inc(misses)

    def exposition(self):
        """(body, content type) of the metrics in Prometheus' text format."""
        registry = self.registry
        if self.multiprocess_dir:
            from prometheus_client import multiprocess
            registry = self.prometheus.CollectorRegistry()
            multiprocess.MultiProcessCollector(registry, path=self.multiprocess_dir)
        return self.prometheus.generate_latest(registry), self.prometheus.CONTENT_TYPE_LATEST


class RequestLog:
    """JSON lines appended to a file, one per request, each with a single write (lines of
    several workers never interleave); texts left out unless `with_texts`."""

    def __init__(self, path, with_texts=False):
        self.path, self.with_texts = path, with_texts
        self._lock = threading.Lock()
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600))
        except OSError as error:
            raise ConfigError(f"--request-log {path}: cannot write it ({error.strerror})") \
                from None

    def write(self, endpoint, status, seconds, variant=None, model_version=None, results=(),
              texts=(), user=None):
        row = {"time": datetime.now(UTC).isoformat(timespec="milliseconds"),
               "endpoint": endpoint, "status": status, "latency_ms": round(seconds * 1000, 3),
               "variant": variant, "model_version": model_version,
               "answers": [{"intent": r.get("intent"), "confidence": round(r["confidence"], 4),
                            "fallback": r.get("fallback")} for r in results
                           if "confidence" in r]}
        if user is not None:
            row["user"] = user_digest(user)  # which user, not who
        if self.with_texts:
            row["texts"] = list(texts)
        line = (json.dumps(row, ensure_ascii=False) + "\n").encode()
        with self._lock:
            descriptor = os.open(self.path, os.O_WRONLY | os.O_APPEND)
            try:
                os.write(descriptor, line)
            finally:
                os.close(descriptor)


def user_digest(user):
    import hashlib
    return hashlib.sha256(user.encode("utf-8", "surrogatepass")).hexdigest()[:16]
