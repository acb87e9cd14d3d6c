"""`intentkit serve` (= `python -m intentkit.serve`): the HTTP service and its page."""
import dataclasses
import logging
import math
import os
import shutil
import sys
import tempfile
import threading

from ..errors import ConfigError
from .common import (
    add_model_arguments,
    check_port_free,
    deprecated,
    existing_file,
    import_tensorflow_for,
    model_paths,
    positive,
    require_extra,
    setup_logging,
    writable_parent,
)

EXAMPLES = """\
examples:
  intentkit serve -m models/bot
  intentkit serve -m models/bot --port 8080 --feedback-out corrections.jsonl
  intentkit serve -m models/bot --host 0.0.0.0 --workers 2 --token-file token.txt
  intentkit serve -m models/bot --variant live=current --variant new=RUN_ID --traffic new=0.1
  intentkit serve -m models/bot --workers 2 --cache-url redis://127.0.0.1:6379/0

Then open http://127.0.0.1:8000/ to try it; a bot wired to Rasa calls POST /model/parse."""

DEFAULT_SHUTDOWN_TIMEOUT_S = 10  # requests still running then are cut off at SIGTERM
DEFAULT_KEEP_ALIVE_S = 5  # an idle connection is closed after this


def add_parser(subcommands, name):
    parser = subcommands.add_parser(
        name, help="serve the classifier over HTTP (optional extra: intentkit[serve])",
        description="Serve the intent classifier over HTTP, with a page to try it and a "
        "Rasa-compatible POST /model/parse (docs/cli.md).", epilog=EXAMPLES)
    add_model_arguments(parser)
    parser.add_argument("--feedback-out", metavar="FILE", help="JSON-lines file that POST "
                        "/feedback appends to (default: feedback off)")
    deprecated(parser, "--feedback", "--feedback-out", "feedback_out", metavar="FILE")
    add_lifecycle_arguments(parser)
    parser.add_argument("--host", default="127.0.0.1", help="0.0.0.0 listens on all networks")
    parser.add_argument("--port", type=int, default=8000, help="the TCP port to listen on")
    parser.add_argument("--workers", type=positive, default=1, metavar="N",
                        help="worker processes answering on the port, each with its own copy of "
                        "the model (default: 1); feedback rate limits are per worker")
    parser.add_argument("--max-text-chars", type=int, default=None,
                        help="longest message accepted (default: the longest training pattern "
                        "allowed)")
    parser.add_argument("--max-batch", type=int, default=None,
                        help="most messages in one /predict/batch request (default: 100)")
    # Exposure and abuse limits (README: "Deploying the service"); defaults in intentkit.serve.
    parser.add_argument("--token-file", help="file holding the token POST /feedback requires "
                        "as `Authorization: Bearer` (default: $INTENTKIT_TOKEN; neither: none)")
    parser.add_argument("--max-feedback-bytes", type=int, default=None,
                        help="size cap of the --feedback-out file (default: 10 MiB)")
    parser.add_argument("--feedback-rate", type=float, default=None,
                        help="feedback rows a second per client (default: 2)")
    parser.add_argument("--feedback-burst", type=int, default=None,
                        help="feedback rows a client may send at once (default: 5)")
    parser.add_argument("--docs", action="store_true",
                        help="serve /docs and /redoc (their scripts come from a CDN)")
    # Admission and exposure (docs/security.md).
    parser.add_argument("--max-in-flight", type=int, default=None, metavar="N",
                        help="prediction requests answered at once per worker; the next gets "
                        "503 with Retry-After (default: 8)")
    parser.add_argument("--allowed-hosts", default="", metavar="HOSTS",
                        help="comma-separated Host names answered besides localhost, 127.0.0.1 "
                        "and ::1, e.g. 'bot.example.com,*.example.org' ('*': any); other Host "
                        "headers get 400 (DNS rebinding)")
    parser.add_argument("--forwarded-allow-ips", default="", metavar="IPS",
                        help="comma-separated addresses of proxies whose X-Forwarded-For names "
                        "the client (for the feedback rate limit); default: none, the "
                        "connection's address counts")
    parser.add_argument("--shutdown-timeout", type=float, default=DEFAULT_SHUTDOWN_TIMEOUT_S,
                        metavar="S", help="seconds requests may still run after SIGTERM "
                        f"(default: {DEFAULT_SHUTDOWN_TIMEOUT_S})")
    parser.add_argument("--read-timeout", type=float, default=None, metavar="S",
                        help="longest wait for a part of a request body (default: 30)")
    parser.add_argument("--header-timeout", type=float, default=None, metavar="S",
                        help="a request's head (its line and headers) must arrive within this, "
                        "else the connection is closed (default: 10)")
    return parser


