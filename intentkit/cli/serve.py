"""`intentkit serve` (= `python -m intentkit.serve`): the HTTP service and its page."""
from .common import add_model_arguments, import_tensorflow_for, model_paths


def add_parser(subcommands, name):
    parser = subcommands.add_parser(
        name, help="serve the classifier over HTTP (optional extra: requirements-serve.txt)",
        description="Serve the intent classifier over HTTP, with a page to try it.")
    add_model_arguments(parser)
    parser.add_argument("--feedback", help="JSON-lines file that POST /feedback appends to "
                        "(default: feedback off)")
    parser.add_argument("--host", default="127.0.0.1", help="0.0.0.0 listens on all networks")
    parser.add_argument("--port", type=int, default=8000)
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


def run(args):
    import uvicorn

    from ..serve import create_app, read_token
    import_tensorflow_for(args.runtime, args.verbose)
    limits = {name: getattr(args, name) for name in (
        "max_text_chars", "max_batch", "max_feedback_bytes", "feedback_rate", "feedback_burst")
        if getattr(args, name) is not None}
    app = create_app(*model_paths(args), args.use_ensemble, args.feedback, runtime=args.runtime,
                     token=read_token(args.token_file), docs=args.docs, cache_size=args.cache_size,
                     **limits)
    uvicorn.run(app, host=args.host, port=args.port,
                log_level="debug" if args.verbose else "info")
    return 0
