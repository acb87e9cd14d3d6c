"""`intentkit export --format web`: a static page that classifies as the user types, no server.

The directory holds the ONNX export (intentkit.serving.onnx_export: model.onnx, tokenizer.json,
export.json) and the page: index.html, app.js (loads the export, checks model.onnx against
export.json's size and sha256, runs it with ONNX Runtime Web's WebAssembly backend),
wordpiece.js (the tokenizer, reading tokenizer.json), entities.js (the run's entity extraction,
reading entities.json: serving.entity_export) and ONNX Runtime Web's own files, copied
from the npm package pinned in web/package.json (`npm ci --prefix web`), never fetched from a
CDN. Any static file host serves it (browsers refuse fetch() and WebAssembly from file://
pages); tests/test_web_export.py drives it in Chromium.
"""
import json
import shutil
import tempfile
from pathlib import Path

from .. import artifacts
from ..errors import ConfigError
from . import onnx_export as export

PAGE_DIR = Path(__file__).with_name("web_page")
PAGE_FILES = ("index.html", "app.js", "wordpiece.js", "entities.js")
# The WebAssembly build without WebGPU/WebGL: what app.js uses, and the smallest.
RUNTIME_FILES = ("ort.wasm.min.js", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
PINNED_PACKAGE = Path(__file__).resolve().parents[2] / "web" / "package.json"
NPM_HINT = "run `npm ci --prefix web` in the intentkit checkout, or pass --onnxruntime-web DIR"


def pinned_version():
    """The onnxruntime-web version web/package.json pins (None outside a checkout)."""
    if not PINNED_PACKAGE.is_file():
        return None
    return json.loads(PINNED_PACKAGE.read_text())["dependencies"]["onnxruntime-web"]


def onnxruntime_web_dir(given=None):
    """The `dist` folder of the installed npm package onnxruntime-web, checked."""
    candidates = ([Path(given)] if given else
                  [Path("node_modules/onnxruntime-web/dist"),
                   PINNED_PACKAGE.parent / "node_modules" / "onnxruntime-web" / "dist"])
    for directory in candidates:
        if all((directory / name).is_file() for name in RUNTIME_FILES):
            version = json.loads((directory.parent / "package.json").read_text())["version"]
            wanted = pinned_version()
            if wanted and version != wanted:
                raise ConfigError(f"{directory}: onnxruntime-web {version}, the export is "
                                  f"tested with {wanted} (web/package.json); {NPM_HINT}")
            return directory
    raise ConfigError(f"onnxruntime-web's files ({', '.join(RUNTIME_FILES)}) are not in "
                      f"{' or '.join(map(str, candidates))}; {NPM_HINT}")


def export_web(model_dir, out, runtime_dir, use_ensemble=None, int8=False,
               calibration_texts=()):
    """The ONNX export of a run plus the page, written to `out` in one step; its description."""
    out = Path(out)
    export._check_out(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{out.name}.web-", dir=out.parent))
    try:
        staging = scratch / "export"
        description = export.export_onnx(model_dir, staging, use_ensemble, int8,
                                         calibration_texts)
        for name in PAGE_FILES:
            shutil.copyfile(PAGE_DIR / name, staging / name)
        for name in RUNTIME_FILES:
            shutil.copyfile(Path(runtime_dir) / name, staging / name)
        artifacts.replace_directory(staging, out)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return description
