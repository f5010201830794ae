"""The HTTP recommender (FastAPI): `POST /recommend`, `POST /items`, `GET /items/{id}`, `GET /health`,
`GET /metrics`.

Every request is validated (a JSON body with strictly typed fields, history length and `k` bounded, unknown ids
named, body size limited) and answered with a 4xx and a message when it is wrong. Messages quote ids cut to 80
characters and never show a server path (the run folder reads RUN). A handler that fails unexpectedly is answered
with a bare JSON 500 (the traceback goes to the server log) and counted in `/metrics` like any other answer.

With `MMGR_API_KEY` set, every endpoint but `/health` needs the header `x-api-key` (compared in constant time).
`mmgr serve` refuses an empty key, and a host other than loopback without a key unless told `--allow-no-auth`.
Concurrent `/recommend` calls are micro-batched into one beam search.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
import os
import re
import time
from pathlib import Path
from typing import Any

from fastapi import FastAPI, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from pydantic import BaseModel, ConfigDict, Field
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mmgr.errors import MmgrError, quoted
from mmgr.serving.batcher import BatchSettings, MicroBatcher
from mmgr.serving.onboarding import MAX_IMAGE_BYTES, NewItem, OnboardError, check_image
from mmgr.serving.service import Recommender, RequestError
from mmgr.serving.service import Request as RecommendRequest

API_KEY_ENV = "MMGR_API_KEY"
MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"    # prometheus_client's multiprocess mode
MAX_BODY_BYTES = 1 << 20
MAX_UPLOAD_BYTES = MAX_IMAGE_BYTES + (64 << 10)       # POST /items: one image and the item's fields
ABSOLUTE_PATH = re.compile(r"(?<![\w.~-])/(?:[^\s/'\"`]+/)+[^\s/'\"`,;:)]*")
log = logging.getLogger("mmgr.serving")


class RecommendBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)       # "k": "5" or true is refused, not coerced

    history: list[str] | None = Field(None, description="item ids, oldest first")
    user_id: str | None = Field(None, description="a known user instead of a history")
    k: int = Field(10, description="items to return")
    exclude_seen: bool = Field(True, description="leave out items of the history")
    explain: bool | None = Field(None, description="add each item's explanation: the title, interests and visual "
                                                   "description the model writes from its SID (TriAlignGR runs)")


class Metrics:
    """The server's Prometheus metrics. Under `mmgr serve --processes N` (`PROMETHEUS_MULTIPROC_DIR` set before the
    processes start) every process writes its values to that folder and `/metrics` sums them over the processes,
    whichever one answers."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("mmgr_requests", "HTTP requests", ["endpoint", "status"], registry=self.registry)
        self.latency = Histogram("mmgr_request_seconds", "request latency", ["endpoint"], registry=self.registry,
                                 buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10))
        self.batch = Histogram("mmgr_batch_size", "requests decoded together", registry=self.registry,
                               buckets=(1, 2, 4, 8, 16, 32, 64, 128))
        self.started = Gauge("mmgr_process_start_time_seconds", "when this server process started (one line per "
                             "process, labelled pid, under --processes)", registry=self.registry,
                             multiprocess_mode="all")
        self.started.set(time.time())

    def exposed(self) -> CollectorRegistry:
        """What `/metrics` shows: this process's registry, or every process's values in multiprocess mode."""
        if not os.environ.get(MULTIPROCESS_ENV):
            return self.registry
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return registry


class Guard:
    """ASGI middleware (plain ASGI: Starlette's `BaseHTTPMiddleware` costs a task and two streams per request): auth,
    declared body size and content type checked before a handler runs; a handler that raises is answered with a bare
    JSON 500 (the traceback goes to the log); every answer counted and timed per route in `metrics`."""

    def __init__(self, app: ASGIApp, api_key: str | None, max_body_bytes: int, metrics: Metrics,
                 run: Path | None) -> None:
        self.app, self.api_key, self.max_body_bytes, self.metrics, self.run = app, api_key, max_body_bytes, metrics, run

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, status, answering = time.perf_counter(), 500, False

        async def noting_status(message: Message) -> None:
            nonlocal status, answering
            if message["type"] == "http.response.start":
                status, answering = message["status"], True
            await send(message)

        refusal = self.refusal(scope)
        if refusal is not None:
            status = refusal[1]
            await error_response(*refusal, self.run)(scope, receive, send)
        else:
            try:
                await self.app(scope, receive, noting_status)
            except Exception:                  # noqa: BLE001 - answered and counted; the traceback goes to the log
                log.exception("%s %s failed", scope["method"], scope["path"])
                if not answering:             # nothing sent yet
                    await error_response("internal server error", 500, self.run)(scope, receive, send)
                status = 500
        route = scope.get("route")
        endpoint = route.path if route is not None else "unmatched"
        self.metrics.requests.labels(endpoint, str(status)).inc()
        self.metrics.latency.labels(endpoint).observe(time.perf_counter() - started)

    def refusal(self, scope: Scope) -> tuple[str, int] | None:
        """(message, status) when the request's headers already refuse it."""
        headers, path = Headers(scope=scope), scope["path"]
        if self.api_key and path != "/health" and not key_matches(headers.get("x-api-key"), self.api_key):
            return "missing or wrong x-api-key header", 401
        if int(headers.get("content-length") or 0) > body_limit(path, self.max_body_bytes):
            return "request body too large", 413
        if path == "/recommend" and scope["method"] == "POST" and not is_json(headers.get("content-type")):
            return "POST /recommend takes a JSON body (content-type: application/json)", 415
        return None


