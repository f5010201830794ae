"""The HTTP recommender (FastAPI): `POST /recommend`, `GET /items/{id}`, `GET /health`, `GET /metrics`.

Every request is validated (history length and `k` bounded, unknown ids named, body size limited) and answered
with a 4xx and a message when it is wrong, never a 500. With `MMGR_API_KEY` set, every endpoint but `/health`
needs the header `x-api-key`. Concurrent `/recommend` calls are micro-batched into one beam search.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from fastapi import FastAPI, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mmgr.errors import MmgrError
from mmgr.serving.batcher import BatchSettings, MicroBatcher
from mmgr.serving.onboarding import MAX_IMAGE_BYTES, NewItem, OnboardError, store_image
from mmgr.serving.service import Recommender, RequestError
from mmgr.serving.service import Request as RecommendRequest

API_KEY_ENV = "MMGR_API_KEY"
MAX_BODY_BYTES = 1 << 20
MAX_UPLOAD_BYTES = MAX_IMAGE_BYTES + (64 << 10)       # POST /items: one image and the item's fields


class RecommendBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    history: list[str] | None = Field(None, description="item ids, oldest first")
    user_id: str | None = Field(None, description="a known user instead of a history")
    k: int = Field(10, description="items to return")
    exclude_seen: bool = Field(True, description="leave out items of the history")
    explain: bool | None = Field(None, description="add each item's explanation: the title, interests and visual "
                                                   "description the model writes from its SID (TriAlignGR runs)")


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("mmgr_requests", "HTTP requests", ["endpoint", "status"], registry=self.registry)
        self.latency = Histogram("mmgr_request_seconds", "request latency", ["endpoint"], registry=self.registry,
                                 buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10))
        self.batch = Histogram("mmgr_batch_size", "requests decoded together", registry=self.registry,
                               buckets=(1, 2, 4, 8, 16, 32, 64, 128))


class BodyLimit:
    """ASGI middleware: refuse (413) a request body once more than the path's limit has arrived, whatever its
    headers say (a chunked upload has no content-length; a false one is not believed)."""

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app, self.max_body_bytes = app, max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = body_limit(scope["path"], self.max_body_bytes)
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > limit:                   # FastAPI re-raises HTTPException from body parsing
                raise HTTPException(413, "request body too large")
            return message

        await self.app(scope, limited, send)


def body_limit(path: str, max_body_bytes: int) -> int:
    return MAX_UPLOAD_BYTES if path == "/items" else max_body_bytes


def create_app(recommender: Recommender, batching: BatchSettings | None = None,
               max_body_bytes: int = MAX_BODY_BYTES) -> FastAPI:
    app = FastAPI(title="mmgr", version="1")
    app.add_middleware(BodyLimit, max_body_bytes=max_body_bytes)
    metrics = Metrics()
    batcher: MicroBatcher[RecommendRequest, Any] = MicroBatcher(recommender.recommend, batching or BatchSettings(),
                                                                metrics.batch.observe)
    api_key = os.environ.get(API_KEY_ENV)

    @app.middleware("http")
    async def guard(request: Request, call_next):
        started = time.perf_counter()
        if api_key and request.url.path != "/health" and request.headers.get("x-api-key") != api_key:
            response: Response = JSONResponse({"error": "missing or wrong x-api-key header"}, status_code=401)
        elif int(request.headers.get("content-length") or 0) > body_limit(request.url.path, max_body_bytes):
            response = JSONResponse({"error": "request body too large"}, status_code=413)
        else:
            response = await call_next(request)
        route = request.scope.get("route")
        endpoint = route.path if route is not None else "unmatched"
        metrics.requests.labels(endpoint, str(response.status_code)).inc()
        metrics.latency.labels(endpoint).observe(time.perf_counter() - started)
        return response

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'] if p != 'body') or 'body'}: {e['msg']}"
                             for e in exc.errors())
        return JSONResponse({"error": f"invalid request: {problems}"}, status_code=422)

    @app.post("/recommend")
    async def recommend(body: RecommendBody) -> JSONResponse:
        result = await batcher.submit(RecommendRequest(body.history, body.user_id, body.k, body.exclude_seen,
                                                       explain=body.explain))
        if isinstance(result, RequestError):
            return JSONResponse({"error": str(result)}, status_code=422)
        return JSONResponse({"items": result})

    @app.post("/items")
    async def onboard(item_id: str = Form(..., max_length=200), title: str = Form(..., max_length=2000),
                      description: str = Form("", max_length=20000), brand: str = Form("", max_length=200),
                      categories: str = Form("", max_length=2000, description="comma-separated"),
                      image: UploadFile | None = File(None)) -> JSONResponse:
        try:
            stored = None
            if image is not None:
                data = await image.read(MAX_IMAGE_BYTES + 1)
                stored = store_image(recommender.onboarder.run, data) if recommender.onboarder else None
            item = NewItem(item_id, title, description, brand,
                           [c.strip() for c in categories.split(",") if c.strip()], stored)
            added = await asyncio.to_thread(recommender.onboard, item)
        except OnboardError as exc:
            return JSONResponse({"error": str(exc)}, status_code=409)
        except MmgrError as exc:                   # RequestError, or codes that do not fit the vocabulary
            return JSONResponse({"error": str(exc)}, status_code=422)
        return JSONResponse(added, status_code=201)

    @app.get("/items/{item_id}")
    async def item(item_id: str) -> JSONResponse:
        try:
            return JSONResponse(recommender.item(item_id))
        except KeyError:
            return JSONResponse({"error": f"unknown item id {item_id!r}"}, status_code=404)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "items": len(recommender.item_ids), "users": len(recommender.users)}

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app
