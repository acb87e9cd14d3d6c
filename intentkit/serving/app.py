"""HTTP service (optional extra: `pip install -r requirements-serve.txt`).

`intentkit serve --model-dir DIR [--feedback F] --port 8000` (or `python -m intentkit.serve`)
serves:
  GET  /               a page to try messages and send corrections
  GET  /health         status, model version (run, time), number of intents, runtime
  GET  /intents        the model's intents (for a correction menu), its fallback threshold and
                       margin (the page marks the threshold on its confidence bar)
  GET  /examples       a few of the model's own training patterns (the page's example messages)
  POST /predict        {"text": str, "top_k": int} -> the Predictor's result (with "response")
  POST /model/parse    {"text": str} -> Rasa's parse result ({"text", "intent": {"name",
                       "confidence"}, "entities", "intent_ranking"}): a drop-in for bots wired
                       to Rasa's HTTP API
  POST /predict/batch  {"texts": [str, ...], "top_k": int} -> {"results": [...]}
  POST /explain        {"text": str, "top_k": int} -> the result with its "explanation"
  POST /feedback       {"text", "predicted", "correct"} -> 201 and the recorded row, unconfirmed
  GET  /metrics        Prometheus metrics (intentkit.serving.observability)
Every path but / is also served under /v1/ (/v1/predict, ...: the versioned API, whose OpenAPI
schema is /v1/openapi.json); the unversioned paths stay as aliases. Requests may carry a `user`
or `session`: in an A/B test (intentkit.serving.variants) it picks the variant, the same one
for the same user; every answer carries `model_version` and `variant` (docs/lifecycle.md).
Bad requests get a 4xx with a one-line "detail" (422 for any malformed body); a model that cannot
be loaded gives 503, its reason in the log. Exposing it: README, "Deploying the service"; limits
and threat model: docs/security.md.

Staying up under load: /health runs on the event loop, never waiting for the prediction threads;
at most `max_in_flight` prediction requests are admitted at once (answered on one thread per
core), the next gets 503 with Retry-After; a request body that stalls for `read_timeout_s` is
cut off (408); a Host header not in `allowed_hosts` gets 400 (DNS rebinding: a web page cannot
reach a local service by renaming its own host to 127.0.0.1).

`--workers N` runs N processes: `ServeSettings` is what each one builds its app from, handed to
them in the environment (intentkit.cli.serve.worker_app is their app factory). Each worker loads
the model and reloads it on its own when a retrain publishes another run; feedback rate limits
are per worker; feedback rows from all of them are appended under a file lock.
"""
import asyncio
import contextlib
import dataclasses
import hmac
import json
import logging
import math
import os
import threading
import time
import weakref
from pathlib import Path
from typing import Annotated

import anyio
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.middleware.trustedhost import TrustedHostMiddleware

from .. import artifacts
from ..data.feedback import FeedbackFileFull, record_feedback
from ..data.intents import MAX_PATTERN_CHARS
from ..errors import ArtifactError, ConfigError
from ..text import wordnet
from . import review
from .cache_redis import DEFAULT_TTL, redis_cache_factory
from .observability import Metrics, RequestLog
from .predictor import (
    DEFAULT_CACHE_SIZE,
    DEFAULT_MODEL_PATH,
    DEFAULT_PREPROCESSOR_PATH,
    DEFAULT_RUNTIME,
    DEFAULT_TOP_K,
    get_predictor,
)
from .variants import CURRENT, DEFAULT_VARIANT, MAX_NAME_CHARS, Router, Variant

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
DEFAULT_MAX_BATCH = 100
MAX_INTENT_CHARS = 200
DEFAULT_MAX_FEEDBACK_BYTES = 10 * 2**20
DEFAULT_FEEDBACK_RATE = 2.0  # feedback rows a second per client, on average
DEFAULT_FEEDBACK_BURST = 5  # and at most this many at once
TOKEN_VARIABLE = "INTENTKIT_TOKEN"
MIN_TOKEN_CHARS = 16
# Prediction requests answered at once; more only share the same cores and wait longer, while
# each holds a thread of the pool that the other endpoints need too (anyio's 40).
DEFAULT_MAX_IN_FLIGHT = 8
MAX_IN_FLIGHT_LIMIT = 32
RETRY_AFTER_S = 1
# Admitted predictions run on this many threads at once, one per core: more would only take turns
# holding the GIL (tokenizing is Python), and the event loop, which answers /health, with them.
PREDICTION_THREADS = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") \
    else os.cpu_count() or 1
