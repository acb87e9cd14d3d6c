"""HTTP service (optional extra: `pip install -r requirements-serve.txt`).

`intentkit serve --model-dir DIR [--feedback F] --port 8000` (or `python -m intentkit.serve`)
serves:
  GET  /               a page to try messages and send corrections
  GET  /health         status, model version (run, time), number of intents, runtime
  GET  /intents        the model's intents (for a correction menu)
  POST /predict        {"text": str, "top_k": int} -> the Predictor's result
  POST /predict/batch  {"texts": [str, ...], "top_k": int} -> {"results": [...]}
  POST /feedback       {"text", "predicted", "correct", "confirmed"} -> 201 and the recorded row
Bad requests get a 4xx with a one-line "detail"; a model that cannot be loaded gives 503.
"""
import contextlib
import logging
from pathlib import Path
from typing import Annotated

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from ..data import MAX_PATTERN_CHARS
from ..errors import ArtifactError, ConfigError
from ..feedback import record_feedback
from ..predict import DEFAULT_MODEL_PATH, DEFAULT_PREPROCESSOR_PATH, DEFAULT_TOP_K, get_predictor

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
DEFAULT_MAX_BATCH = 100
MAX_INTENT_CHARS = 200


def _describe(error):
    """One readable phrase per pydantic error, e.g. "texts: List should have at most 100 items"."""
    if error["type"] == "json_invalid":
        return f"the request body is not valid JSON ({error.get('ctx', {}).get('error', '')})"
    where = ".".join(str(part) for part in error["loc"] if part != "body") or "body"
    return f"{where}: {error['msg']}"


def create_app(model_path=DEFAULT_MODEL_PATH, preprocessor_path=DEFAULT_PREPROCESSOR_PATH,
               use_ensemble=None, feedback_path=None, max_text_chars=MAX_PATTERN_CHARS,
               max_batch=DEFAULT_MAX_BATCH, runtime="keras"):
    """The FastAPI application serving one model (reloaded when its files change on disk)."""
    if not 1 <= max_text_chars <= MAX_PATTERN_CHARS:
        raise ConfigError(f"--max-text-chars must be between 1 and {MAX_PATTERN_CHARS}, "
                         f"not {max_text_chars}")
    if max_batch < 1:
        raise ConfigError(f"--max-batch must be at least 1, not {max_batch}")
    # JSON can spend up to 6 bytes on a character (\\uXXXX): refuse larger bodies unread.
    max_body_bytes = 6 * max_text_chars * max_batch + 4096
    Text = Annotated[str, Field(min_length=1, max_length=max_text_chars)]
    TopK = Annotated[int, Field(ge=1, le=1000)]
    Intent = Annotated[str, Field(min_length=1, max_length=MAX_INTENT_CHARS)]

    class Strict(BaseModel):
        model_config = ConfigDict(extra="forbid")  # a misspelt field is an error, not ignored

    class PredictRequest(Strict):
        text: Text
        top_k: TopK = DEFAULT_TOP_K

    class BatchRequest(Strict):
        texts: Annotated[list[Text], Field(min_length=1, max_length=max_batch)]
        top_k: TopK = DEFAULT_TOP_K

    class FeedbackRequest(Strict):
        text: Text
        predicted: Intent
        correct: Intent
        confirmed: bool = True

    def predictor():
        try:
            return get_predictor(model_path, preprocessor_path, use_ensemble, runtime)
        except (ArtifactError, OSError) as error:
            raise HTTPException(503, f"model not available: {error}") from None

    @contextlib.asynccontextmanager
    async def lifespan(app):
        try:  # load now, so that the first request does not wait for it
            predictor()
        except HTTPException as error:
            log.warning("%s (the service answers 503 until it loads)", error.detail)
        yield

    app = FastAPI(title="intentkit", lifespan=lifespan)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request, error):
        return JSONResponse(status_code=422, content={
            "detail": "; ".join(_describe(e) for e in error.errors())})

    @app.middleware("http")
    async def limit_body(request: Request, call_next):
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > max_body_bytes:
            return JSONResponse(status_code=413, content={
                "detail": f"request body of {int(length):,} bytes is over the limit of "
                          f"{max_body_bytes:,}; send at most {max_batch} texts of "
                          f"{max_text_chars:,} characters"})
        return await call_next(request)

    @app.get("/", include_in_schema=False)
    def page():
        return FileResponse(STATIC_DIR / "index.html")

    @app.get("/health")
    def health():
        model = predictor()
        return {"status": "ok", "model": {**model.run_info, "type": model.model_type},
                "labels": len(model.labels), "runtime": model.runtime,
                "feedback": feedback_path is not None}

    @app.get("/intents")
    def intents():
        model = predictor()
        return {"intents": sorted(model.labels), "fallback_intent": model.fallback_intent}

    @app.post("/predict")
    def predict(request: PredictRequest):
        return predictor().predict(request.text, top_k=request.top_k)

    @app.post("/predict/batch")
    def predict_batch(request: BatchRequest):
        return {"results": predictor().predict_batch(request.texts, top_k=request.top_k)}

    @app.post("/feedback", status_code=201)
    def feedback(request: FeedbackRequest):
        if feedback_path is None:
            raise HTTPException(404, "feedback is off: start the service with --feedback FILE")
        model = predictor()
        try:
            row = record_feedback(feedback_path, request.text, request.predicted,
                                  request.correct, model.labels, model.run_info["run"],
                                  request.confirmed)
        except ValueError as error:
            raise HTTPException(422, str(error)) from None
        except OSError as error:
            log.error("cannot record feedback in %s: %s", feedback_path, error)
            raise HTTPException(500, f"cannot record feedback ({error.strerror or error})") \
                from None
        return {"recorded": row}

    return app