def add_lifecycle_arguments(parser):
    """A/B variants, the shared cache, metrics and request logs (docs/lifecycle.md)."""
    parser.add_argument("--variant", action="append", default=[], metavar="NAME=RUN_ID",
                        help="serve run RUN_ID of the model directory (`current`: the live run) "
                        "as variant NAME of an A/B test; give two or more")
    parser.add_argument("--traffic", action="append", default=[], metavar="NAME=SHARE",
                        help="share of the requests variant NAME gets (0 to 1); variants without "
                        "one split the rest equally")
    parser.add_argument("--ab-salt", default="intentkit-ab", metavar="TEXT",
                        help="changes which users meet which variant (a new experiment)")
    parser.add_argument("--cache-url", default=None, metavar="URL",
                        help="redis://HOST:PORT/DB: the message cache in Redis, shared by every "
                        "worker and replica (extra `redis`); --cache-size bounds it per model")
    parser.add_argument("--cache-ttl", type=positive, default=None, metavar="SECONDS",
                        help="how long a cached answer lives in Redis (default: 3600)")
    parser.add_argument("--request-log", default=None, metavar="FILE",
                        help="one JSON line per request (endpoint, status, latency, variant, "
                        "model version, intents), without the messages")
    parser.add_argument("--log-texts", action="store_true",
                        help="put the messages in the request log too (personal data)")
    parser.add_argument("--no-metrics", dest="metrics", action="store_false",
                        help="no /metrics (default: Prometheus metrics at /metrics)")


def lifecycle_options(args, model_dir):
    """create_app's keyword arguments of the lifecycle options, checked: malformed variants or
    shares, unknown run ids and runs failing verification are one-line errors here, before the
    service starts."""
    from ..artifacts import runs
    from ..serving.variants import CURRENT, parse_variants
    options = {"metrics": args.metrics}
    if args.variant or args.traffic:
        variants = parse_variants(args.variant, args.traffic)
        for variant in variants:
            if variant.run != CURRENT:
                runs.verify_run(model_dir, variant.run)
        options["variants"] = [[v.name, v.run, v.share] for v in variants]
        options["ab_salt"] = args.ab_salt
    if args.cache_url:
        require_extra("redis", "redis", "serve --cache-url")
        from ..serving.cache_redis import client_for
        client_for(args.cache_url)  # a malformed URL is one line now; a stopped Redis is not
        options["cache_url"] = args.cache_url
    if args.cache_ttl:
        options["cache_ttl"] = args.cache_ttl
    if args.request_log:
        writable_parent(args.request_log, "--request-log")
        options["request_log"] = os.path.abspath(args.request_log)
        options["log_texts"] = args.log_texts
    return options


def _names(text):
    return [name.strip() for name in text.split(",") if name.strip()]