DEFAULT_READ_TIMEOUT_S = 30.0  # a body part must arrive within this (slow clients)
# Host names always answered: the machine itself. Others (a server's public name) are configured.
LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")
MAX_ECHOED_ERRORS = 5  # a 422 names at most this many problems


class BodyLimit:
    """ASGI middleware: 413 once a request body passes `max_bytes`, on every endpoint.

    A declared Content-Length over the limit is refused unread. Otherwise the bytes are counted as
    they arrive, so a chunked body (which declares no length) is cut off at the limit too, and
    the rest is never buffered.
    """

    def __init__(self, app, max_bytes, advice, read_timeout_s=DEFAULT_READ_TIMEOUT_S):
        self.app, self.max_bytes, self.advice = app, max_bytes, advice
        self.read_timeout_s = read_timeout_s

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            response = JSONResponse(status_code=413, content={
                "detail": f"request body of {int(declared):,} bytes is over the limit of "
                          f"{self.max_bytes:,}; {self.advice}"})
            return await response(scope, receive, send)
        received = 0

        async def counted_receive():
            nonlocal received
            try:
                message = await asyncio.wait_for(receive(), self.read_timeout_s)
            except TimeoutError:
                # A client trickling its body would hold a connection and a task for ever.
                raise HTTPException(408, f"the request body did not arrive within "
                                         f"{self.read_timeout_s:g} s") from None
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                # Raised while the endpoint reads its body: answered like any HTTPException.
                raise HTTPException(413, f"request body is over the limit of "
                                         f"{self.max_bytes:,} bytes; {self.advice}")
            return message
        return await self.app(scope, counted_receive, send)


class Observed:
    """ASGI middleware: each HTTP request's status and time, handed to `record(scope, status,
    seconds)` (pure ASGI: the body stream, and BodyLimit's 413 inside it, pass untouched)."""

    def __init__(self, app, record):
        self.app, self.record = app, record

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        scope.setdefault("state", {})
        started, status = time.perf_counter(), 500

        async def sending(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)
        try:
            await self.app(scope, receive, sending)
        finally:
            self.record(scope, status, time.perf_counter() - started)


class RateLimit:
    """A token bucket per client: `rate` requests a second on average, `burst` at once.

    The client is the connection's address: an X-Forwarded-For header counts only when the
    server was told to trust the proxy sending it (`intentkit serve --forwarded-allow-ips`),
    else any client could name a new address per request."""

    def __init__(self, rate, burst, max_clients=10_000):
        if rate <= 0 or burst < 1:
            raise ConfigError(f"the feedback rate must be above 0 and the burst at least 1, not "
                             f"{rate} and {burst}")
        self.rate, self.burst, self.max_clients = rate, burst, max_clients
        self.buckets = {}  # client -> (tokens, time.monotonic() when counted)
        self.lock = threading.Lock()

    def wait(self, client):
        """0 after taking one of `client`'s tokens, else the seconds until it has one."""
        with self.lock:
            now = time.monotonic()
            tokens, counted = self.buckets.get(client, (self.burst, now))
            tokens = min(self.burst, tokens + (now - counted) * self.rate)
            if tokens < 1:
                return (1 - tokens) / self.rate
            self.buckets[client] = (tokens - 1, now)
            if len(self.buckets) > self.max_clients:
                # A refilled bucket is the same as none: forgetting those bounds the memory by
                # the clients of the last burst / rate seconds, however many addresses call.
                self.buckets = {key: (left, at) for key, (left, at) in self.buckets.items()
                                if left + (now - at) * self.rate < self.burst}
            return 0.0


