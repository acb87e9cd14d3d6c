"""`intentkit export`: the run's default answer as ONNX files, or as a static web page."""
import json
import logging

from ..errors import ConfigError
from .common import add_model_dir, existing_file, existing_model_dir, require_extra

log = logging.getLogger("intentkit")
FORMATS = ("onnx", "web")
# What `export` imports: checked before the run loads (`pip install 'intentkit[export]'`).
EXTRA_MODULES = ("onnx", "onnxruntime", "tokenizers")

EXAMPLES = """\
examples:
  intentkit export --format onnx -m models/bot -o exported
  intentkit export --format web -m models/bot -o site      (after `npm ci --prefix web`)
  intentkit export --format onnx -m models/bot -o exported-int8 --int8 --data intents.json"""


def add_parser(subcommands, name):
    parser = subcommands.add_parser(
        name, help="export the model for ONNX runtimes or a browser page",
        description="Write the run's default answer as ONNX (model, tokenizer.json, labels, "
        "fallback, export.json), verified with ONNX Runtime and the `tokenizers` library; "
        "--format web adds a static page that classifies as you type (ONNX Runtime Web). "
        "docs/export.md says what is exported and what it costs.", epilog=EXAMPLES)
    parser.add_argument("--format", choices=FORMATS, required=True,
                        help="onnx: the ONNX files; web: those and the static page")
    add_model_dir(parser)
    parser.add_argument("-o", "--out", required=True, metavar="DIR",
                        help="the export's directory (new, empty, or an earlier export)")
    choice = parser.add_mutually_exclusive_group()
    choice.add_argument("--ensemble", dest="use_ensemble", action="store_const", const=True,
                        default=None, help="export the ensemble (default: the run's default)")
    choice.add_argument("--single", dest="use_ensemble", action="store_const", const=False,
                        help="export the single model")
    parser.add_argument("--int8", action="store_true",
                        help="quantize the encoder statically to int8 (smaller, faster, a "
                        "little less accurate: docs/export.md); calibrated on --data")
    parser.add_argument("--data", metavar="FILE",
                        help="the training data (intents file): --int8 calibrates on its texts")
    parser.add_argument("--onnxruntime-web", metavar="DIR",
                        help="--format web: the `dist` folder of the npm package onnxruntime-web "
                        "(default: node_modules/onnxruntime-web/dist here or beside intentkit)")
    return parser


def run(args):
    # What was typed and what is installed, checked before the run (and TensorFlow) loads.
    if args.int8 and not args.data:
        raise ConfigError("--int8 needs --data FILE (the training data) to calibrate on")
    existing_model_dir(args.model_dir)
    if args.data:
        existing_file(args.data, "--data")
    for module in EXTRA_MODULES:
        require_extra(module, "export", "export")
    from ..serving import onnx_export as export
    texts = []
    if args.data:
        from ..data.intents import load_intents
        texts = load_intents(args.data).texts
    if args.format == "web":
        from ..serving import web
        runtime_dir = web.onnxruntime_web_dir(args.onnxruntime_web)
        description = web.export_web(args.model_dir, args.out, runtime_dir, args.use_ensemble,
                                     args.int8, texts)
    else:
        description = export.export_onnx(args.model_dir, args.out, args.use_ensemble, args.int8,
                                         texts)
    answer = description["answer"]
    entities = description["entities"]
    log.info("exported %s (%s, %.1f MB) to %s; members %s; left out: %s; verified on %d "
             "messages, max difference %.2g; entities: %s", answer["model_type"],
             description["model"]["precision"], description["model"]["bytes"] / 1e6, args.out,
             ", ".join(m["name"] for m in answer["exported_members"]),
             ", ".join(m["name"] for m in answer["left_out_members"]) or "none",
             description["verification"]["messages"],
             description["verification"]["max_abs_difference"],
             f"{entities['file']} ({entities['bytes'] / 1e3:.0f} KB, labeller "
             f"{entities['labeller']}, verified on {entities['verification']['messages']} "
             "messages)" if entities["exported"] else "none in the run")
    print(json.dumps({"out": str(args.out), "model": description["model"],
                      "answer": answer, "entities": {key: entities.get(key) for key in (
                          "exported", "file", "bytes", "labeller")}}, indent=2))
    return 0
