"""Where the verl reward function sends its samples, and how: settings, the client-side batcher, two protocols.

verl calls a reward function once per sample, concurrently; sending each as its own HTTP request would cost one
round trip per caption and defeat the service's batching. Here every call joins a batch on its event loop that is
sent as one request when it holds ``max_batch`` items or ``max_wait_ms`` after its first item, and each call gets
its own item's result (or its own error) back.

Two protocols, chosen by the URLs:

- **bulk** (``http://host:18889``): caprl's ``POST /v1/rewards``, with the reward options of ``reward_kwargs``
  sent along and every part of each result back;
- **get_reward** (``http://host:18889/get_reward``, as CapRL++'s ``REWARD_REMOTE_URL``): CapRL's body, for a
  CapRL/CapRL++ reward server or caprl's own ``/get_reward``. That body carries no options: the server's own
  settings apply, and asking for others raises instead of being silently ignored.
"""

from __future__ import annotations

import asyncio
import difflib
import os
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from caprl.data.mcq_text import plain, question_string
from caprl.reward.engine import RewardConfig, RewardItem, RewardResult
from caprl.server.client import AsyncRewardClient, RewardRequestError
from caprl.server.protocol import JudgeItemInput, JudgeRewardResult

DEFAULT_URL = "http://127.0.0.1:18889"
URLS_ENV = "CAPRL_REWARD_URLS"
API_KEY_ENV = "CAPRL_REWARD_API_KEY"
GET_REWARD = "/get_reward"
OPTION_KEYS = tuple(RewardConfig.model_fields)
"""The reward options a ``reward_kwargs`` may carry: ``RewardConfig``'s fields, sent to the bulk endpoint."""
# CapRL++'s reward function reads these environment variables; a launch script that sets them keeps working.
# A reward_kwargs key (or CAPRL_REWARD_URLS) wins over them.
CAPRL_ENV = {
    "REWARD_REMOTE_URL": "urls",
    "REWARD_SCORE_MODE": "score_mode",
    "REWARD_LENGTH_WEIGHT": "length_weight",
    "REWARD_LENGTH_L1": "length_full_until",
    "REWARD_LENGTH_L2": "length_zero_at",
    "REWARD_LENGTH_TOKENIZER_PATH": "length_tokenizer",
}
CAPRL_MAX_OPTIONS = 6  # CapRL's servers read options labelled A-F
ADAPTER_KEYS = (
    "urls",
    "score_mode",
    "length_tokenizer",
    "api_key_env",
    "max_batch",
    "max_wait_ms",
    "timeout",
    "max_retries",
)
# What verl itself adds to a reward function's keywords (its reward loop, with a reward-model router configured);
# the QA reward has no use for them.
VERL_KEYS = ("reward_router_address", "reward_model_tokenizer")


@dataclass(frozen=True)
class AdapterSettings:
    """What one ``reward_kwargs`` asks for: where, which protocol, which options, batching and client limits."""

    urls: tuple[str, ...]
    protocol: Literal["bulk", "get_reward"]
    score_mode: Literal["qa", "vl_judge"]
    options: tuple[tuple[str, Any], ...]
    api_key: str | None
    max_batch: int
    max_wait_s: float
    timeout: float
    max_retries: int
    length_tokenizer: str | None

    @property
    def option_dict(self) -> dict[str, Any]:
        return dict(self.options)

    @property
    def client_side_length(self) -> bool:
        """Whether the length term is added here: the server cannot (CapRL's body, or judge items)."""
        return bool(self.option_dict.get("length_weight")) and (
            self.protocol == "get_reward" or self.score_mode == "vl_judge"
        )


def _number(key: str, value: Any) -> Any:
    if isinstance(value, str) and key in ("length_weight", "length_full_until", "length_zero_at"):
        return float(value) if key == "length_weight" else int(value)
    return value


