"""Shared machinery for the OpenAI-compatible HTTP backends: retries, backoff, bounded concurrency, a sync facade.

``AsyncAPI`` owns one ``httpx.AsyncClient`` that lives on a private event loop in a daemon thread
(``caprl.background.LoopThread``). Sync callers submit coroutines to that loop and wait (``api.run(coro)``), from
plain code, a worker thread or a running event loop alike; async callers await ``api.submit(coro)`` instead and do
not block their loop.

Every request goes through ``post_json`` / ``get_json``:

* at most ``max_concurrency`` requests in flight (a semaphore on the private loop);
* a timeout per attempt;
* retries with exponential backoff and full jitter on connection errors, timeouts, 408/409/425/429 and 5xx,
  honouring ``Retry-After`` (seconds or an HTTP date, capped at ``max_retry_after``);
* after the last attempt an ``APIError`` naming the method, URL, status and an excerpt of the body.

>>> api = AsyncAPI("http://127.0.0.1:8000/v1", RetryPolicy(max_retries=2))   # doctest: +SKIP
>>> api.run(api.post_json("/chat/completions", {...}))                       # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx

from caprl.background import LoopThread, reset_in_forked_children

T = TypeVar("T")

RETRY_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
BODY_EXCERPT = 500


class APIError(RuntimeError):
    """A request that failed for good: ``status`` is None for connection errors and timeouts."""

    def __init__(self, message: str, *, url: str, status: int | None = None, body: str = "", attempts: int = 1):
        super().__init__(message)
        self.url, self.status, self.body, self.attempts = url, status, body, attempts


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try: ``max_retries`` retries after the first attempt (so ``max_retries + 1`` attempts)."""

    max_retries: int = 4
    timeout: float = 60.0
    backoff_base: float = 0.5
    backoff_max: float = 30.0
    max_retry_after: float = 120.0

    def backoff(self, retry: int, rng: random.Random) -> float:
        """Full jitter: uniform in [0, min(backoff_max, base * 2**retry)]."""
        return rng.uniform(0.0, min(self.backoff_max, self.backoff_base * (2**retry)))


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date); None if absent or bad."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def excerpt(text: str, limit: int = BODY_EXCERPT) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + " ..."


def _describe(exc: BaseException) -> str:
    detail = str(exc)
    return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__


class AsyncAPI:
    """An OpenAI-compatible endpoint: ``base_url`` ends in ``/v1`` (added when missing)."""

    def __init__(
        self,
        base_url: str,
        policy: RetryPolicy | None = None,
        *,
        api_key: str | None = None,
        max_concurrency: int = 16,
        seed: int | None = None,
    ):
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be >= 1")
        base = base_url.rstrip("/")
        if not base.endswith("/v1"):
            base += "/v1"
        self.base_url = base
        self.root_url = base[: -len("/v1")]
        self.policy = policy or RetryPolicy()
        self.max_concurrency = max_concurrency
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._rng = random.Random(seed)
        self._loops = LoopThread(
            "caprl-http", "AsyncAPI.run called from its own event loop; await the coroutine instead"
        )
        self._client: httpx.AsyncClient | None = None
        self._semaphore: asyncio.Semaphore | None = None
        self.retries = 0  # retried attempts so far, across all requests (for logs and tests)
        reset_in_forked_children(self)

    def _after_fork_in_child(self) -> None:
        # The client's pooled sockets are the parent's (the loop resets itself).
        self._client = self._semaphore = None

    async def submit(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the private loop and await its result from the caller's loop (which keeps running)."""
        return await self._loops.submit(coro)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the private loop and block until it finishes (safe inside a running loop)."""
        return self._loops.run(coro)

    def close(self) -> None:
        """Close the HTTP client and stop the private loop. The object can be used again afterwards."""
        client, self._client, self._semaphore = self._client, None, None
        self._loops.stop(client.aclose if client is not None else None)

    def __enter__(self) -> AsyncAPI:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----- requests (these run on the private loop) -----

    def _client_and_semaphore(self) -> tuple[httpx.AsyncClient, asyncio.Semaphore]:
        if self._client is None or self._semaphore is None:
            limits = httpx.Limits(max_connections=self.max_concurrency, max_keepalive_connections=self.max_concurrency)
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(self.policy.timeout),
                limits=limits,
                headers=self._headers,
                # Plain-HTTP endpoints (local servers) need no TLS context; building one costs ~0.5 s.
                verify=not self.base_url.startswith("http://"),
            )
            self._semaphore = asyncio.Semaphore(self.max_concurrency)
        return self._client, self._semaphore

    def url(self, path: str, *, root: bool = False) -> str:
        return (self.root_url if root else self.base_url) + "/" + path.lstrip("/")

    async def post_json(self, path: str, payload: dict[str, Any], *, root: bool = False) -> Any:
        return await self.request("POST", self.url(path, root=root), payload)

    async def get_json(self, path: str, *, root: bool = False) -> Any:
        return await self.request("GET", self.url(path, root=root), None)

    async def served_model(self) -> str | None:
        """The id of the first model the server lists at ``/models``; None when it lists none or does not answer
        (servers that serve one model accept requests without a model name)."""
        try:
            body = await self.request("GET", self.url("/models"), None, retry=False)
        except APIError:
            return None
        data = body.get("data") if isinstance(body, dict) else None
        if data and isinstance(data[0], dict) and data[0].get("id"):
            return str(data[0]["id"])
        return None

    async def request(self, method: str, url: str, payload: dict[str, Any] | None, *, retry: bool = True) -> Any:
        """One JSON request with retries; returns the decoded body or raises ``APIError``."""
        client, semaphore = self._client_and_semaphore()
        policy = self.policy
        attempts = policy.max_retries + 1 if retry else 1
        last: APIError | None = None
        for attempt in range(attempts):
            wait: float | None = None
            async with semaphore:
                try:
                    response = await client.request(method, url, json=payload)
                except httpx.TimeoutException as exc:
                    last = APIError(f"{method} {url}: timed out after {policy.timeout:g} s ({_describe(exc)})", url=url)
                except httpx.TransportError as exc:
                    last = APIError(f"{method} {url}: connection failed ({_describe(exc)})", url=url)
                else:
                    if response.status_code < 400:
                        try:
                            return response.json()
                        except ValueError:
                            raise APIError(
                                f"{method} {url}: HTTP {response.status_code} but the body is not JSON: "
                                f"{excerpt(response.text)}",
                                url=url,
                                status=response.status_code,
                                body=response.text,
                                attempts=attempt + 1,
                            ) from None
                    body = response.text
                    last = APIError(
                        f"{method} {url}: HTTP {response.status_code}: {excerpt(body)}",
                        url=url,
                        status=response.status_code,
                        body=body,
                    )
                    if response.status_code not in RETRY_STATUSES:
                        last.attempts = attempt + 1
                        raise last
                    wait = parse_retry_after(response.headers.get("retry-after"))
            if attempt + 1 < attempts:
                self.retries += 1
                if wait is None:
                    wait = policy.backoff(attempt, self._rng)
                await asyncio.sleep(min(wait, policy.max_retry_after))
        assert last is not None
        last.attempts = attempts
        raise APIError(
            f"{last} (gave up after {attempts} attempt{'s' if attempts > 1 else ''})",
            url=last.url,
            status=last.status,
            body=last.body,
            attempts=attempts,
        )


async def gather_or_cancel(coros: list[Coroutine[Any, Any, T]]) -> list[T]:
    """``asyncio.gather`` that cancels the others when one fails (``AsyncAPI.request``'s semaphore bounds how many
    requests are in flight)."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