def error_response(message: str, status: int, run: Path | None) -> JSONResponse:
    return JSONResponse({"error": public(message, run)}, status_code=status)


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


def api_key_from_env() -> str | None:
    """MMGR_API_KEY, or None when unset; a key an HTTP header cannot carry (empty, surrounding spaces, not
    printable ASCII) is an error rather than auth silently off or never matching."""
    key = os.environ.get(API_KEY_ENV)
    if key is None:
        return None
    if not key.strip():
        raise MmgrError(f"{API_KEY_ENV} is set but empty: set a key to require x-api-key, or unset it to serve "
                        "without auth")
    if key != key.strip() or not (key.isascii() and key.isprintable()):
        raise MmgrError(f"{API_KEY_ENV} must be printable ASCII without leading or trailing spaces (an x-api-key "
                        "header could never match it)")
    return key


def check_exposure(host: str, api_key: str | None, allow_no_auth: bool) -> None:
    """Refuse to serve a host other than loopback without a key, unless explicitly allowed."""
    if api_key is None and not allow_no_auth and not is_loopback(host):
        raise MmgrError(f"--host {host} is reachable from other machines and {API_KEY_ENV} is not set: set it to "
                        "require an x-api-key header, or pass --allow-no-auth to serve without auth")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:                                   # a host name: it may resolve anywhere
        return False


def key_matches(given: str | None, api_key: str) -> bool:
    """Constant-time comparison (the header arrives as latin-1 text)."""
    return hmac.compare_digest((given or "").encode("latin-1"), api_key.encode("ascii"))


def is_json(content_type: str | None) -> bool:
    """Whether a body of this content type is read as JSON (no content type is, as FastAPI reads it)."""
    if content_type is None:
        return True
    media = content_type.split(";")[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def public(message: str, run: Path | None) -> str:
    """An error message fit for a client: paths in the run folder shown as RUN/..., any other server path hidden."""
    if run is not None:
        for root in {str(run), str(run.resolve())}:
            message = re.sub(r"(?<![\w.~/-])" + re.escape(root.rstrip("/")) + "/", "RUN/", message)
    return ABSOLUTE_PATH.sub("<server path>", message)


def create_app(recommender: Recommender, batching: BatchSettings | None = None,
               max_body_bytes: int = MAX_BODY_BYTES, api_key: str | None = None) -> FastAPI:
    app = FastAPI(title="mmgr", version="1")
    metrics = Metrics()
    run = recommender.onboarder.run.path if recommender.onboarder is not None else None
    app.add_middleware(BodyLimit, max_body_bytes=max_body_bytes)
    app.add_middleware(Guard, api_key=api_key, max_body_bytes=max_body_bytes, metrics=metrics, run=run)
    batcher: MicroBatcher[RecommendRequest, Any] = MicroBatcher(recommender.recommend, batching or BatchSettings(),
                                                                metrics.batch.observe)

    def error(message: str, status: int) -> JSONResponse:
        return error_response(message, status, run)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return error(str(exc.detail), exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'] if p != 'body') or 'body'}: {e['msg']}"
                             for e in exc.errors())
        return error(f"invalid request: {problems}", 422)

    @app.post("/recommend")
    async def recommend(body: RecommendBody) -> JSONResponse:
        result = await batcher.submit(RecommendRequest(body.history, body.user_id, body.k, body.exclude_seen,
                                                       explain=body.explain))
        if isinstance(result, RequestError):
            return error(str(result), 422)
        return JSONResponse({"items": result})

    @app.post("/items")
    async def onboard(item_id: str = Form(..., max_length=200), title: str = Form(..., max_length=2000),
                      description: str = Form("", max_length=20000), brand: str = Form("", max_length=200),
                      categories: str = Form("", max_length=2000, description="comma-separated"),
                      image: UploadFile | None = File(None)) -> JSONResponse:
        try:
            data = await image.read(MAX_IMAGE_BYTES + 1) if image is not None else None
            item = NewItem(item_id, title, description, brand,
                           [c.strip() for c in categories.split(",") if c.strip()],
                           check_image(data) if data is not None else None)
            added = await asyncio.to_thread(recommender.onboard, item, data)
        except OnboardError as exc:
            return error(str(exc), 409)
        except MmgrError as exc:                   # a bad id or image, or codes that do not fit the vocabulary
            return error(str(exc), 422)
        return JSONResponse(added, status_code=201)

    @app.get("/items/{item_id}")
    async def item(item_id: str) -> JSONResponse:
        try:
            return JSONResponse(await asyncio.to_thread(recommender.item, item_id))
        except KeyError:
            return error(f"unknown item id {quoted(item_id)}", 404)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        await asyncio.to_thread(recommender.refresh)
        return {"status": "ok", "items": len(recommender.item_ids), "users": len(recommender.users)}

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(generate_latest(metrics.exposed()), media_type=CONTENT_TYPE_LATEST)

    return app