def read_settings(kwargs: Mapping[str, Any]) -> AdapterSettings:
    """``reward_kwargs`` (and the environment) as settings; ValueError for a combination that cannot work."""
    _check_keys(kwargs)
    given = {k: plain(v) for k, v in kwargs.items() if v is not None and k not in VERL_KEYS}
    for env, key in CAPRL_ENV.items():
        if key not in given and os.environ.get(env, "").strip():
            if key == "urls" and os.environ.get(URLS_ENV):
                continue
            given[key] = _number(key, os.environ[env].strip())
    urls = given.get("urls") or os.environ.get(URLS_ENV) or DEFAULT_URL
    if isinstance(urls, str):
        urls = [u.strip() for u in urls.split(",") if u.strip()]
    urls = [str(u).rstrip("/") for u in urls]
    ends = {u.endswith(GET_REWARD) for u in urls}
    if len(ends) != 1:
        raise ValueError(f"urls mix caprl's bulk endpoint and /get_reward servers: {urls}; use one protocol")
    protocol: Literal["bulk", "get_reward"] = "get_reward" if ends == {True} else "bulk"
    if protocol == "get_reward":
        urls = [u[: -len(GET_REWARD)] for u in urls]
    mode = str(given.get("score_mode", "qa")).strip().lower()
    if mode not in ("qa", "vl_judge"):
        raise ValueError(f"score_mode must be 'qa' or 'vl_judge', got {mode!r}")
    options = {k: given[k] for k in OPTION_KEYS if k in given}
    if protocol == "get_reward" or mode == "vl_judge":
        # CapRL's body and judge items take no reward options; only the length term can be added here.
        ignored = sorted(set(options) - {"length_weight", "length_full_until", "length_zero_at"})
        if ignored:
            where = "a /get_reward server" if protocol == "get_reward" else "judge items"
            raise ValueError(
                f"reward options {ignored} cannot be sent to {where}: set them where the server is started"
            )
    client_length = protocol == "get_reward" or mode == "vl_judge"
    if options.get("length_weight") and client_length and not given.get("length_tokenizer"):
        raise ValueError("length_weight needs length_tokenizer (the policy's tokenizer) to count caption tokens")
    key_env = given.get("api_key_env") or API_KEY_ENV
    return AdapterSettings(
        urls=tuple(urls),
        protocol=protocol,
        score_mode=mode,  # type: ignore[arg-type]
        options=tuple(sorted(options.items())),
        api_key=os.environ.get(key_env),
        max_batch=int(given.get("max_batch", 256)),
        max_wait_s=float(given.get("max_wait_ms", 20)) / 1000.0,
        timeout=float(given.get("timeout", 300.0)),
        max_retries=int(given.get("max_retries", 6)),
        length_tokenizer=str(given["length_tokenizer"]) if given.get("length_tokenizer") else None,
    )


def _check_keys(kwargs: Mapping[str, Any]) -> None:
    """A misspelled ``reward_kwargs`` key would silently run without what it asked for: refuse it."""
    known = (*ADAPTER_KEYS, *OPTION_KEYS, *VERL_KEYS)
    unknown = sorted(k for k in kwargs if k not in known)
    if not unknown:
        return
    hints = [
        f"{k!r} (did you mean {close[0]!r}?)" if (close := difflib.get_close_matches(k, known, n=1)) else repr(k)
        for k in unknown
    ]
    raise ValueError(
        f"unknown reward_kwargs {', '.join(hints)}; known: {', '.join(ADAPTER_KEYS)}, and the reward options "
        f"{', '.join(OPTION_KEYS)}"
    )


# ------------------------------------------------------------------------------------------------ requests

Request = RewardItem | JudgeItemInput
Outcome = RewardResult | JudgeRewardResult | dict[str, float]


def _caprl_prompt(item: RewardItem) -> list[Any]:
    pairs = []
    for j, q in enumerate(item.mcqs):
        if len(q.options) > CAPRL_MAX_OPTIONS:
            raise ValueError(
                f"question {j} has {len(q.options)} options; CapRL's /get_reward servers read at most "
                f"{CAPRL_MAX_OPTIONS} (A-F)"
            )
        pairs.append([question_string(q), q.gold_letter])
    return [item.caption, pairs]


async def _send_bulk(client: AsyncRewardClient, items: list[Request], settings: AdapterSettings) -> list[Any]:
    options = None if settings.score_mode == "vl_judge" else settings.option_dict
    try:
        return list(await client.score(items, options=options or None, include_questions=False))
    except RewardRequestError as exc:
        return _per_item(exc, len(items), exc.results)


