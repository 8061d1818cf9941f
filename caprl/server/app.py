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
from caprl.reward.claims import ClaimCheck, ClaimVerifier
from caprl.reward.engine import RewardConfig, RewardEngine, RewardItem, RewardResult
from caprl.reward.judge import JudgeResult, VLMJudge
from caprl.server.batcher import Coalescer, Outcome, Overloaded, ShuttingDown
from caprl.server.judging import (
    CLAIMS_KEY,
    JUDGE_KEY,
    ClaimCheckRunner,
    JudgeJob,
    JudgeRunner,
    MediaProblem,
    judge_reward_result,
)
from caprl.server.metrics import ServiceMetrics
from caprl.server.parse import (
    ParsedRequest,
    RequestError,
    check_config,
    item_error,
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
    JudgeRewardResult,
    RewardsRequest,
    RewardsResponse,
)
from caprl.server.settings import ServerSettings

log = logging.getLogger("caprl.server")

EngineSource = RewardEngine | Callable[[], RewardEngine]
JudgeSource = VLMJudge | Callable[[], VLMJudge]
_ENDPOINTS = frozenset({"/v1/rewards", "/get_reward", "/health", "/metrics"})
_MAX_ENGINES = 32  # engines for per-request option sets (cheap: they share the reader)
_THREAD_PARSE_BYTES = 256 * 1024  # larger bodies are decoded off the event loop, which keeps serving meanwhile
_JUDGE_ONLY_CONFIG = RewardConfig()  # validates a judge-only server's request options; QA items are refused there
_ERROR_KIND = {400: "bad_json", 401: "unauthorized", 413: "too_large", 422: "invalid_request", 503: "not_ready"}


class _EachItem:
    """An engine as its coalescer runs it: an item whose claims could not be verified fails alone (its exception in
    its place), without the batch being split and read again to find it."""

    def __init__(self, engine: RewardEngine):
        self.engine = engine

    def score(self, items: list[RewardItem]) -> list[RewardResult | Exception]:
        return self.engine.score_each(items)


