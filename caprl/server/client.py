"""Client of the reward service, for trainers and the verl adapter: async and sync, several servers, retries.

- **Bulk**: ``score`` sends items in chunks of ``chunk_size``; chunks go out concurrently (at most
  ``max_concurrency`` requests in flight) and results come back in the order of the items.
- **Several servers**: each request goes to the server with the fewest requests in flight from this client
  (ties rotate); a server that refused a connection is skipped for a moment, and a retry prefers another server.
- **Retries** with exponential backoff and full jitter on connection errors, timeouts, 429, 502, 503 and 504
  (honouring Retry-After when the same server is tried again). Scoring is deterministic, so a retried request
  gets the same rewards.
- **Failures are loud**: ``RewardServiceUnavailable`` when every attempt failed (it lists them);
  ``RewardRequestError`` when a server answered but did not score every item (4xx: invalid request or items;
  500: the engine failed) — with the per-item errors and the rewards of the items that were scored.

- **Judge items** (servers started with ``--judge``): ``JudgeItemInput`` objects (``JudgeItemInput.image(caption,
  pil_image)``, ``JudgeItemInput.video(caption, "clips/a.mp4")``) or dicts with ``"mode": "judge"`` and ``media``
  are sent as they are, mixed freely with QA items; their results are ``JudgeRewardResult``.

>>> client = RewardClient(["http://10.0.0.5:18889", "http://10.0.0.6:18889"])    # doctest: +SKIP
>>> client.score([RewardItem(caption=c, mcqs=sample.mcqs)])[0].reward             # doctest: +SKIP
>>> client.score([JudgeItemInput.image(c, image)])[0].scores                      # doctest: +SKIP
>>> client.get_reward([[caption, [["What colour?\\nA) red\\nB) blue", "B"]]]])    # doctest: +SKIP
[0.5]
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel

from caprl.background import LoopThread
from caprl.http import RetryPolicy, excerpt, parse_retry_after
from caprl.reward.engine import RewardItem
from caprl.server.protocol import ItemError, ItemResult, result_from_json

T = TypeVar("T")

RETRY_STATUSES = frozenset({429, 502, 503, 504})
DEFAULT_PORT = 18889


class RewardServiceError(RuntimeError):
    """Base of the client's errors."""


class RewardServiceUnavailable(RewardServiceError):
    """Every attempt failed: ``causes`` has one line per attempt (server, and what happened)."""

    def __init__(self, message: str, *, causes: list[str], status: int | None = None):
        super().__init__(message)
        self.causes, self.status = causes, status


