"""The reward service's endpoints (``POST /v1/rewards``, ``POST /get_reward``, ``GET /health``, ``GET /metrics``) as
a router over the app's ``ServiceState``, and how their answers are shaped. ``caprl.server.app`` mounts them; the
module docstring there lists the status codes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request, Response

from caprl.reward.engine import RewardConfig, RewardResult
from caprl.reward.judge import JudgeResult
from caprl.server.batcher import Outcome
from caprl.server.judging import JudgeJob, MediaProblem, judge_reward_result
from caprl.server.metrics import ServiceMetrics
from caprl.server.parse import (
    ParsedRequest,
    RequestError,
    item_error,
    load_json,
    parse_get_reward_request,
    parse_rewards_request,
)
from caprl.server.protocol import (
    ErrorResponse,
    GetRewardErrorResponse,
    GetRewardResponse,
    HealthResponse,
    ItemError,
    JudgeRewardResult,
    RewardsResponse,
)
from caprl.server.state import ServiceState

log = logging.getLogger("caprl.server")

_THREAD_PARSE_BYTES = 256 * 1024  # larger bodies are decoded off the event loop, which keeps serving meanwhile
_JUDGE_ONLY_CONFIG = RewardConfig()  # validates a judge-only server's request options; QA items are refused there


def service(request: Request) -> ServiceState:
    return request.app.state.service


def json_response(model: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
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


async def parse_body(
    state: ServiceState, request: Request, parse: Callable[..., ParsedRequest], **kwargs: Any
) -> ParsedRequest:
    """The request's body read (413 past the limit) and parsed against the service's reward config; invalid items
    counted in the metrics."""
    settings, metrics = state.settings, state.metrics
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


def collect_errors(
    metrics: ServiceMetrics, parsed: ParsedRequest, outcomes: list[Outcome | None], kind: str
) -> list[ItemError]:
    """Every item's error (parse errors, media that could not be decoded, engine and judge failures), by index;
    counted in the metrics."""
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


def router(guarded: list[Any]) -> APIRouter:
    """The endpoints; ``guarded`` are the dependencies (the bearer check) of every endpoint but ``/health``."""
    router = APIRouter()

    @router.post(
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
        state = service(request)
        parsed = await parse_body(
            state, request, parse_rewards_request, has_reader=state.has_reader, has_judge=state.has_judge
        )
        outcomes = await state.score(parsed)
        errors = collect_errors(state.metrics, parsed, outcomes, "item")
        results: list[RewardResult | JudgeRewardResult | None] = []
        for o in outcomes:
            if isinstance(o, RewardResult):
                results.append(o if parsed.include_questions else o.model_copy(update={"questions": []}))
            elif isinstance(o, JudgeResult) and o.ok:
                results.append(judge_reward_result(o))
            else:
                results.append(None)
        if not errors:
            return json_response(RewardsResponse(results=results))  # type: ignore[arg-type]
        status = max(e.status for e in errors)
        return json_response(
            ErrorResponse(detail=_summary(errors, len(results)), errors=errors, results=results), status
        )

    @router.post(
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
        state = service(request)
        parsed = await parse_body(
            state, request, parse_get_reward_request, has_reader=state.has_reader, has_judge=state.has_judge
        )
        judge = any(m == "judge" for m in parsed.modes)
        outcomes = await state.score(parsed)
        errors = collect_errors(state.metrics, parsed, outcomes, "sample" if judge else "prompt")
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
            return json_response(body, status)
        answer = GetRewardResponse(rewards=rewards)  # type: ignore[arg-type]
        if judge:
            answer.judge_rewards = list(answer.rewards)
        else:
            results = [o for o in outcomes if isinstance(o, RewardResult)]
            answer.qa_rewards = [r.qa for r in results]
            if parsed.config.timestamp_weight and state.settings.get_reward_modality == "video":
                answer.format_rewards = [r.timestamp or 0.0 for r in results]
        return Response(answer.model_dump_json(exclude_none=True), media_type="application/json")

    @router.get(
        "/health",
        summary="Readiness",
        response_model=None,
        responses={200: {"model": HealthResponse}, 503: {"model": HealthResponse, "description": "Not ready."}},
    )
    async def health(request: Request) -> Response:
        """200 when every model the server was started with (the reader, the judge) is loaded and work is taken;
        503 while loading, after a failed load, or while shutting down."""
        state = service(request)
        engine = state.engine
        body = HealthResponse(
            status=state.status,
            detail=state.detail,
            reader=engine.reader.name if engine else None,
            judge=state.judge.name if state.judge else None,
            config=engine.config if engine else None,
            pending_items=state.pending,
        )
        return json_response(body, 200 if state.status == "ready" else 503)

    @router.get(
        "/metrics",
        summary="Prometheus metrics",
        response_model=None,
        dependencies=guarded,
        responses={
            200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "Prometheus text."},
            **_error_responses(ErrorResponse, 401),
        },
    )
    async def prometheus(request: Request) -> Response:
        metrics = service(request).metrics
        return Response(metrics.render(), media_type=metrics.content_type)

    return router
