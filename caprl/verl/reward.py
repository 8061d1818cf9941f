"""verl's ``compute_score`` for the CapRL reward, batched client-side into bulk requests to the reward service.

verl (0.6+, the reward loop) calls a custom reward function once per sample, as concurrent ``async`` calls on a
worker's event loop. Sending each as its own HTTP request would cost one round trip per caption and defeat the
service's batching; here every call joins a batch that is sent as one ``POST /v1/rewards`` when it holds
``max_batch`` items or ``max_wait_ms`` after its first item, and each call gets its own item's result back.

Configure it in verl's config::

    reward:
      custom_reward_function:
        path: pkg://caprl.verl.reward
        name: compute_score
        reward_kwargs: {urls: [http://10.0.0.5:18889], n_questions: 4, length_weight: 0.2}

``reward_kwargs`` (or the ``CAPRL_REWARD_URLS`` / ``CAPRL_REWARD_API_KEY`` environment variables) say where the
service is and which ``RewardConfig`` options to send with every request (``mode``, ``n_questions``,
``length_weight``, ``timestamp_weight``, ``seed``, ...; unset ones keep the server's defaults).

``ground_truth`` is what ``caprl data export --to verl`` writes and CapRL's parquet files hold: a list of
``{"question", "choices", "answer"}`` with choices labelled ``"A) x"`` (images) or ``"A. x"`` (videos), or bare.

Failures are loud: a malformed ground truth raises ``ValueError``, an item the service rejects raises
``RewardRequestError`` (for that sample only), an unreachable service raises ``RewardServiceUnavailable`` after
the client's retries. No sample ever silently scores 0.0.
"""

from __future__ import annotations

import asyncio
import json
import os
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from caprl.reward.engine import RewardItem, RewardResult
from caprl.schema import MCQ, SchemaError
from caprl.server.client import AsyncRewardClient, RewardRequestError

DEFAULT_URL = "http://127.0.0.1:18889"
URLS_ENV = "CAPRL_REWARD_URLS"
API_KEY_ENV = "CAPRL_REWARD_API_KEY"
OPTION_KEYS = (
    "mode",
    "n_questions",
    "hard_choice",
    "temperature",
    "blind_score",
    "shuffle",
    "unanswerable_option",
    "path",
    "length_weight",
    "length_full_until",
    "length_zero_at",
    "timestamp_weight",
    "seed",
)


# -- verl rows -> reward items ---------------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """numpy arrays and scalars (how verl hands parquet columns over) as plain Python values."""
    if hasattr(value, "tolist"):
        return value.tolist()
    return value


def mcqs_from_ground_truth(ground_truth: Any) -> list[MCQ]:
    """MCQs from a verl row's ``reward_model.ground_truth`` (list of question/choices/answer, or its JSON)."""
    gt = _plain(ground_truth)
    if isinstance(gt, str):
        try:
            gt = json.loads(gt)
        except json.JSONDecodeError:
            raise ValueError(f"ground_truth is a string but not JSON: {gt[:80]!r}") from None
    if isinstance(gt, Mapping):
        gt = [gt]
    if not isinstance(gt, list) or not gt:
        raise ValueError(f"ground_truth must be a non-empty list of questions, got {type(gt).__name__}")
    mcqs = []
    for i, q in enumerate(gt):
        q = _plain(q)
        try:
            if not isinstance(q, Mapping):
                raise ValueError(f"expected a mapping with question/choices/answer, got {type(q).__name__}")
            raw = q.get("choices") if q.get("choices") is not None else q.get("options")
            choices = [str(c) for c in (_plain(raw) if raw is not None else [])]
            mcqs.append(MCQ.from_labelled(str(q["question"]), choices, _plain(q["answer"])))
        except (KeyError, ValueError, SchemaError) as exc:
            detail = f"missing {exc}" if isinstance(exc, KeyError) else str(exc)
            raise ValueError(f"ground_truth[{i}]: {detail}") from None
    return mcqs


