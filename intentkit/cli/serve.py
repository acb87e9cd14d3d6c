"""`intentkit serve` (= `python -m intentkit.serve`): the HTTP service and its page."""
from .common import add_model_arguments, import_tensorflow_for, model_paths, positive, setup_logging


def add_parser(subcommands, name):
    parser = subcommands.add_parser(
        name, help="serve the classifier over HTTP (optional extra: requirements-serve.txt)",
        description="Serve the intent classifier over HTTP, with a page to try it.")
    add_model_arguments(parser)
    add_lifecycle_arguments(parser)
    parser.add_argument("--feedback", help="JSON-lines file that POST /feedback appends to "
                        "(default: feedback off)")
    parser.add_argument("--host", default="127.0.0.1", help="0.0.0.0 listens on all networks")
    parser.add_argument("--port", type=int, default=8000)
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
                        help="size cap of the --feedback file (default: 10 MiB)")
    parser.add_argument("--feedback-rate", type=float, default=None,
                        help="feedback rows a second per client (default: 2)")
    parser.add_argument("--feedback-burst", type=int, default=None,
                        help="feedback rows a client may send at once (default: 5)")
    parser.add_argument("--docs", action="store_true",
                        help="serve /docs and /redoc (their scripts come from a CDN)")
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
    shares, unknown run ids and runs failing verification are one-line errors here."""
    import os

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
        options["cache_url"] = args.cache_url
    if args.cache_ttl:
        options["cache_ttl"] = args.cache_ttl
    if args.request_log:
        options["request_log"] = os.path.abspath(args.request_log)
        options["log_texts"] = args.log_texts
    return options


def run(args):
    import dataclasses
    import os
    import tempfile

    import uvicorn

    from ..serving.app import ServeSettings
    limits = {name: getattr(args, name) for name in (
        "max_text_chars", "max_batch", "max_feedback_bytes", "feedback_rate", "feedback_burst")
        if getattr(args, name) is not None}
    model_path, preprocessor_path = model_paths(args)
    settings = ServeSettings(model_path, preprocessor_path, use_ensemble=args.use_ensemble,
                             runtime=args.runtime, cache_size=args.cache_size,
                             feedback_path=args.feedback, token_file=args.token_file,
                             docs=args.docs, limits=limits, verbose=args.verbose,
                             lifecycle=lifecycle_options(args, os.path.dirname(model_path)))
    options = {"host": args.host, "port": args.port,
               "log_level": "debug" if args.verbose else "info"}
    if args.workers == 1:
        import_tensorflow_for(args.runtime, args.verbose)
        uvicorn.run(settings.create_app(), **options)
        return 0
    # Options and token are checked here, once, before any worker starts; each worker then
    # builds its own app (and loads its own model) from the same settings.
    settings.create_app()
    if args.metrics:
        # prometheus-client's multiprocess mode: each worker writes its values there (it reads
        # the variable when the worker imports it), any worker answers their sum.
        metrics_dir = tempfile.mkdtemp(prefix="intentkit-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
        settings = dataclasses.replace(settings, lifecycle={**settings.lifecycle,
                                                            "metrics_dir": metrics_dir})
    settings.to_environment()
    uvicorn.run(f"{__name__}:worker_app", factory=True, workers=args.workers, **options)
    return 0


def worker_app():
    """The app factory of each worker process of `--workers N` (spawned: it inherits the
    environment and nothing else): logging, TensorFlow's quiet import for the Keras runtime,
    then the app of the settings `run` put in the environment."""
    from ..serving.app import ServeSettings
    settings = ServeSettings.from_environment()
    setup_logging(settings.verbose)
    import_tensorflow_for(settings.runtime, settings.verbose)
    return settings.create_app()