class RewardRequestError(RewardServiceError):
    """A server answered but did not score every item.

    ``errors`` name each failed item (index in the caller's list, field, reason); ``results`` (``score``) or
    ``rewards`` (``get_reward``) hold what was scored, None elsewhere, so one bad item costs nothing else.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int,
        errors: list[ItemError],
        results: list[ItemResult | None] | None = None,
        rewards: list[float | None] | None = None,
    ):
        super().__init__(message)
        self.status, self.errors, self.results, self.rewards = status, errors, results, rewards


def _item_json(item: RewardItem | BaseModel | Mapping[str, Any]) -> Any:
    if isinstance(item, BaseModel):  # RewardItem, JudgeItemInput, ItemInput
        return item.model_dump(mode="json", exclude_none=True)
    return item


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class AsyncRewardClient:
    """Talks to one or more reward services. Use from one event loop (the one of its first request)."""

    def __init__(
        self,
        urls: str | Sequence[str],
        *,
        api_key: str | None = None,
        timeout: float = 300.0,
        max_retries: int = 6,
        backoff_base: float = 0.25,
        backoff_max: float = 10.0,
        max_retry_after: float = 60.0,
        chunk_size: int = 256,
        max_concurrency: int = 16,
        retry_statuses: frozenset[int] = RETRY_STATUSES,
        seed: int | None = None,
    ):
        urls = [urls] if isinstance(urls, str) else list(urls)
        if not urls:
            raise ValueError("give at least one server URL")
        if chunk_size < 1 or max_concurrency < 1 or max_retries < 0:
            raise ValueError("chunk_size and max_concurrency must be >= 1, max_retries >= 0")
        self.urls = [u.rstrip("/") for u in urls]
        self.policy = RetryPolicy(
            max_retries=max_retries, timeout=timeout, backoff_base=backoff_base, backoff_max=backoff_max,
            max_retry_after=max_retry_after,
        )  # fmt: skip
        self.chunk_size, self.max_concurrency, self.retry_statuses = chunk_size, max_concurrency, retry_statuses
        self._headers = {"Content-Type": "application/json"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._rng = random.Random(seed)
        self._inflight = dict.fromkeys(self.urls, 0)
        self._down_until = dict.fromkeys(self.urls, 0.0)
        self._turn = 0
        self._client: httpx.AsyncClient | None = None
        self._client_pid = os.getpid()
        self._semaphore: asyncio.Semaphore | None = None
        self.retries = 0  # retried attempts so far (for logs and tests)
        self.requests = dict.fromkeys(self.urls, 0)  # attempts sent per server

    # ------------------------------------------------------------------------------------------------ public

    async def score(
        self,
        items: Sequence[RewardItem | BaseModel | Mapping[str, Any]],
        *,
        options: Mapping[str, Any] | None = None,
        include_questions: bool = True,
    ) -> list[ItemResult]:
        """Rewards (with their parts) for ``items``, in order: a ``RewardResult`` per QA item, a
        ``JudgeRewardResult`` per judge item. ``options`` overrides the server's reward config for the QA items
        (any ``RewardConfig`` field, e.g. ``{"mode": "soft", "seed": 7}``)."""
        payload = [_item_json(it) for it in items]
        spans = [(s, min(s + self.chunk_size, len(payload))) for s in range(0, len(payload), self.chunk_size)]

        async def chunk(start: int, end: int) -> list[ItemResult]:
            body: dict[str, Any] = {"items": payload[start:end], "include_questions": include_questions}
            if options:
                body["options"] = dict(options)
            data = await self._post("/v1/rewards", body, offset=start)
            return [result_from_json(r) for r in data["results"]]

        parts = await asyncio.gather(*(chunk(s, e) for s, e in spans), return_exceptions=True)
        return self._join(parts, spans, len(payload), key="results")  # type: ignore[return-value]

    async def get_reward(self, prompts: Sequence[Any]) -> list[float]:
        """The CapRL call: ``prompts`` = ``[[caption, [[question_with_options, gold_letter], ...]], ...]``."""
        prompts = list(prompts)
        spans = [(s, min(s + self.chunk_size, len(prompts))) for s in range(0, len(prompts), self.chunk_size)]

        async def chunk(start: int, end: int) -> list[float]:
            data = await self._post("/get_reward", {"prompts": prompts[start:end]}, offset=start)
            return [float(r) for r in data["rewards"]]

        parts = await asyncio.gather(*(chunk(s, e) for s, e in spans), return_exceptions=True)
        return self._join(parts, spans, len(prompts), key="rewards")  # type: ignore[return-value]

    async def post_get_reward(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """One ``POST /get_reward`` with ``body`` as given (CapRL's QA or ``vl_judge`` body, for this service or a
        CapRL server) and its whole answer: ``rewards`` and any parts (``qa_rewards``, ``format_rewards``,
        ``judge_rewards``). Retries and errors as ``score``."""
        data = await self._post("/get_reward", dict(body), offset=0)
        if not isinstance(data, dict) or not isinstance(data.get("rewards"), list):
            raise RewardServiceError(f"POST /get_reward: the answer holds no 'rewards' list: {excerpt(str(data))}")
        return data

    async def health(self) -> dict[str, dict[str, Any]]:
        """``/health`` of every server (``{"status": "unreachable", "detail": ...}`` for one that does not answer)."""

        async def one(url: str) -> dict[str, Any]:
            try:
                response = await self._http().get(url + "/health", timeout=min(10.0, self.policy.timeout))
                return response.json()
            except (httpx.HTTPError, ValueError) as exc:
                return {"status": "unreachable", "detail": _describe(exc)}

        return dict(zip(self.urls, await asyncio.gather(*(one(u) for u in self.urls)), strict=True))

    async def wait_ready(self, timeout: float = 120.0, *, every: bool = False) -> None:
        """Wait until one server (``every``: all of them) reports ready; RewardServiceUnavailable after timeout."""
        deadline = time.monotonic() + timeout
        while True:
            states = await self.health()
            ready = [s.get("status") == "ready" for s in states.values()]
            if all(ready) if every else any(ready):
                return
            if time.monotonic() > deadline:
                causes = [f"{u}: {s.get('status')} {s.get('detail') or ''}".strip() for u, s in states.items()]
                raise RewardServiceUnavailable(f"no reward service ready after {timeout:g} s", causes=causes)
            await asyncio.sleep(0.2)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def __aenter__(self) -> AsyncRewardClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # ------------------------------------------------------------------------------------------------ plumbing

    def _http(self) -> httpx.AsyncClient:
        if self._client is not None and self._client_pid != os.getpid():
            # Forked: the pooled connections are the parent's sockets and the client belongs to its loop.
            self._client = None
        if self._client is None:
            self._client_pid = os.getpid()
            n = self.max_concurrency
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(self.policy.timeout, connect=min(10.0, self.policy.timeout)),
                limits=httpx.Limits(max_connections=n * len(self.urls), max_keepalive_connections=n * len(self.urls)),
                headers=self._headers,
                verify=not all(u.startswith("http://") for u in self.urls),  # no TLS context for plain HTTP
            )
            self._semaphore = asyncio.Semaphore(n)
        return self._client

    def _pick(self, avoid: str | None) -> str:
        now = time.monotonic()
        up = [u for u in self.urls if self._down_until[u] <= now] or list(self.urls)
        if avoid is not None and len(up) > 1:
            up = [u for u in up if u != avoid]
        self._turn += 1
        rotated = up[self._turn % len(up) :] + up[: self._turn % len(up)]
        return min(rotated, key=lambda u: self._inflight[u])

    async def _post(self, path: str, body: dict[str, Any], *, offset: int) -> Any:
        client = self._http()
        assert self._semaphore is not None
        content = json.dumps(body).encode()
        policy = self.policy
        causes: list[str] = []
        last_url: str | None = None
        last_status: int | None = None
        for attempt in range(policy.max_retries + 1):
            wait: float | None = None
            async with self._semaphore:
                url = self._pick(last_url)
                self._inflight[url] += 1
                self.requests[url] += 1
                try:
                    response = await client.post(url + path, content=content)
                except httpx.TimeoutException as exc:
                    causes.append(f"{url}: timed out after {policy.timeout:g} s ({_describe(exc)})")
                    last_status = None
                except httpx.TransportError as exc:
                    causes.append(f"{url}: connection failed ({_describe(exc)})")
                    last_status = None
                    # A refused connection usually means a restart: send the next tries elsewhere for a moment.
                    self._down_until[url] = time.monotonic() + min(policy.backoff_max, 4 * policy.backoff_base)
                else:
                    if response.status_code == 200:
                        try:
                            return response.json()
                        except ValueError:
                            raise RewardServiceError(
                                f"POST {url}{path}: HTTP 200 but the body is not JSON: {excerpt(response.text)}"
                            ) from None
                    last_status = response.status_code
                    if response.status_code not in self.retry_statuses:
                        raise self._request_error(url + path, response, offset)
                    causes.append(f"{url}: HTTP {response.status_code}: {excerpt(response.text, 200)}")
                    wait = parse_retry_after(response.headers.get("retry-after"))
                finally:
                    self._inflight[url] -= 1
            last_url = url
            if attempt < policy.max_retries:
                self.retries += 1
                elsewhere = len(self.urls) > 1
                delay = policy.backoff(attempt, self._rng)
                if wait is not None and not elsewhere:
                    delay = min(wait, policy.max_retry_after)
                await asyncio.sleep(delay)
        attempts = policy.max_retries + 1
        raise RewardServiceUnavailable(
            f"POST {path}: all {attempts} attempts failed on {', '.join(self.urls)}; last: {causes[-1]}",
            causes=causes,
            status=last_status,
        )

    def _request_error(self, url: str, response: httpx.Response, offset: int) -> RewardRequestError:
        try:
            data = response.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            return RewardRequestError(
                f"POST {url}: HTTP {response.status_code}: {excerpt(response.text)}", status=response.status_code,
                errors=[ItemError(status=response.status_code, message=excerpt(response.text))],
            )  # fmt: skip
        errors = []
        for e in data.get("errors") or []:
            err = ItemError.model_validate(e)
            if err.index is not None:
                err = err.model_copy(update={"index": err.index + offset})
            errors.append(err)
        results = data.get("results")
        return RewardRequestError(
            f"POST {url}: HTTP {response.status_code}: {data.get('detail', '')}",
            status=response.status_code,
            errors=errors,
            results=None if results is None else [None if r is None else result_from_json(r) for r in results],
            rewards=data.get("rewards"),
        )

    @staticmethod
    def _join(parts: list[Any], spans: list[tuple[int, int]], n: int, *, key: str) -> list[Any]:
        """Chunks back into one list; chunk failures into one error that keeps every chunk's rewards."""
        for part in parts:
            if isinstance(part, BaseException) and not isinstance(part, RewardRequestError):
                raise part
        failed = [p for p in parts if isinstance(p, RewardRequestError)]
        if not failed:
            return [x for p in parts for x in p]
        merged: list[Any] = [None] * n
        for (start, end), part in zip(spans, parts, strict=True):
            got = (part.results if key == "results" else part.rewards) if isinstance(part, RewardRequestError) else part
            if got is not None:
                merged[start:end] = got
        errors = sorted((e for p in failed for e in p.errors), key=lambda e: -1 if e.index is None else e.index)
        status = max(p.status for p in failed)
        first = failed[0]
        message = f"{len(errors)} error(s) in {len(failed)} of {len(parts)} request(s): {first}"
        return_key = {"results": merged} if key == "results" else {"rewards": merged}
        raise RewardRequestError(message, status=status, errors=errors, **return_key)