async def _send_get_reward(client: AsyncRewardClient, items: list[Request], settings: AdapterSettings) -> list[Any]:
    if settings.score_mode == "vl_judge":
        body: dict[str, Any] = {
            "score_mode": "vl_judge",
            "samples": [{"caption": it.caption, "video_path": it.media.path} for it in items],  # type: ignore[union-attr]
        }
    else:
        body = {"prompts": [_caprl_prompt(it) for it in items], "query": [], "labels": []}  # type: ignore[arg-type]
    try:
        data = await client.post_get_reward(body)
    except RewardRequestError as exc:
        return _per_item(exc, len(items), exc.rewards)
    rewards = data["rewards"]
    if len(rewards) != len(items):
        raise RuntimeError(f"the /get_reward server returned {len(rewards)} rewards for {len(items)} samples")
    parts = {key: data.get(key) for key in ("qa_rewards", "format_rewards", "judge_rewards")}
    out: list[Any] = []
    for i, reward in enumerate(rewards):
        if isinstance(reward, bool) or not isinstance(reward, int | float):
            out.append(RuntimeError(f"the /get_reward server answered {reward!r} as sample {i}'s reward"))
            continue
        got = {"score": float(reward)}
        for key, values in parts.items():
            if isinstance(values, list) and len(values) == len(rewards) and isinstance(values[i], int | float):
                got[key.removesuffix("_rewards")] = float(values[i])
        out.append(got)
    return out


def _per_item(exc: RewardRequestError, n: int, scored: list[Any] | None) -> list[Any]:
    """Per item: what was scored, or the error that names it (an error naming no item takes every item)."""
    bad = {e.index: e for e in exc.errors if e.index is not None}
    out: list[Any] = []
    for i in range(n):
        got = scored[i] if scored is not None and i < len(scored) else None
        if i in bad:
            out.append(RewardRequestError(f"sample {i} of the batch: {bad[i].message}", status=exc.status,
                                          errors=[bad[i]]))  # fmt: skip
        elif got is not None:
            out.append({"score": float(got)} if isinstance(got, int | float) else got)
        else:
            out.append(exc)
    return out


# ------------------------------------------------------------------------------------------------ batching


class Batcher:
    """Collects single-item calls on one event loop and sends them as one request per batch."""

    def __init__(self, settings: AdapterSettings):
        self.settings = settings
        self.client = AsyncRewardClient(
            list(settings.urls), api_key=settings.api_key, timeout=settings.timeout,
            max_retries=settings.max_retries, chunk_size=settings.max_batch,
        )  # fmt: skip
        self.requests = 0  # requests sent (for logs and tests)
        self._queue: list[tuple[Request, asyncio.Future]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task] = set()

    async def score(self, item: Request) -> Outcome:
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

    async def _send(self, batch: list[tuple[Request, asyncio.Future]]) -> None:
        self.requests += 1
        items = [b[0] for b in batch]
        send = _send_get_reward if self.settings.protocol == "get_reward" else _send_bulk
        try:
            outcomes = await send(self.client, items, self.settings)
            if len(outcomes) != len(batch):
                raise RuntimeError(f"the reward service returned {len(outcomes)} results for {len(batch)} items")
        except BaseException as exc:  # noqa: BLE001 - every waiting call must hear about it
            for _, fut in batch:
                _settle(fut, error=exc)
            if not isinstance(exc, Exception):
                raise
            return
        for (_, fut), outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                _settle(fut, error=outcome)
            else:
                _settle(fut, result=outcome)


def _settle(fut: asyncio.Future, *, result: Any = None, error: BaseException | None = None) -> None:
    if fut.done():  # the caller was cancelled
        return
    if error is not None:
        fut.set_exception(error)
    else:
        fut.set_result(result)


# One batcher per (event loop, settings): asyncio objects belong to the loop that made them.
_BATCHERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[AdapterSettings, Batcher]] = (
    weakref.WeakKeyDictionary()
)


def batcher_for(settings: AdapterSettings) -> Batcher:
    """The batcher of the running event loop for these settings (made on first use)."""
    per_loop = _BATCHERS.setdefault(asyncio.get_running_loop(), {})
    if settings not in per_loop:
        per_loop[settings] = Batcher(settings)
    return per_loop[settings]


async def close_batchers() -> None:
    """Close the clients of the running loop's batchers (the sync helpers' private loops end with this)."""
    for batcher in _BATCHERS.pop(asyncio.get_running_loop(), {}).values():
        await batcher.client.aclose()
