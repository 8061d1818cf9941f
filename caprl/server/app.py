"""The FastAPI app of the reward service: a reward engine (and/or a VLM judge) behind a bulk endpoint and the
CapRL endpoint.

Endpoints (all documented in ``/openapi.json``, browsable at ``/docs``):

- ``POST /v1/rewards`` — many items per request; one result per item (reward and its parts), in request order.
  QA items (caption + MCQs) go to the reader; judge items (``"mode": "judge"``, caption + media) to the VLM judge;
  QA items with media and the correctness term on have their claims split by the reader and checked by the judge;
- ``POST /get_reward`` — the CapRL reference body and answer (``{"rewards": [...]}``);
- ``GET /health`` — 200 only when every model is loaded; 503 while loading, after a failed load, while draining;
- ``GET /metrics`` — Prometheus text format.

Status codes: 400 body not JSON, 401 missing/wrong bearer token, 413 body or item count too large, 422 invalid
request or items (each error names the item index and field; the valid items are still scored and returned),
500 the engine or the judge failed on some items (with the reason), 503 not ready / draining / overloaded (with
Retry-After). A non-200 answer to a parsed request carries the rewards of every item that was scored, null
elsewhere.

>>> app = create_app(RewardEngine(reader), ServerSettings(max_batch=32))     # doctest: +SKIP
>>> app = create_app(engine, settings, judge=VLMJudge(captioner))            # doctest: +SKIP
>>> uvicorn.run(app, port=18889)                                            # doctest: +SKIP
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic.json_schema import models_json_schema

import caprl
from caprl.server.metrics import ServiceMetrics
from caprl.server.parse import RequestError
from caprl.server.protocol import ErrorResponse, GetRewardRequest, ItemError, RewardsRequest
from caprl.server.routes import json_response, router
from caprl.server.settings import ServerSettings
from caprl.server.state import EngineSource, JudgeSource, ServiceState

_ENDPOINTS = frozenset({"/v1/rewards", "/get_reward", "/health", "/metrics"})
_ERROR_KIND = {400: "bad_json", 401: "unauthorized", 413: "too_large", 422: "invalid_request", 503: "not_ready"}


def create_app(
    source: EngineSource | None, settings: ServerSettings | None = None, *, judge: JudgeSource | None = None
) -> FastAPI:
    """The service for ``source`` (the reader's engine) and/or ``judge`` (the VLM judge for judge items): each a
    ready object, or a function that builds one (called in a thread at start). ``source`` None: judge items only.
    """
    settings = settings or ServerSettings()
    metrics = ServiceMetrics()
    state = ServiceState(source, settings, metrics, judge)

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        await state.start()
        try:
            yield
        finally:
            await state.stop()

    app = FastAPI(
        title="caprl reward service",
        version=caprl.__version__,
        summary="Caption rewards: how well a text-only reader answers each item's MCQs from the caption, or a VLM "
        "judge's scores of the caption against the media.",
        description=__doc__.split(">>>")[0] if __doc__ else None,
        lifespan=lifespan,
    )
    app.state.service = state

    # ----------------------------------------------------------------------------------------- plumbing

    @app.exception_handler(RequestError)
    async def _request_error(request: Request, exc: RequestError) -> Response:
        metrics.errors.labels(exc.kind or _ERROR_KIND.get(exc.status, "invalid_request")).inc()
        body = ErrorResponse(
            detail=exc.detail, errors=[ItemError(field=exc.field, status=exc.status, message=exc.detail)]
        )
        return json_response(body, exc.status, exc.headers)

    @app.middleware("http")
    async def _observe(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        endpoint = request.url.path if request.url.path in _ENDPOINTS else "other"
        metrics.requests.labels(endpoint, str(response.status_code)).inc()
        metrics.request_seconds.labels(endpoint).observe(time.perf_counter() - started)
        return response

    key = settings.api_key.get_secret_value().encode() if settings.api_key else None
    bearer = HTTPBearer(auto_error=False, description="Needed when the server runs with --api-key-env.")

    async def _authorize(credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
        if key is None:
            return
        if credentials is None or not hmac.compare_digest(credentials.credentials.encode(), key):
            raise RequestError(401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})

    guarded = [Depends(_authorize)] if key else []

    app.include_router(router(guarded))
    _add_request_schemas(app)
    return app


def _add_request_schemas(app: FastAPI) -> None:
    """Put the hand-validated request bodies into the OpenAPI components the routes refer to."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            _, defs = models_json_schema(
                [(RewardsRequest, "validation"), (GetRewardRequest, "validation")],
                ref_template="#/components/schemas/{model}",
            )
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            clash = set(defs["$defs"]) & set(components)
            if clash:
                raise RuntimeError(f"request schemas clash with response schemas: {sorted(clash)}")
            components.update(defs["$defs"])
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]