# ---------------------------------------------------------------------------------------------------- sync


class RewardClient:
    """The blocking twin of ``AsyncRewardClient`` (same arguments and methods); safe to share between threads."""

    def __init__(self, urls: str | Sequence[str], **kwargs: Any):
        self._async = AsyncRewardClient(urls, **kwargs)
        self._loop = LoopThread(
            "caprl-reward-client", "a sync RewardClient was called from its own loop; use AsyncRewardClient there"
        )

    @property
    def urls(self) -> list[str]:
        return self._async.urls

    @property
    def retries(self) -> int:
        return self._async.retries

    def score(
        self,
        items: Sequence[RewardItem | BaseModel | Mapping[str, Any]],
        *,
        options: Mapping[str, Any] | None = None,
        include_questions: bool = True,
    ) -> list[ItemResult]:
        return self._loop.run(self._async.score(items, options=options, include_questions=include_questions))

    def get_reward(self, prompts: Sequence[Any]) -> list[float]:
        return self._loop.run(self._async.get_reward(prompts))

    def health(self) -> dict[str, dict[str, Any]]:
        return self._loop.run(self._async.health())

    def wait_ready(self, timeout: float = 120.0, *, every: bool = False) -> None:
        self._loop.run(self._async.wait_ready(timeout, every=every))

    def close(self) -> None:
        self._loop.stop(self._async.aclose)

    def __enter__(self) -> RewardClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