def modality_of(data_source: str, extra_info: Mapping[str, Any] | None) -> str:
    """``video`` or ``image``: from a caprl export's ``extra_info.media``, else from the data source's name."""
    media = (extra_info or {}).get("media")
    if isinstance(media, str):
        try:
            kind = json.loads(media).get("type")
        except (json.JSONDecodeError, AttributeError):
            kind = None
        if kind in ("image", "video"):
            return kind
    return "video" if "video" in str(data_source).lower() else "image"


def reward_item(
    data_source: str,
    solution_str: str,
    ground_truth: Any,
    extra_info: Mapping[str, Any] | None = None,
    *,
    caption_tokens: int | None = None,
) -> RewardItem:
    """The reward request item for one verl sample."""
    info = extra_info or {}
    sid = info.get("id")
    return RewardItem(
        caption=solution_str.strip(),
        mcqs=mcqs_from_ground_truth(ground_truth),
        modality=modality_of(data_source, info),
        id=None if sid is None else str(sid),
        caption_tokens=caption_tokens,
    )


# -- batching --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AdapterSettings:
    urls: tuple[str, ...]
    options: tuple[tuple[str, Any], ...]
    api_key: str | None
    max_batch: int
    max_wait_s: float
    timeout: float
    max_retries: int


class BulkBatcher:
    """Collects single-item calls on one event loop and sends them as bulk requests."""

    def __init__(self, settings: AdapterSettings):
        self.settings = settings
        self.client = AsyncRewardClient(
            list(settings.urls),
            api_key=settings.api_key,
            timeout=settings.timeout,
            max_retries=settings.max_retries,
            chunk_size=settings.max_batch,
        )
        self.requests = 0  # bulk requests sent (for logs and tests)
        self._queue: list[tuple[RewardItem, asyncio.Future]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task] = set()

    async def score(self, item: RewardItem) -> RewardResult:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future = loop.create_future()
        self._queue.append((item, fut))
        if len(self._queue) >= self.settings.max_batch:
            self._flush()
        elif self._timer is None:
            self._timer = loop.call_later(self.settings.max_wait_s, self._flush)
        return await fut

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch, self._queue = self._queue, []
        if batch:
            task = asyncio.get_running_loop().create_task(self._send(batch))
            self._tasks.add(task)  # the loop keeps only a weak reference to tasks
            task.add_done_callback(self._tasks.discard)

    async def _send(self, batch: list[tuple[RewardItem, asyncio.Future]]) -> None:
        self.requests += 1
        items = [b[0] for b in batch]
        try:
            results = await self.client.score(items, options=dict(self.settings.options), include_questions=False)
        except RewardRequestError as exc:
            # Some items were rejected or failed: those calls raise (naming their item), the others get theirs.
            bad = {e.index: e for e in exc.errors if e.index is not None}
            for i, (item, fut) in enumerate(batch):
                got = exc.results[i] if exc.results is not None and i < len(exc.results) else None
                if i in bad:
                    err = RewardRequestError(
                        f"item {item.id or '#'}: {bad[i].message}", status=exc.status, errors=[bad[i]]
                    )
                    _settle(fut, error=err)
                elif got is not None:
                    _settle(fut, result=got)
                else:
                    _settle(fut, error=exc)
        except BaseException as exc:  # noqa: BLE001 - every waiting call must hear about it
            for _, fut in batch:
                _settle(fut, error=exc)
            if not isinstance(exc, Exception):
                raise
        else:
            if len(results) != len(batch):
                err = RuntimeError(f"the reward service returned {len(results)} results for {len(batch)} items")
                for _, fut in batch:
                    _settle(fut, error=err)
                return
            for (_, fut), res in zip(batch, results, strict=True):
                _settle(fut, result=res)


def _settle(fut: asyncio.Future, *, result: Any = None, error: BaseException | None = None) -> None:
    if fut.done():  # the caller was cancelled
        return
    if error is not None:
        fut.set_exception(error)
    else:
        fut.set_result(result)


