"""The reward server's FastAPI app: ``/score``, ``/compare``, ``/health``, ``/info``.

Requests are parsed and checked in a thread of their own (files are probed, arrays decoded), then
handed to the :class:`~vlmrm.serve.batching.DynamicBatcher`; a bad request is answered with its
4xx and a message naming the field (:mod:`vlmrm.serve.payload`), and never reaches a batch.
Bodies over ``max_request_bytes`` are refused with 413 from their ``Content-Length`` before a byte is
read, or, when streamed without one, as soon as the bytes received pass the limit
(:class:`BodyLimit`).
"""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from vlmrm.pairs.labels import OVERALL
from vlmrm.reward.inference import RewardScorer
from vlmrm.serve.batching import DynamicBatcher, ScoringFailed
from vlmrm.serve.payload import REQUEST_FIELD, BadRequest, Limits, RequestParser, parse_json

MEBIBYTE = 1 << 20
STATUS_TOO_LARGE = 413
STATUS_UNPROCESSABLE = 422


@dataclass(frozen=True)
class ServeSettings:
    """How the server batches and what it accepts (``python -m vlmrm.serve --help``)."""

    max_batch: int = 8
    max_wait_ms: float = 10.0
    max_request_mb: float = 100.0
    max_items: int = 64
    media_root: Path | None = None

    @property
    def max_request_bytes(self) -> int:
        return int(self.max_request_mb * MEBIBYTE)


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int):
        super().__init__(STATUS_TOO_LARGE, f"request body over the limit of {limit} bytes")


class BodyLimit:
    """ASGI middleware: 413 for a body over ``max_bytes``, by header or while it streams in."""

    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            error = BodyTooLarge(self.max_bytes)
            response = JSONResponse({"detail": error.detail}, error.status_code)
            return await response(scope, receive, send)
        received = 0

        async def limited_receive():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise BodyTooLarge(self.max_bytes)
            return message

        return await self.app(scope, limited_receive, send)


async def read_body(request: Request) -> tuple[dict, dict[str, tuple[str, bytes]]]:
    """The request JSON and the uploaded parts (name -> (filename, bytes))."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("application/json"):
        return parse_json(await request.body()), {}
    if not content_type.startswith("multipart/form-data"):
        raise BadRequest(415, f"content type {content_type!r}: send application/json or multipart/form-data")
    form = await request.form()
    uploads, body = {}, None
    for name, value in form.multi_items():
        if isinstance(value, UploadFile):
            uploads[name] = (value.filename or "", await value.read())
        elif name == REQUEST_FIELD:
            body = parse_json(value, REQUEST_FIELD)
    if body is None:
        raise BadRequest(422, f"multipart request without its {REQUEST_FIELD!r} field")
    return body, uploads


def scorer_accepts_arrays() -> bool:
    """Whether ``RewardScorer.score`` takes frame arrays with their fps (``videos=[array], fps=[f]``),
    as declared by its ``accepts_arrays`` attribute."""
    return bool(getattr(RewardScorer, "accepts_arrays", False))


def model_info(scorer: RewardScorer, settings: ServeSettings) -> dict:
    spec = scorer.spec
    return {
        "model": {
            "type": scorer.model.config.model_type,
            "base_model": spec.base_model_name_or_path,
            "device": str(scorer.device),
            "dtype": str(next(scorer.model.parameters()).dtype),
        },
        "dimensions": spec.eval_dim,
        "overall": OVERALL,
        "normalization": spec.normalization,
        "frame_sampling": spec.sampling,
        "image_size": spec.image_size,
        "prompt_template_type": spec.prompt_template_type,
        "tie_k": spec.tie_k,
        "learn_tie_k": spec.learn_tie_k,
        "accepts_arrays": scorer_accepts_arrays(),
        "batching": {"max_batch": settings.max_batch, "max_wait_ms": settings.max_wait_ms},
        "limits": {"max_request_bytes": settings.max_request_bytes, "max_items": settings.max_items},
    }


def create_app(scorer: RewardScorer, settings: ServeSettings) -> FastAPI:
    limits = Limits(settings.max_items, settings.media_root, scorer_accepts_arrays())
    parser = RequestParser(limits, scorer.backend)
    batcher = DynamicBatcher(scorer, settings.max_batch, settings.max_wait_ms / 1000)
    info = model_info(scorer, settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(title="vlmrm reward server", lifespan=lifespan)
    app.add_middleware(BodyLimit, max_bytes=settings.max_request_bytes)

    @app.exception_handler(BadRequest)
    async def bad_request(request: Request, error: BadRequest):
        return JSONResponse({"detail": error.message}, error.status)

    @app.exception_handler(ScoringFailed)
    async def scoring_failed(request: Request, error: ScoringFailed):
        return JSONResponse({"detail": f"could not score this request: {error}"}, STATUS_UNPROCESSABLE)

    async def scored(request: Request, compare: bool):
        body, uploads = await read_body(request)
        parse = parser.compare_request if compare else parser.score_request
        parsed = await asyncio.to_thread(parse, body, uploads)
        try:
            return await batcher.submit(parsed, compare)
        finally:
            parsed.close()

    @app.post("/score")
    async def score(request: Request) -> dict:
        """``{"scores": [{"raw": {dim: r}, "normalized": {dim: z} | null, "Overall": x}, ...]}``."""
        return {"scores": await scored(request, compare=False)}

    @app.post("/compare")
    async def compare(request: Request) -> dict:
        """``{"probabilities": {dim: {"A": p, "B": p, "tie": p}}}`` (Rao-Kupper, the trained k)."""
        return {"probabilities": await scored(request, compare=True)}

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok", **batcher.stats.as_dict()}

    @app.get("/info")
    async def get_info() -> dict:
        return info

    return app