def run(args):
    # Everything a user can get wrong is checked before the model loads: the extra, the paths,
    # the port, the limits.
    require_extra("fastapi", "serve", "serve")
    require_extra("uvicorn", "serve", "serve")
    model_path, preprocessor_path = model_paths(args)
    if args.feedback_out:
        writable_parent(args.feedback_out, "--feedback-out")
    if args.token_file:
        existing_file(args.token_file, "--token-file")
    if not (math.isfinite(args.shutdown_timeout) and args.shutdown_timeout >= 0):
        raise ConfigError(f"--shutdown-timeout must be 0 or more seconds, not "
                          f"{args.shutdown_timeout}")
    if args.header_timeout is not None and not (math.isfinite(args.header_timeout)
                                                 and args.header_timeout > 0):
        raise ConfigError(f"--header-timeout must be above 0 seconds, not {args.header_timeout}")
    if args.metrics:
        require_extra("prometheus_client", "serve", "serve")
    lifecycle = lifecycle_options(args, os.path.dirname(model_path))
    check_port_free(args.host, args.port)
    import uvicorn

    from ..serving.app import ServeSettings
    from ..serving.http_protocol import DEFAULT_HEAD_TIMEOUT_S, protocol_factory
    limits = {name: getattr(args, name) for name in (
        "max_text_chars", "max_batch", "max_feedback_bytes", "feedback_rate", "feedback_burst",
        "max_in_flight") if getattr(args, name) is not None}
    if args.read_timeout is not None:
        limits["read_timeout_s"] = args.read_timeout
    if _names(args.allowed_hosts):
        limits["allowed_hosts"] = _names(args.allowed_hosts)
    settings = ServeSettings(model_path, preprocessor_path, use_ensemble=args.use_ensemble,
                             runtime=args.runtime, cache_size=args.cache_size,
                             feedback_path=args.feedback_out, token_file=args.token_file,
                             docs=args.docs, limits=limits, verbose=args.verbose,
                             lifecycle=lifecycle)
    proxies = _names(args.forwarded_allow_ips)
    options = {"host": args.host, "port": args.port,
               "log_level": "debug" if args.verbose else "info",
               # uvicorn trusts X-Forwarded-For from 127.0.0.1 unless told otherwise: then any
               # local client could pose as a new address per request.
               "proxy_headers": bool(proxies), "forwarded_allow_ips": proxies or "",
               "timeout_graceful_shutdown": args.shutdown_timeout,
               "timeout_keep_alive": DEFAULT_KEEP_ALIVE_S,
               "http": protocol_factory(args.header_timeout or DEFAULT_HEAD_TIMEOUT_S)}
    if args.workers == 1:
        import_tensorflow_for(args.runtime, args.verbose)
        uvicorn.run(settings.create_app(), **options)
        _exit_if_requests_still_run()
        return 0
    # Options and token are checked here, once, before any worker starts; each worker then
    # builds its own app (and loads its own model) from the same settings.
    settings.create_app()
    metrics_dir = None
    if args.metrics:
        # prometheus-client's multiprocess mode: each worker writes its values there (it reads
        # the variable when the worker imports it), any worker answers their sum.
        metrics_dir = tempfile.mkdtemp(prefix="intentkit-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
        settings = dataclasses.replace(settings, lifecycle={**settings.lifecycle,
                                                            "metrics_dir": metrics_dir})
    settings.to_environment()
    try:
        uvicorn.run(f"{__name__}:worker_app", factory=True, workers=args.workers, **options)
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)
    return 0


def _exit_if_requests_still_run():
    """uvicorn returns once --shutdown-timeout has passed, but a prediction still running in a
    worker thread (threads that are not daemons) would keep the process alive until it ends:
    with 42 batches queued, minutes after SIGTERM. Exit now, as the timeout promises."""
    running = [thread for thread in threading.enumerate()
               if thread is not threading.main_thread() and thread.is_alive()
               and not thread.daemon]
    if running:
        logging.getLogger("intentkit").warning(
            "stopped with %d request thread(s) still running: abandoned", len(running))
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def worker_app():
    """The app factory of each worker process of `--workers N` (spawned: it inherits the
    environment and nothing else): logging, TensorFlow's quiet import for the Keras runtime,
    then the app of the settings `run` put in the environment."""
    from ..serving.app import ServeSettings
    settings = ServeSettings.from_environment()
    setup_logging(settings.verbose)
    import_tensorflow_for(settings.runtime, settings.verbose)
    return settings.create_app()