def read_token(token_file=None, environ=os.environ):
    """The bearer token POST /feedback requires: the content of `token_file`, else the
    INTENTKIT_TOKEN variable, else None (no token)."""
    if token_file is not None:
        token = Path(token_file).read_text(encoding="utf-8").strip()
        if not token:
            raise ConfigError(f"{token_file}: the token is empty")
        return token
    token = environ.get(TOKEN_VARIABLE)
    if token is not None and not token.strip():
        raise ConfigError(f"{TOKEN_VARIABLE} is set but empty: unset it or give it the token")
    return None if token is None else token.strip()


SETTINGS_VARIABLE = "INTENTKIT_SERVE_SETTINGS"


@dataclasses.dataclass(frozen=True)
class ServeSettings:
    """What the service is started with, the one thing a worker process builds its app from.

    `create_app`'s arguments, JSON-serialisable (they travel to spawned workers in the
    environment variable SETTINGS_VARIABLE), except the token: `token_file` is where to read it
    (None: $INTENTKIT_TOKEN, which workers inherit, or no token), so the secret itself is not
    copied into another variable. `limits`: the size and rate options given (the others keep
    create_app's defaults). `verbose`: debug logs in the workers too.
    """
    model_path: str
    preprocessor_path: str
    use_ensemble: bool | None = None
    runtime: str = DEFAULT_RUNTIME
    cache_size: int = DEFAULT_CACHE_SIZE
    feedback_path: str | None = None
    token_file: str | None = None
    docs: bool = False
    limits: dict = dataclasses.field(default_factory=dict)
    verbose: bool = False
    # Versions, A/B test, shared cache, metrics and request logs (create_app's keyword
    # arguments of those names; paths absolute).
    lifecycle: dict = dataclasses.field(default_factory=dict)

    def create_app(self):
        """The app of these settings; ConfigError for a bad option or token."""
        return create_app(self.model_path, self.preprocessor_path, self.use_ensemble,
                          self.feedback_path, runtime=self.runtime,
                          token=read_token(self.token_file), docs=self.docs,
                          cache_size=self.cache_size, **self.limits, **self.lifecycle)

    def to_environment(self, environ=os.environ):
        """Put these settings where worker processes, started after, find them. Paths are made
        absolute: they mean the same whatever a worker's directory."""
        absolute = {name: None if value is None else os.path.abspath(value)
                    for name, value in dataclasses.asdict(self).items()
                    if name in ("model_path", "preprocessor_path", "feedback_path", "token_file")}
        environ[SETTINGS_VARIABLE] = json.dumps({**dataclasses.asdict(self), **absolute})

    @classmethod
    def from_environment(cls, environ=os.environ):
        try:
            return cls(**json.loads(environ[SETTINGS_VARIABLE]))
        except KeyError:
            raise ConfigError(f"{SETTINGS_VARIABLE} is not set: start workers with "
                              "`intentkit serve --workers N`") from None


MAX_EXAMPLES = 12  # example messages GET /examples returns


def rasa_parse_result(text, result, message_id=None):
    """A Predictor result in the shape of Rasa's `POST /model/parse` (its OpenAPI ParseResult:
    text, intent {name, confidence}, entities, intent_ranking). The fallback keeps its name
    (Rasa's FallbackClassifier answers `nlu_fallback` the same way) with the top confidence;
    entities are the Predictor's (Rasa's keys and character offsets), [] for a run without."""
    parsed = {"text": text,
              "intent": {"name": result["intent"], "confidence": result["confidence"]},
              "entities": list(result.get("entities", [])),
              "intent_ranking": [{"name": candidate["intent"],
                                  "confidence": candidate["confidence"]}
                                 for candidate in result["top_k"]]}
    if message_id is not None:
        parsed["message_id"] = message_id
    return parsed


