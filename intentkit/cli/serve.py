"""`intentkit serve` (= `python -m intentkit.serve`): the HTTP service and its page."""
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

Then open http://127.0.0.1:8000/ to try it; a bot wired to Rasa calls POST /model/parse."""


def add_parser(subcommands, name):
    parser = subcommands.add_parser(
        name, help="serve the classifier over HTTP (optional extra: intentkit[serve])",
        description="Serve the intent classifier over HTTP, with a page to try it and a "
        "Rasa-compatible POST /model/parse (docs/cli.md).", epilog=EXAMPLES)
    add_model_arguments(parser)
    parser.add_argument("--feedback-out", metavar="FILE", help="JSON-lines file that POST "
                        "/feedback appends to (default: feedback off)")
    deprecated(parser, "--feedback", "--feedback-out", "feedback_out", metavar="FILE")
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
    return parser


def run(args):
    # Everything a user can get wrong is checked before the model loads: the extra, the paths,
    # the port.
    require_extra("fastapi", "serve", "serve")
    require_extra("uvicorn", "serve", "serve")
    model_path, preprocessor_path = model_paths(args)
    if args.feedback_out:
        writable_parent(args.feedback_out, "--feedback-out")
    if args.token_file:
        existing_file(args.token_file, "--token-file")
    check_port_free(args.host, args.port)
    import uvicorn

    from ..serving.app import ServeSettings
    limits = {name: getattr(args, name) for name in (
        "max_text_chars", "max_batch", "max_feedback_bytes", "feedback_rate", "feedback_burst")
        if getattr(args, name) is not None}
    settings = ServeSettings(model_path, preprocessor_path, use_ensemble=args.use_ensemble,
                             runtime=args.runtime, cache_size=args.cache_size,
                             feedback_path=args.feedback_out, token_file=args.token_file,
                             docs=args.docs, limits=limits, verbose=args.verbose)
    options = {"host": args.host, "port": args.port,
               "log_level": "debug" if args.verbose else "info"}
    if args.workers == 1:
        import_tensorflow_for(args.runtime, args.verbose)
        uvicorn.run(settings.create_app(), **options)
        return 0
    # Options and token are checked here, once, before any worker starts; each worker then
    # builds its own app (and loads its own model) from the same settings.
    settings.create_app()
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
