"""The FastAPI app of the reward service: one reward engine behind a bulk endpoint and the CapRL endpoint.

Endpoints (all documented in ``/openapi.json``, browsable at ``/docs``):

- ``POST /v1/rewards`` — many items per request; one result per item (reward and its parts), in request order;
- ``POST /get_reward`` — the CapRL reference body and answer (``{"rewards": [...]}``);
- ``GET /health`` — 200 only when the reader is loaded; 503 while loading, after a failed load, while draining;
- ``GET /metrics`` — Prometheus text format.

Status codes: 400 body not JSON, 401 missing/wrong bearer token, 413 body or item count too large, 422 invalid
request or items (each error names the item index and field; the valid items are still scored and returned),
500 the engine failed on some items (with the reason), 503 not ready / draining / overloaded (with Retry-After).
A non-200 answer to a parsed request carries the rewards of every item that was scored, null elsewhere.

>>> app = create_app(RewardEngine(reader), ServerSettings(max_batch=32))     # doctest: +SKIP
>>> uvicorn.run(app, port=18889)                                            # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, Literal

from fastapi import Depends, FastAPI, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic.json_schema import models_json_schema

import caprl
from caprl.reward.engine import RewardConfig, RewardEngine, RewardResult
from caprl.server.batcher import Coalescer, Outcome, Overloaded, ShuttingDown
from caprl.server.metrics import ServiceMetrics
from caprl.server.parse import (
    ParsedRequest,
    RequestError,
    check_config,
    load_json,
    parse_get_reward_request,
    parse_rewards_request,
)
from caprl.server.protocol import (
    ErrorResponse,
    GetRewardErrorResponse,
    GetRewardRequest,
    GetRewardResponse,
    HealthResponse,
    ItemError,
    RewardsRequest,
    RewardsResponse,
)
from caprl.server.settings import ServerSettings

log = logging.getLogger("caprl.server")

EngineSource = RewardEngine | Callable[[], RewardEngine]
_ENDPOINTS = frozenset({"/v1/rewards", "/get_reward", "/health", "/metrics"})
_MAX_ENGINES = 32  # engines for per-request option sets (cheap: they share the reader)
_THREAD_PARSE_BYTES = 256 * 1024  # larger bodies are decoded off the event loop, which keeps serving meanwhile
_ERROR_KIND = {400: "bad_json", 401: "unauthorized", 413: "too_large", 422: "invalid_request", 503: "not_ready"}


class ServiceState:
    """The engine (once loaded), the engines for per-request options, the coalescer, and the service status."""

    def __init__(self, source: EngineSource, settings: ServerSettings, metrics: ServiceMetrics):
        self.source, self.settings, self.metrics = source, settings, metrics
        self.status: Literal["loading", "ready", "failed", "draining"] = "loading"
        self.detail: str | None = None
        self.engine: RewardEngine | None = None
        self.coalescer: Coalescer | None = None
        self.on_load_failure: Callable[[BaseException], None] | None = None
        self._engines: OrderedDict[str, RewardEngine] = OrderedDict()
        self._load_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        s = self.settings
        self.coalescer = Coalescer(
            max_batch=s.max_batch, max_wait=s.max_wait_ms / 1000, max_pending=s.max_pending, metrics=self.metrics
        )
        self.coalescer.start()
        if isinstance(self.source, RewardEngine):
            self._ready(self.source)
        else:
            # Loading runs in the background so /health can say "loading" instead of the port being closed.
            self._load_task = asyncio.get_running_loop().create_task(self._load(self.source))

    async def _load(self, factory: Callable[[], RewardEngine]) -> None:
        started = time.perf_counter()
        try:
            engine = await asyncio.to_thread(factory)
            self._ready(engine)
        except Exception as exc:
            self.status, self.detail = "failed", f"the reader failed to load: {type(exc).__name__}: {exc}"
            log.error("%s", self.detail, exc_info=exc)
            if self.on_load_failure is not None:
                self.on_load_failure(exc)
            return
        log.info("reader %s ready in %.1f s", engine.reader.name, time.perf_counter() - started)

    def _ready(self, engine: RewardEngine) -> None:
        check_config(engine.config, self.settings)  # a server started with a config it would refuse is a bug
        self.engine = engine
        if self.status == "loading":
            self.status, self.detail = "ready", None
            self.metrics.ready.set(1)

    async def stop(self) -> None:
        self.status = "draining"
        self.metrics.ready.set(0)
        if self._load_task is not None and not self._load_task.done():
            self._load_task.cancel()  # the loading thread itself runs on, but nothing waits for it
        if self.coalescer is not None:
            await self.coalescer.close()

    def gate(self) -> RewardEngine:
        """The engine, or a 503 saying why there is none to use now."""
        if self.status == "ready" and self.engine is not None:
            return self.engine
        if self.status == "loading":
            retry = str(self.settings.load_retry_after_s)
            raise RequestError(503, "the reader is still loading; retry shortly", headers={"Retry-After": retry})
        if self.status == "draining":
            raise RequestError(503, "the service is shutting down", headers={"Retry-After": "1"})
        raise RequestError(503, self.detail or "the service is not ready")

    def engine_for(self, config: RewardConfig) -> tuple[str, RewardEngine]:
        base = self.engine
        assert base is not None
        if config == base.config:
            return "", base
        key = config.model_dump_json()
        engine = self._engines.get(key)
        if engine is None:
            engine = RewardEngine(base.reader, config, template=base.template, count_tokens=base.count_tokens)
            self._engines[key] = engine
            if len(self._engines) > _MAX_ENGINES:
                self._engines.popitem(last=False)
        else:
            self._engines.move_to_end(key)
        return key, engine

    async def score(self, parsed: ParsedRequest) -> list[Outcome | None]:
        """Per request item: its result, the exception that took it, or None (invalid, see ``parsed.errors``)."""
        out: list[Outcome | None] = [None] * len(parsed.items)
        valid = parsed.valid
        if not valid:
            return out
        key, engine = self.engine_for(parsed.config)
        assert self.coalescer is not None
        try:
            outcomes = await self.coalescer.score(key, engine, [it for _, it in valid])
        except Overloaded as exc:
            headers = {"Retry-After": str(exc.retry_after)}
            raise RequestError(503, str(exc), headers=headers, kind="overloaded") from None
        except ShuttingDown as exc:
            raise RequestError(503, str(exc), headers={"Retry-After": "1"}) from None
        for (i, _), outcome in zip(valid, outcomes, strict=True):
            out[i] = outcome
        return out


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it passes ``limit`` bytes (never read whole first)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestError(413, f"the body is {int(declared)} bytes, more than this server's {limit}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestError(413, f"the body is more than this server's {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _json(model: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        model.model_dump_json(exclude_none=status != 200), status_code=status, headers=headers,
        media_type="application/json",
    )  # fmt: skip


def _summary(errors: list[ItemError], n: int) -> str:
    more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{len(errors)} of {n} items not scored: {errors[0].message}{more}"


def _request_body(model: str) -> dict[str, Any]:
    # Bodies are validated by hand (see caprl.server.parse); this documents them in the OpenAPI schema.
    ref = {"$ref": f"#/components/schemas/{model}"}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": ref}}}}


def _error_responses(model: type, *codes: int) -> dict[int | str, dict[str, Any]]:
    what = {
        400: "The body is not JSON.",
        401: "Missing or wrong bearer token.",
        413: "The body, or its number of items, is larger than this server takes.",
        422: "The request, or some of its items, is invalid; the valid items are scored and returned.",
        500: "The engine failed on some items; the reason is given, the other items are returned.",
        503: "Not ready, draining, or overloaded; see Retry-After.",
    }
    return {code: {"model": model, "description": what[code]} for code in codes}


def create_app(source: EngineSource, settings: ServerSettings | None = None) -> FastAPI:
    """The service for ``source``: a ready engine, or a function that builds one (called in a thread at start)."""
    settings = settings or ServerSettings()
    metrics = ServiceMetrics()
    state = ServiceState(source, settings, metrics)

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
        summary="Caption rewards: how well a text-only reader answers each item's MCQs from the caption.",
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
        return _json(body, exc.status, exc.headers)

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

    async def _parse(request: Request, parse: Callable[..., ParsedRequest]) -> ParsedRequest:
        engine = state.gate()
        body = await read_body(request, settings.max_body_bytes)

        def decode() -> ParsedRequest:
            return parse(load_json(body), engine.config, settings, can_count_tokens=engine.count_tokens is not None)

        parsed = await asyncio.to_thread(decode) if len(body) > _THREAD_PARSE_BYTES else decode()
        if parsed.errors:
            metrics.items.labels("invalid").inc(len(parsed.errors))
            metrics.errors.labels("invalid_item").inc(len(parsed.errors))
        return parsed

    def _collect(parsed: ParsedRequest, outcomes: list[Outcome | None], kind: str) -> list[ItemError]:
        errors = list(parsed.errors)
        failures: set[int] = set()
        for i, outcome in enumerate(outcomes):
            if isinstance(outcome, BaseException):
                item = parsed.items[i]
                errors.append(
                    ItemError(
                        index=i, id=item.id if item else None, status=500,
                        message=f"{kind} {i}: the engine failed: {type(outcome).__name__}: {outcome}",
                    )
                )  # fmt: skip
                if id(outcome) not in failures:
                    failures.add(id(outcome))
                    log.error("engine failure: %s", outcome, exc_info=outcome)
            elif isinstance(outcome, RewardResult):
                metrics.items.labels("scored").inc()
                metrics.questions.inc(len(outcome.questions))
                if outcome.parse_failures:
                    metrics.parse_failures.inc(outcome.parse_failures)
        failed = sum(e.status >= 500 for e in errors)
        if failed:
            metrics.items.labels("failed").inc(failed)
            metrics.errors.labels("engine").inc(failed)
        errors.sort(key=lambda e: e.index if e.index is not None else -1)
        return errors

    # --------------------------------------------------------------------------------------------- routes

    @app.post(
        "/v1/rewards",
        summary="Score many captions",
        response_model=None,
        dependencies=guarded,
        openapi_extra=_request_body("RewardsRequest"),
        responses={200: {"model": RewardsResponse}, **_error_responses(ErrorResponse, 400, 401, 413, 422, 500, 503)},
    )
    async def rewards(request: Request) -> Response:
        """One result per item, in request order: the reward, the mean per-question score (``qa``), accuracy,
        optional length/timestamp terms, and per question the shown option order, the chosen letter and the
        reader's letter probabilities. ``options`` overrides the server's reward config for this request."""
        parsed = await _parse(request, parse_rewards_request)
        outcomes = await state.score(parsed)
        errors = _collect(parsed, outcomes, "item")
        results = [o if isinstance(o, RewardResult) else None for o in outcomes]
        if not parsed.include_questions:
            results = [None if r is None else r.model_copy(update={"questions": []}) for r in results]
        if not errors:
            return _json(RewardsResponse(results=results))  # type: ignore[arg-type]
        status = max(e.status for e in errors)
        return _json(ErrorResponse(detail=_summary(errors, len(results)), errors=errors, results=results), status)

    @app.post(
        "/get_reward",
        summary="CapRL-compatible scoring",
        response_model=None,
        dependencies=guarded,
        openapi_extra=_request_body("GetRewardRequest"),
        responses={
            200: {"model": GetRewardResponse},
            **_error_responses(GetRewardErrorResponse, 400, 401, 413, 422, 500, 503),
        },
    )
    async def get_reward(request: Request) -> Response:
        """The CapRL reference endpoint: ``{"prompts": [[caption, [[question_with_options, gold_letter], ...]],
        ...]}`` in, ``{"rewards": [...]}`` out, scored with the server's reward config. Unlike the reference, a
        prompt that cannot be scored is an error naming it (its reward is null), never a silent 0.0."""
        parsed = await _parse(request, parse_get_reward_request)
        outcomes = await state.score(parsed)
        errors = _collect(parsed, outcomes, "prompt")
        rewards = [o.reward if isinstance(o, RewardResult) else None for o in outcomes]
        if not errors:
            return _json(GetRewardResponse(rewards=rewards))  # type: ignore[arg-type]
        status = max(e.status for e in errors)
        body = GetRewardErrorResponse(detail=_summary(errors, len(rewards)), errors=errors, rewards=rewards)
        return _json(body, status)

    @app.get(
        "/health",
        summary="Readiness",
        response_model=None,
        responses={200: {"model": HealthResponse}, 503: {"model": HealthResponse, "description": "Not ready."}},
    )
    async def health() -> Response:
        """200 when the reader is loaded and work is taken; 503 while loading, after a failed load, or while
        shutting down."""
        engine = state.engine
        body = HealthResponse(
            status=state.status,
            detail=state.detail,
            reader=engine.reader.name if engine else None,
            config=engine.config if engine else None,
            pending_items=state.coalescer.pending if state.coalescer else 0,
        )
        return _json(body, 200 if state.status == "ready" else 503)

    @app.get(
        "/metrics",
        summary="Prometheus metrics",
        response_model=None,
        dependencies=guarded,
        responses={
            200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "Prometheus text."},
            **_error_responses(ErrorResponse, 401),
        },
    )
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type=metrics.content_type)

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