def _host_patterns(allowed_hosts):
    """LOCAL_HOSTS and the configured names, lower case; ConfigError for a malformed one."""
    hosts = [*LOCAL_HOSTS]
    for host in allowed_hosts:
        host = host.strip().lower()
        if not host or "/" in host or ("*" in host and host != "*" and not (
                host.startswith("*.") and "*" not in host[1:])):
            raise ConfigError(f"allowed host {host!r} is not a host name, '*.domain' or '*'")
        hosts.append(host)
    return hosts


def shorten_line(text, limit=200):
    """`text` cut to `limit` characters, saying so."""
    return text if len(text) <= limit else text[:limit] + "..."


def _describe(error):
    """One readable phrase per pydantic error, e.g. "texts: List should have at most 100 items"."""
    if error["type"] == "json_invalid":
        return f"the request body is not valid JSON ({error.get('ctx', {}).get('error', '')})"
    where = ".".join(str(part) for part in error["loc"] if part != "body") or "body"
    return f"{where}: {error['msg']}"


def create_app(model_path=DEFAULT_MODEL_PATH, preprocessor_path=DEFAULT_PREPROCESSOR_PATH,
               use_ensemble=None, feedback_path=None, max_text_chars=MAX_PATTERN_CHARS,
               max_batch=DEFAULT_MAX_BATCH, runtime=DEFAULT_RUNTIME, *, token=None,
               max_feedback_bytes=DEFAULT_MAX_FEEDBACK_BYTES,
               feedback_rate=DEFAULT_FEEDBACK_RATE, feedback_burst=DEFAULT_FEEDBACK_BURST,
               docs=False, cache_size=DEFAULT_CACHE_SIZE, max_in_flight=DEFAULT_MAX_IN_FLIGHT,
               allowed_hosts=(), read_timeout_s=DEFAULT_READ_TIMEOUT_S, variants=(),
               cache_url=None, cache_ttl=DEFAULT_TTL, request_log=None, log_texts=False,
               metrics=True, metrics_dir=None, ab_salt="intentkit-ab"):
    """The FastAPI application serving one model (reloaded when its files change on disk), or
    several at once in an A/B test.

    `token`: the bearer token POST /feedback requires (None: none). `max_feedback_bytes`: the
    feedback file's size cap. `feedback_rate`, `feedback_burst`: each client's feedback token
    bucket. `docs`: serve /docs and /redoc, which load their scripts from a CDN. `cache_size`: how
    many recent messages' answers the Predictor keeps. `max_in_flight`: prediction requests
    answered at once (the next gets 503 + Retry-After). `allowed_hosts`: Host names answered
    besides LOCAL_HOSTS ("*.example.com" patterns; "*": any). `read_timeout_s`: the longest
    wait for a part of a request body. `variants`: (name, run id or "current", share) of each
    variant of an A/B test, runs of the model's directory (none: the one model). `cache_url`:
    redis://... for a message cache shared by workers (`cache_ttl` seconds). `request_log`: a
    file of JSON lines, one per request (texts only with `log_texts`). `metrics`: serve /metrics
    (`metrics_dir`: prometheus-client's multiprocess directory). `ab_salt`: which users meet
    which variant.
    """
    if not 1 <= max_text_chars <= MAX_PATTERN_CHARS:
        raise ConfigError(f"--max-text-chars must be between 1 and {MAX_PATTERN_CHARS}, "
                         f"not {max_text_chars}")
    if max_batch < 1:
        raise ConfigError(f"--max-batch must be at least 1, not {max_batch}")
    if max_feedback_bytes < 1:
        raise ConfigError(f"--max-feedback-bytes must be at least 1, not {max_feedback_bytes}")
    if not 1 <= max_in_flight <= MAX_IN_FLIGHT_LIMIT:
        raise ConfigError(f"--max-in-flight must be between 1 and {MAX_IN_FLIGHT_LIMIT}, not "
                          f"{max_in_flight}")
    if not (math.isfinite(read_timeout_s) and read_timeout_s > 0):
        raise ConfigError(f"the read timeout must be above 0 seconds, not {read_timeout_s}")
    hosts = _host_patterns(allowed_hosts)
    review.configured()  # a bad review-queue setting stops the start, not every answer
    if token is not None and not (len(token) >= MIN_TOKEN_CHARS and token.isascii()
                                  and token.isprintable() and " " not in token):
        raise ConfigError(f"the token must be at least {MIN_TOKEN_CHARS} characters of printable "
                         "ASCII without spaces; make one with `python -c 'import secrets; "
                         "print(secrets.token_urlsafe(32))'`")
    rate_limit = RateLimit(feedback_rate, feedback_burst)
    # JSON can spend up to 6 bytes on a character (\\uXXXX): a body that can hold no valid
    # request is cut off.
    max_body_bytes = 6 * max_text_chars * max_batch + 4096
    Text = Annotated[str, Field(min_length=1, max_length=max_text_chars)]
    TopK = Annotated[int, Field(ge=1, le=1000)]
    Intent = Annotated[str, Field(min_length=1, max_length=MAX_INTENT_CHARS)]

    class Strict(BaseModel):
        # A misspelt field is an error, not ignored; a mistyped one is not coerced (true is not
        # a top_k, "yes" is not a boolean), as the README promises.
        model_config = ConfigDict(extra="forbid", strict=True)

    UserKey = Annotated[str, Field(min_length=1, max_length=200)]
    VariantName = Annotated[str, Field(min_length=1, max_length=MAX_NAME_CHARS)]

    class Routed(Strict):
        # Who is asking (any stable id): the same user always meets the same A/B variant.
        user: UserKey | None = None
        session: UserKey | None = None

    class PredictRequest(Routed):
        text: Text
        top_k: TopK = DEFAULT_TOP_K

    class ParseRequest(BaseModel):
        # Rasa's request: "text", and an optional "message_id" (echoed back, as Rasa does);
        # other keys Rasa clients send are ignored, like Rasa ignores them. `user`/`session`
        # route an A/B test as on the other endpoints.
        model_config = ConfigDict(strict=True)
        text: Text
        message_id: Annotated[str, Field(max_length=MAX_INTENT_CHARS)] | None = None
        user: UserKey | None = None
        session: UserKey | None = None

    class BatchRequest(Routed):
        texts: Annotated[list[Text], Field(min_length=1, max_length=max_batch)]
        top_k: TopK = DEFAULT_TOP_K

    class FeedbackRequest(Routed):
        text: Text
        predicted: Intent
        correct: Intent
        # Still accepted, so that clients sending `false` keep working, and `true` is told why.
        confirmed: bool = False
        variant: VariantName | None = None  # as the answer said; else the user's, or the only one
        model_version: Annotated[str, Field(min_length=1, max_length=100)] | None = None

    model_dir = os.path.dirname(model_path)
    served = [Variant(*variant) for variant in variants] or [Variant(DEFAULT_VARIANT, "", 1.0)]
    router = Router(served, ab_salt)
    paths = {variant.name: variant.paths(model_dir)[:2] if variant.run else
             (model_path, preprocessor_path) for variant in served}
    cache_factory = redis_cache_factory(cache_url, cache_size, cache_ttl) if cache_url else None
    observed = Metrics(metrics_dir) if metrics else None
    requests_log = RequestLog(request_log, log_texts) if request_log else None
    load_errors = {}  # why a variant's model last failed to load, so that each is logged once
    loaded = {}  # variant -> the Predictor that answered last: what /health reports at once
    reported = weakref.WeakKeyDictionary()  # cache -> its (hits, misses) already counted
    reported_lock = threading.Lock()
    in_flight = 0  # prediction requests being answered (only the event loop changes it)
    prediction_threads = None  # anyio.CapacityLimiter, made on the event loop at first use

    async def in_prediction_thread(answer):
        """`answer()` on one of PREDICTION_THREADS threads (admitted requests wait their turn
        here). Abandoned when cancelled (shutdown): the thread finishes on its own."""
        nonlocal prediction_threads
        if prediction_threads is None:
            prediction_threads = anyio.CapacityLimiter(PREDICTION_THREADS)
        return await anyio.to_thread.run_sync(answer, limiter=prediction_threads,
                                              abandon_on_cancel=True)

    def predictor(variant=served[0].name):
        try:
            model = get_predictor(*paths[variant], use_ensemble, runtime, cache_size,
                                  cache_factory)
        except (ArtifactError, OSError) as error:
            # The reason names server paths: the log gets it, the client a generic line.
            if str(error) != load_errors.get(variant):
                load_errors[variant] = str(error)
                log.error("model not available: %s (the service answers 503 until it loads)",
                          error)
            raise HTTPException(503, "no model is loaded; see the server log") from None
        load_errors.pop(variant, None)
        loaded[variant] = model
        return model

    def answer(request, http_request, texts, compute):
        """`compute(model)`'s results from the variant the request is routed to, each labelled
        with the variant and the model version; left in the request's state for the metrics
        and the request log."""
        variant = router.choose(request.user or request.session)
        model = predictor(variant.name)
        results = compute(model)
        version = model.run_info["run"]
        for result in results:
            result["model_version"], result["variant"] = version, variant.name
        http_request.state.served = (variant.name, version, results, texts,
                                     request.user or request.session)
        if observed is not None:
            cache = model.cache
            with reported_lock:
                hits, misses = reported.get(cache, (0, 0))
                reported[cache] = (cache.hits, cache.misses)
            observed.count_cache(variant.name, version, cache.hits - hits, cache.misses - misses)
        return results

    async def admit_prediction():
        """Bounded admission, on the event loop before a thread is taken: at most
        `max_in_flight` prediction requests at once; the next is told to come back."""
        nonlocal in_flight
        if in_flight >= max_in_flight:
            raise HTTPException(503, f"busy: {max_in_flight} prediction requests are being "
                                     f"answered; retry in {RETRY_AFTER_S} s",
                                headers={"Retry-After": str(RETRY_AFTER_S)})
        in_flight += 1
        try:
            yield
        finally:
            in_flight -= 1

    @contextlib.asynccontextmanager
    async def lifespan(app):
        # A variant's run stays on disk while this process serves it (retention skips it).
        pins = [artifacts.pin(model_dir, v.run) for v in served if v.run not in ("", CURRENT)]
        # Load now, so that the first request does not wait for it; a failure is logged.
        for variant in served:
            with contextlib.suppress(HTTPException):
                predictor(variant.name)
        if any(model.preprocessor.uses_lemmas_ for model in loaded.values()):
            # Ready means ready: WordNet (lemmas of words unseen in training) loads in the
            # background for seconds, 12 s and more on a busy machine, and the first requests
            # needing it waited that long (clients timed out). The worker takes connections
            # only once it is loaded.
            await run_in_threadpool(wordnet.wordnet)
        yield
        for handle in pins:
            if handle is not None:
                handle.close()

    app = FastAPI(title="intentkit", lifespan=lifespan, docs_url="/docs" if docs else None,
                  redoc_url="/redoc" if docs else None, openapi_url="/v1/openapi.json")

    def route(method, path, **options):
        """The endpoint at /v1/PATH, and at PATH (today's clients) outside the schema."""
        def register(function):
            app.add_api_route("/v1" + path, function, methods=[method], **options)
            app.add_api_route(path, function, methods=[method],
                              **{**options, "include_in_schema": False})
            return function
        return register

    endpoints = {"/health", "/intents", "/examples", "/predict", "/predict/batch", "/explain",
                 "/model/parse", "/feedback", "/metrics"}

    def record(scope, status, seconds):
        """Metrics and the request log of one request (what `answer` left in its state)."""
        path = scope["path"].removeprefix("/v1")
        endpoint = path if path in endpoints else "other"
        if endpoint == "/metrics":
            return
        variant, version, results, texts, user = scope["state"].get(
            "served", (None, None, (), (), None))
        if observed is not None:
            observed.observe(endpoint, status, seconds, variant or "", version, results)
        if requests_log is not None:
            requests_log.write(endpoint, status, seconds, variant, version, results, texts, user)

    if observed is not None or requests_log is not None:
        app.add_middleware(Observed, record=record)
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes,
                       advice=f"send at most {max_batch} texts of {max_text_chars:,} characters",
                       read_timeout_s=read_timeout_s)
    # Added last: the outermost, so a request for another host is refused before anything runs.
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=hosts)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request, error):
        # A few problems, each shortened: a body of 0.6 MB of unknown keys must not be echoed
        # back as megabytes.
        problems = error.errors()
        detail = "; ".join(shorten_line(_describe(e)) for e in problems[:MAX_ECHOED_ERRORS])
        if len(problems) > MAX_ECHOED_ERRORS:
            detail += f"; and {len(problems) - MAX_ECHOED_ERRORS:,} more problems"
        return JSONResponse(status_code=422, content={"detail": detail})

    @app.exception_handler(400)
    async def unreadable_body(request, error):
        # FastAPI's 400 is a JSON body it could not decode (not UTF-8, nested too deep): the
        # same 422 as any other malformed body.
        return JSONResponse(status_code=422, content={
            "detail": f"the request body is not valid JSON ({error.__cause__ or error.detail})"})

    def admit_feedback(request: Request):
        """Feedback is on, the client has the token if one is set, and is within its rate."""
        if feedback_path is None:
            raise HTTPException(404, "feedback is off: start the service with "
                                     "--feedback-out FILE")
        if token is not None:
            scheme, _, given = request.headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(given.encode(),
                                                                     token.encode()):
                raise HTTPException(401, "feedback needs a token: send Authorization: Bearer "
                                         "<token>", headers={"WWW-Authenticate": "Bearer"})
        wait = rate_limit.wait(request.client.host if request.client else "")
        if wait:
            seconds = math.ceil(wait)
            raise HTTPException(429, f"too many feedback requests from this client; retry in "
                                     f"{seconds} s", headers={"Retry-After": str(seconds)})

    @app.get("/", include_in_schema=False)
    def page():
        return FileResponse(STATIC_DIR / "index.html")

    @app.get("/openapi.json", include_in_schema=False)
    def openapi_alias():
        return app.openapi()

    @route("GET", "/metrics", include_in_schema=observed is not None)
    def metrics_page():
        if observed is None:
            raise HTTPException(404, "metrics are off (--no-metrics)")
        body, content_type = observed.exposition()
        return Response(body, media_type=content_type)

    @route("GET", "/health")
    async def health():
        # On the event loop, from the model already loaded: never queued behind predictions.
        # Only before any model loaded does it load one, in a thread.
        model = loaded.get(served[0].name)
        if model is None:
            model = await run_in_threadpool(predictor)
        body = {"status": "ok", "model": {**model.run_info, "type": model.model_type},
                "labels": len(model.labels), "runtime": model.runtime,
                "feedback": feedback_path is not None, "pid": os.getpid()}
        if variants:
            body["variants"] = {
                v.name: {"run": v.run, "share": v.share,
                         "model_version": loaded[v.name].run_info["run"] if v.name in loaded
                         else None} for v in served}
        return body

    @route("GET", "/intents")
    def intents():
        model = predictor()
        return {"intents": sorted(model.labels), "fallback_intent": model.fallback_intent,
                "threshold": model.threshold, "margin": model.margin}

    @route("GET", "/examples")
    def examples():
        """Training patterns of the model, one per intent first (runs published before they
        were recorded have none)."""
        model = predictor()
        by_intent = [model.examples.get(label, []) for label in sorted(model.labels)]
        rounds = max((len(texts) for texts in by_intent), default=0)
        return {"examples": [texts[turn] for turn in range(rounds) for texts in by_intent
                             if turn < len(texts)][:MAX_EXAMPLES]}

    # Admission ends when the answer is ready, before it is sent ("function" scope): a client
    # that sends its next request the moment it has its answer must find its slot free again.
    admitted = [Depends(admit_prediction, scope="function")]

    async def answer_one(request, http_request, compute):
        """`compute(model)`, the result of request.text, from a prediction thread (`answer`)."""
        [result] = await in_prediction_thread(lambda: answer(
            request, http_request, [request.text], lambda model: [compute(model)]))
        return result

    @route("POST", "/model/parse", dependencies=admitted)
    async def parse(request: ParseRequest, http_request: Request):
        result = await answer_one(request, http_request,
                                  lambda model: model.predict(request.text, top_k=10))
        # Rasa's exact shape in the body (a drop-in); the version and variant in headers.
        return JSONResponse(rasa_parse_result(request.text, result, request.message_id),
                            headers={"X-Model-Version": result["model_version"] or "",
                                     "X-Variant": result["variant"]})

    @route("POST", "/predict", dependencies=admitted)
    async def predict(request: PredictRequest, http_request: Request):
        return await answer_one(request, http_request,
                                lambda model: model.predict(request.text, top_k=request.top_k))

    @route("POST", "/predict/batch", dependencies=admitted)
    async def predict_batch(request: BatchRequest, http_request: Request):
        return {"results": await in_prediction_thread(lambda: answer(
            request, http_request, request.texts,
            lambda model: model.predict_batch(request.texts, top_k=request.top_k)))}

    @route("POST", "/explain", dependencies=admitted)
    async def explain(request: PredictRequest, http_request: Request):
        """The /predict result with its "explanation" (intentkit.serving.explain)."""
        return await answer_one(request, http_request,
                                lambda model: model.explain(request.text, top_k=request.top_k))

    # admit_feedback runs before the body is validated: a refused client is refused, whatever
    # it sends.
    @route("POST", "/feedback", status_code=201, dependencies=[Depends(admit_feedback)])
    def feedback(request: FeedbackRequest):
        if request.confirmed:
            # Anyone who reaches the port can send a row: training must not trust it unseen.
            raise HTTPException(422, "confirmed: rows sent over HTTP are recorded unconfirmed; "
                                     "a person confirms them in the feedback file")
        if request.variant is not None and request.variant not in router.by_name:
            raise HTTPException(422, f"variant: {request.variant!r} is not served here "
                                     f"(variants: {', '.join(router.by_name)})")
        key = request.user or request.session
        variant = (request.variant or (router.choose(key).name if key is not None else None)
                   or (served[0].name if len(served) == 1 else None))
        model = predictor(variant or served[0].name)
        version = request.model_version or (model.run_info["run"] if variant else None)
        try:
            row = record_feedback(feedback_path, request.text, request.predicted,
                                  request.correct, model.labels, version,
                                  confirmed=False, max_file_bytes=max_feedback_bytes,
                                  variant=variant)
        except ValueError as error:
            raise HTTPException(422, str(error)) from None
        except FeedbackFileFull as error:
            log.error("feedback not recorded: %s", error)
            raise HTTPException(507, f"the feedback file is full ({max_feedback_bytes:,} bytes): "
                                     "nothing recorded until its rows are reviewed and moved") \
                from None
        except OSError as error:
            log.error("cannot record feedback in %s: %s", feedback_path, error)
            raise HTTPException(500, f"cannot record feedback ({error.strerror or error})") \
                from None
        return {"recorded": row}

    return app