# One batcher per (event loop, settings): asyncio objects belong to the loop that made them.
_BATCHERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[AdapterSettings, BulkBatcher]] = (
    weakref.WeakKeyDictionary()
)


def _settings(kwargs: Mapping[str, Any]) -> AdapterSettings:
    urls = kwargs.get("urls") or os.environ.get(URLS_ENV) or DEFAULT_URL
    if isinstance(urls, str):
        urls = [u.strip() for u in urls.split(",") if u.strip()]
    key_env = kwargs.get("api_key_env") or API_KEY_ENV
    options = tuple(sorted((k, _plain(kwargs[k])) for k in OPTION_KEYS if kwargs.get(k) is not None))
    return AdapterSettings(
        urls=tuple(str(u) for u in _plain(urls)),
        options=options,
        api_key=os.environ.get(key_env),
        max_batch=int(kwargs.get("max_batch", 256)),
        max_wait_s=float(kwargs.get("max_wait_ms", 20)) / 1000.0,
        timeout=float(kwargs.get("timeout", 300.0)),
        max_retries=int(kwargs.get("max_retries", 6)),
    )


def batcher_for(settings: AdapterSettings) -> BulkBatcher:
    """The batcher of the running event loop for these settings (made on first use)."""
    per_loop = _BATCHERS.setdefault(asyncio.get_running_loop(), {})
    if settings not in per_loop:
        per_loop[settings] = BulkBatcher(settings)
    return per_loop[settings]


_TOKENIZERS: dict[str, Any] = {}


def _count_tokens(text: str, tokenizer: str) -> int:
    if tokenizer not in _TOKENIZERS:
        from transformers import AutoTokenizer

        _TOKENIZERS[tokenizer] = AutoTokenizer.from_pretrained(tokenizer)
    return len(_TOKENIZERS[tokenizer](text, add_special_tokens=False)["input_ids"])


async def compute_score(
    data_source: str,
    solution_str: str,
    ground_truth: Any,
    extra_info: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> dict[str, float]:
    """verl's reward function: the CapRL reward of one caption, with its parts.

    Returns ``{"score", "acc", "qa", "parse_failures"}`` plus ``"length"`` / ``"timestamp"`` when those terms are
    on. Keyword arguments are the ``reward_kwargs`` of verl's config (see the module docstring); others that verl
    passes (``reward_router_address``, ...) are ignored.
    """
    settings = _settings(kwargs)
    tokens = None
    if kwargs.get("length_tokenizer"):
        tokens = _count_tokens(solution_str, str(kwargs["length_tokenizer"]))
    item = reward_item(data_source, solution_str, ground_truth, extra_info, caption_tokens=tokens)
    result = await batcher_for(settings).score(item)
    out: dict[str, float] = {
        "score": float(result.reward),
        "acc": float(result.accuracy),
        "qa": float(result.qa),
        "parse_failures": float(result.parse_failures),
    }
    opts = dict(settings.options)
    if opts.get("length_weight"):
        out["length"] = float(result.length) if result.length is not None else float("nan")
    if opts.get("timestamp_weight"):
        out["timestamp"] = float(result.timestamp) if result.timestamp is not None else 0.0
    return out


def score_batch(rows: Sequence[Mapping[str, Any]], **kwargs: Any) -> list[dict[str, float]]:
    """Score verl-style rows (``data_source``, ``solution_str``, ``ground_truth``, ``extra_info``) from sync
    code, through the same batching path verl uses."""

    async def run() -> list[dict[str, float]]:
        try:
            return list(
                await asyncio.gather(
                    *(
                        compute_score(
                            r["data_source"], r["solution_str"], r["ground_truth"], r.get("extra_info"), **kwargs
                        )
                        for r in rows
                    )
                )
            )
        finally:
            for batcher in _BATCHERS.pop(asyncio.get_running_loop(), {}).values():
                await batcher.client.aclose()

    return asyncio.run(run())