class ServiceState:
    """The models (once loaded: the reader's engine, the judge), the engines for per-request options, the
    coalescers (one per model), and the service status."""

    def __init__(
        self,
        source: EngineSource | None,
        settings: ServerSettings,
        metrics: ServiceMetrics,
        judge: JudgeSource | None = None,
    ):
        if source is None and judge is None:
            raise ValueError("the service needs a reader engine, a judge, or both")
        self.source, self.judge_source, self.settings, self.metrics = source, judge, settings, metrics
        self.status: Literal["loading", "ready", "failed", "draining"] = "loading"
        self.detail: str | None = None
        self.engine: RewardEngine | None = None
        self.judge: JudgeRunner | None = None
        self.coalescer: Coalescer | None = None
        self.judge_coalescer: Coalescer | None = None
        self.on_load_failure: Callable[[BaseException], None] | None = None
        self.verifier: ClaimVerifier | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._engines: OrderedDict[str, RewardEngine] = OrderedDict()
        self._load_task: asyncio.Task[None] | None = None

    @property
    def has_reader(self) -> bool:
        return self.source is not None

    @property
    def has_judge(self) -> bool:
        return self.judge_source is not None

    @property
    def pending(self) -> int:
        return sum(c.pending for c in (self.coalescer, self.judge_coalescer) if c is not None)

    async def start(self) -> None:
        s = self.settings
        self._loop = asyncio.get_running_loop()
        wait = s.max_wait_ms / 1000
        if self.has_reader:
            self.coalescer = Coalescer(
                max_batch=s.max_batch, max_wait=wait, max_pending=s.max_pending, metrics=self.metrics.qa_batches
            )
            self.coalescer.start()
        if self.has_judge:
            self.judge_coalescer = Coalescer(
                max_batch=s.judge_max_batch, max_wait=wait, max_pending=s.judge_max_pending,
                metrics=self.metrics.judge_batches,
            )  # fmt: skip
            self.judge_coalescer.start()
        if isinstance(self.source, RewardEngine):
            self._set_engine(self.source)
        if isinstance(self.judge_source, VLMJudge):
            self._set_judge(self.judge_source)
        if self._loaded():
            self._ready()
        else:
            # Loading runs in the background so /health can say "loading" instead of the port being closed.
            self._load_task = asyncio.get_running_loop().create_task(self._load())

    def _loaded(self) -> bool:
        return (self.engine is not None or not self.has_reader) and (self.judge is not None or not self.has_judge)

    async def _load(self) -> None:
        # One model after the other: two loads at once would contend for the same disk and device memory.
        for what in ("reader", "judge"):
            source = self.source if what == "reader" else self.judge_source
            if source is None or isinstance(source, (RewardEngine, VLMJudge)):
                continue
            started = time.perf_counter()
            try:
                model = await asyncio.to_thread(source)
                if what == "reader":
                    self._set_engine(model)  # type: ignore[arg-type]
                else:
                    self._set_judge(model)  # type: ignore[arg-type]
            except Exception as exc:
                self.status, self.detail = "failed", f"the {what} failed to load: {type(exc).__name__}: {exc}"
                log.error("%s", self.detail, exc_info=exc)
                if self.on_load_failure is not None:
                    self.on_load_failure(exc)
                return
            name = self.engine.reader.name if what == "reader" else self.judge.name  # type: ignore[union-attr]
            log.info("%s %s ready in %.1f s", what, name, time.perf_counter() - started)
        self._ready()

    def _set_engine(self, engine: RewardEngine) -> None:
        check_config(engine.config, self.settings)  # a server started with a config it would refuse is a bug
        self.engine = engine

    def _set_judge(self, judge: VLMJudge) -> None:
        if not isinstance(judge, VLMJudge):
            raise TypeError(f"the judge factory returned {type(judge).__name__}, not a VLMJudge")
        self.judge = JudgeRunner(judge)

    def _wire_claims(self) -> None:
        """With both models loaded, QA items with media get the claim verifier for their correctness term: the
        reader splits (in the reader's worker), the judge checks (queued on the judge's worker, see
        ``_check_claims``). An engine that came with its own verifier keeps it."""
        base, runner = self.engine, self.judge
        if base is None or runner is None or base.verifier is not None:
            return
        vlm = runner.judge
        self.verifier = ClaimVerifier(
            base.reader, vlm.captioner, retries=vlm.retries, retry_temperature=vlm.retry_temperature,
            judge_settings=vlm.settings, system=vlm.system, seed=base.config.seed, check_via=self._check_claims,
        )  # fmt: skip
        self.engine = RewardEngine(
            base.reader, base.config, template=base.template, count_tokens=base.count_tokens, verifier=self.verifier
        )

    def _check_claims(self, jobs: list[ClaimCheck]) -> list[Any]:
        """Run claim checks on the judge's coalescer from the reader's worker thread, and wait for them. The judge's
        worker never waits on the reader's, so this cannot deadlock."""
        assert self.judge_coalescer is not None and self._loop is not None and self.verifier is not None
        work = self.judge_coalescer.score(CLAIMS_KEY, ClaimCheckRunner(self.verifier), list(jobs))
        return asyncio.run_coroutine_threadsafe(work, self._loop).result()

    def _ready(self) -> None:
        self._wire_claims()
        if self.status == "loading":
            self.status, self.detail = "ready", None
            self.metrics.ready.set(1)

    async def stop(self) -> None:
        self.status = "draining"
        self.metrics.ready.set(0)
        if self._load_task is not None and not self._load_task.done():
            self._load_task.cancel()  # the loading thread itself runs on, but nothing waits for it
        for coalescer in (self.coalescer, self.judge_coalescer):
            if coalescer is not None:
                await coalescer.close()

    def gate(self) -> None:
        """Return when the service takes work; else a 503 saying why not."""
        if self.status == "ready":
            return
        if self.status == "loading":
            retry = str(self.settings.load_retry_after_s)
            what = (
                "the reader is" if not self.has_judge else "the judge is" if not self.has_reader else "the models are"
            )
            raise RequestError(503, f"{what} still loading; retry shortly", headers={"Retry-After": retry})
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
            engine = RewardEngine(
                base.reader, config, template=base.template, count_tokens=base.count_tokens, verifier=base.verifier
            )
            self._engines[key] = engine
            if len(self._engines) > _MAX_ENGINES:
                self._engines.popitem(last=False)
        else:
            self._engines.move_to_end(key)
        return key, engine

    async def score(self, parsed: ParsedRequest) -> list[Outcome | None]:
        """Per request item: its result, the exception that took it, or None (invalid, see ``parsed.errors``)."""
        out: list[Outcome | None] = [None] * len(parsed.items)
        qa = [(i, it) for i, it in parsed.valid if isinstance(it, RewardItem)]
        judged = [(i, it) for i, it in parsed.valid if isinstance(it, JudgeJob)]
        calls = []
        try:
            # Both checked before either is queued, so an overloaded judge does not leave reader work behind.
            if qa:
                assert self.coalescer is not None
                self.coalescer.check_admission(len(qa))
            # QA items whose claims the judge will check count against the judge's bound too.
            checks = (
                sum(it.media is not None and it.scene is None for _, it in qa)
                if parsed.config.correctness_weight
                else 0
            )
            if judged or checks:
                assert self.judge_coalescer is not None
                self.judge_coalescer.check_admission(len(judged) + checks)
            if qa:
                key, engine = self.engine_for(parsed.config)
                calls.append(self.coalescer.score(key, _EachItem(engine), [it for _, it in qa]))  # type: ignore
            if judged:
                runner = self.judge
                calls.append(self.judge_coalescer.score(JUDGE_KEY, runner, [it for _, it in judged]))  # type: ignore
            parts = await asyncio.gather(*calls)
        except Overloaded as exc:
            headers = {"Retry-After": str(exc.retry_after)}
            raise RequestError(503, str(exc), headers=headers, kind="overloaded") from None
        except ShuttingDown as exc:
            raise RequestError(503, str(exc), headers={"Retry-After": "1"}) from None
        for group, outcomes in zip([g for g in (qa, judged) if g], parts, strict=True):
            for (i, _), outcome in zip(group, outcomes, strict=True):
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
        500: "The engine or the judge failed on some items; the reason is given, the other items are returned.",
        503: "Not ready, draining, or overloaded; see Retry-After.",
    }
    return {code: {"model": model, "description": what[code]} for code in codes}


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

    async def _parse(request: Request, parse: Callable[..., ParsedRequest], **kwargs: Any) -> ParsedRequest:
        state.gate()
        engine = state.engine
        config = engine.config if engine is not None else _JUDGE_ONLY_CONFIG
        can_count = engine is not None and engine.count_tokens is not None
        body = await read_body(request, settings.max_body_bytes)

        def decode() -> ParsedRequest:
            return parse(load_json(body), config, settings, can_count_tokens=can_count, **kwargs)

        parsed = await asyncio.to_thread(decode) if len(body) > _THREAD_PARSE_BYTES else decode()
        if parsed.errors:
            metrics.items.labels("invalid").inc(len(parsed.errors))
            metrics.errors.labels("invalid_item").inc(len(parsed.errors))
            judged = sum(e.index is not None and parsed.mode(e.index) == "judge" for e in parsed.errors)
            if judged:
                metrics.judge_items.labels("invalid").inc(judged)
        return parsed

    def _collect(parsed: ParsedRequest, outcomes: list[Outcome | None], kind: str) -> list[ItemError]:
        errors = list(parsed.errors)
        failures: set[int] = set()
        engine_failed = judge_failed = 0
        for i, outcome in enumerate(outcomes):
            item = parsed.items[i]
            item_id = item.id if item is not None else None
            where = f"{kind} {i}" + (f" (id {item_id!r})" if item_id is not None else "")
            if isinstance(outcome, MediaProblem):  # media that passed parsing but could not be decoded
                errors.append(item_error(kind, i, item_id, outcome))
                metrics.items.labels("invalid").inc()
                metrics.judge_items.labels("invalid").inc()
                metrics.errors.labels("invalid_item").inc()
            elif isinstance(outcome, BaseException):
                judged = isinstance(item, JudgeJob)
                what = "the judge" if judged else "the engine"
                errors.append(
                    ItemError(
                        index=i, id=item_id, status=500, raw=getattr(outcome, "raw", None) or None,
                        message=f"{where}: {what} failed: {type(outcome).__name__}: {outcome}",
                    )
                )  # fmt: skip
                if judged:
                    judge_failed += 1
                else:
                    engine_failed += 1
                if id(outcome) not in failures:
                    failures.add(id(outcome))
                    log.error("%s failure: %s", what.removeprefix("the "), outcome, exc_info=outcome)
            elif isinstance(outcome, RewardResult):
                metrics.items.labels("scored").inc()
                metrics.questions.inc(len(outcome.questions))
                if outcome.parse_failures:
                    metrics.parse_failures.inc(outcome.parse_failures)
            elif isinstance(outcome, JudgeResult):
                if outcome.errors:
                    metrics.judge_parse_failures.inc(len(outcome.errors))
                if outcome.ok:
                    metrics.items.labels("scored").inc()
                    metrics.judge_items.labels("scored").inc()
                else:
                    # No valid scores after every retry (or the judge call failed): an error, never a made-up reward.
                    errors.append(
                        ItemError(
                            index=i, id=item_id, status=500, raw=list(outcome.raw) or None,
                            message=f"{where}: the judge gave no score: {outcome.error}",
                        )
                    )  # fmt: skip
                    judge_failed += 1
        if engine_failed or judge_failed:
            metrics.items.labels("failed").inc(engine_failed + judge_failed)
        if engine_failed:
            metrics.errors.labels("engine").inc(engine_failed)
        if judge_failed:
            metrics.judge_items.labels("failed").inc(judge_failed)
            metrics.errors.labels("judge").inc(judge_failed)
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
        """One result per item, in request order.

        QA items: the reward, the mean per-question score (``qa``), accuracy, optional length/timestamp terms,
        and per question the shown option order, the chosen letter and the reader's letter probabilities.
        ``options`` overrides the server's reward config for this request.

        Judge items (``"mode": "judge"`` and ``media``; a server started with ``--judge``): the fused judge score
        as the reward, the per-dimension scores (0-10), the attempts and every raw answer. A judge that gives no
        valid scores after its retries fails the item (500, with the reason and its answers)."""
        parsed = await _parse(request, parse_rewards_request, has_reader=state.has_reader, has_judge=state.has_judge)
        outcomes = await state.score(parsed)
        errors = _collect(parsed, outcomes, "item")
        results: list[RewardResult | JudgeRewardResult | None] = []
        for o in outcomes:
            if isinstance(o, RewardResult):
                results.append(o if parsed.include_questions else o.model_copy(update={"questions": []}))
            elif isinstance(o, JudgeResult) and o.ok:
                results.append(judge_reward_result(o))
            else:
                results.append(None)
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
        """CapRL's endpoint. QA: ``{"prompts": [[caption, [[question_with_options, gold_letter], ...]], ...]}`` in,
        ``{"rewards", "qa_rewards"}`` out (``format_rewards`` too on a video server with a timestamp weight), scored
        with the server's reward config as ``--modality`` items. VLM judge (CapRL++): ``{"score_mode": "vl_judge",
        "samples": [{"caption", "video_path"}]}`` in, ``{"rewards", "judge_rewards"}`` out. Unlike CapRL, a prompt
        or sample that cannot be scored is an error naming it (its reward is null), never a silent 0.0."""
        parsed = await _parse(request, parse_get_reward_request, has_reader=state.has_reader, has_judge=state.has_judge)
        judge = any(m == "judge" for m in parsed.modes)
        outcomes = await state.score(parsed)
        errors = _collect(parsed, outcomes, "sample" if judge else "prompt")
        rewards: list[float | None] = []
        for o in outcomes:
            if isinstance(o, RewardResult):
                rewards.append(o.reward)
            elif isinstance(o, JudgeResult) and o.ok:
                rewards.append(judge_reward_result(o).reward)
            else:
                rewards.append(None)
        if errors:
            status = max(e.status for e in errors)
            body = GetRewardErrorResponse(detail=_summary(errors, len(rewards)), errors=errors, rewards=rewards)
            return _json(body, status)
        answer = GetRewardResponse(rewards=rewards)  # type: ignore[arg-type]
        if judge:
            answer.judge_rewards = list(answer.rewards)
        else:
            results = [o for o in outcomes if isinstance(o, RewardResult)]
            answer.qa_rewards = [r.qa for r in results]
            if parsed.config.timestamp_weight and settings.get_reward_modality == "video":
                answer.format_rewards = [r.timestamp or 0.0 for r in results]
        return Response(answer.model_dump_json(exclude_none=True), media_type="application/json")

    @app.get(
        "/health",
        summary="Readiness",
        response_model=None,
        responses={200: {"model": HealthResponse}, 503: {"model": HealthResponse, "description": "Not ready."}},
    )
    async def health() -> Response:
        """200 when every model the server was started with (the reader, the judge) is loaded and work is taken;
        503 while loading, after a failed load, or while shutting down."""
        engine = state.engine
        body = HealthResponse(
            status=state.status,
            detail=state.detail,
            reader=engine.reader.name if engine else None,
            judge=state.judge.name if state.judge else None,
            config=engine.config if engine else None,
            pending_items=state.pending,
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
