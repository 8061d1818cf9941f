"""Coalescing requests from many clients into engine batches, with bounded in-flight work.

Requests are queued as jobs; one loop takes items from the queue head (and later jobs with the same reward
config) up to ``max_batch``, runs the engine on them in a single worker thread, and hands each job its results.
An idle engine waits up to ``max_wait`` for a batch to fill; a busy one never waits, because whatever queued
while it ran is the next batch. Admission is bounded by ``max_pending`` items: beyond it, ``Overloaded`` (the
service answers 503 with Retry-After) instead of a queue that grows without limit.

One worker thread: the engine is CPU/GPU bound and the transformers reader is not thread safe; a second thread
would only contend for the same device. The VLM judge has a coalescer (and worker thread) of its own, so judge
items never wait behind reader batches or the other way round.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from caprl.readers.base import ReaderError
from caprl.reward.engine import RewardResult
from caprl.reward.judge import JudgeResult
from caprl.server.metrics import BatchMetrics

Outcome = RewardResult | JudgeResult | BaseException
"""Per item: its result, or the exception that took it (``score`` may also return exceptions as values)."""


class Scorer(Protocol):
    """What a coalescer runs: a ``RewardEngine``, or the judge's runner."""

    def score(self, items: Sequence[Any]) -> Sequence[Any]: ...


class Overloaded(Exception):
    """More items in flight than the service takes; retry after ``retry_after`` seconds."""

    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after


class ShuttingDown(Exception):
    """The service is draining and takes no new work."""


@dataclass(eq=False)
class _Job:
    key: str
    engine: Scorer
    items: list[Any]
    future: asyncio.Future[list[Outcome]]
    enqueued: float
    results: list[Outcome | None] = field(init=False)
    taken: int = 0
    done: int = 0

    def __post_init__(self) -> None:
        self.results = [None] * len(self.items)


# Engine calls one failing batch may spend finding its bad items (one bad item in 64 needs 13).
_SPLIT_BUDGET = 32


def _score_or_split(engine: Scorer, items: Sequence[Any], budget: list[int]) -> list[Outcome]:
    try:
        return list(engine.score(items))
    except ReaderError as exc:
        # The reader itself failed (a dead server, an incompatible model): every item would fail the same way,
        # and splitting would multiply the reader's own retries and timeouts.
        return [exc] * len(items)
    except Exception as exc:
        if len(items) == 1 or budget[0] < 2:
            return [exc] * len(items)
        # Rewards do not depend on batching, so the halves give the same numbers, and a bad item (or a batch too
        # large for the device) costs only itself.
        budget[0] -= 2
        mid = len(items) // 2
        return _score_or_split(engine, items[:mid], budget) + _score_or_split(engine, items[mid:], budget)


def _score_groups(engine: Scorer, groups: Sequence[Sequence[Any]]) -> list[list[Outcome]]:
    """Score the groups (one per request) in one engine call; per item, its result or what failed it."""
    flat = _score_or_split(engine, [it for g in groups for it in g], [_SPLIT_BUDGET])
    out, start = [], 0
    for g in groups:
        out.append(flat[start : start + len(g)])
        start += len(g)
    return out


class Coalescer:
    """Queue, batch and run scoring work; see the module docstring."""

    def __init__(
        self, *, max_batch: int, max_wait: float, max_pending: int, metrics: BatchMetrics | None = None
    ) -> None:
        self.max_batch, self.max_wait, self.max_pending = max_batch, max_wait, max_pending
        self.metrics = metrics
        self.pending = 0  # items admitted and not yet answered
        self._queue: deque[_Job] = deque()
        self._wake = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="caprl-engine")
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._items_per_s: float | None = None

    # ----------------------------------------------------------------------------------------------- public

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="caprl-coalescer")

    def retry_after(self) -> int:
        """Seconds until the current backlog should have cleared (1-60), from the measured engine rate."""
        if not self._items_per_s:
            return 1
        return int(min(60, max(1, math.ceil(self.pending / self._items_per_s))))

    def check_admission(self, n: int) -> None:
        """Raise ``ShuttingDown`` or ``Overloaded`` when ``n`` more items would not be admitted now."""
        if self._closing:
            raise ShuttingDown("the service is shutting down")
        # An empty service admits any request (requests are capped below max_pending by the settings).
        if n and self.pending and self.pending + n > self.max_pending:
            raise Overloaded(
                f"overloaded: {self.pending} items in flight, {n} more would pass the limit of {self.max_pending}",
                self.retry_after(),
            )

    async def score(self, key: str, engine: Scorer, items: list[Any]) -> list[Outcome]:
        """Results (or the exception that took them) for ``items``, in order; ``key`` names ``engine``'s config."""
        self.check_admission(len(items))
        if not items:
            return []
        n = len(items)
        loop = asyncio.get_running_loop()
        job = _Job(key, engine, items, loop.create_future(), loop.time())
        self._queue.append(job)
        self._add_pending(n)
        self._wake.set()
        return await job.future

    async def close(self) -> None:
        """Finish the queued work, then stop."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task
        self._executor.shutdown(wait=True)

    # ------------------------------------------------------------------------------------------------- loop

    def _add_pending(self, n: int) -> None:
        self.pending += n
        if self.metrics is not None:
            self.metrics.pending_items.set(self.pending)

    def _queued(self, key: str) -> int:
        return sum(len(j.items) - j.taken for j in self._queue if j.key == key)

    def _take(self, key: str) -> list[tuple[_Job, int, int]]:
        spans, budget, keep = [], self.max_batch, deque()
        for job in self._queue:
            if job.future.done():  # its request was cancelled: drop what is not yet computed
                self._add_pending(-(len(job.items) - job.taken))
                continue
            if job.key == key and budget:
                end = min(len(job.items), job.taken + budget)
                spans.append((job, job.taken, end))
                budget -= end - job.taken
                job.taken = end
            if job.taken < len(job.items):
                keep.append(job)
        self._queue = keep
        return spans

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                while not self._queue:
                    if self._closing:
                        return
                    self._wake.clear()
                    await self._wake.wait()
                head = self._queue[0]
                deadline = head.enqueued + self.max_wait
                while not self._closing and self._queued(head.key) < self.max_batch:
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        break
                    self._wake.clear()
                    try:
                        await asyncio.wait_for(self._wake.wait(), remaining)
                    except asyncio.TimeoutError:
                        break
                spans = self._take(head.key)
                if spans:
                    await self._execute(spans)
        except BaseException as exc:
            # A bug here must not leave requests waiting forever.
            for job in self._queue:
                if not job.future.done():
                    job.future.set_exception(RuntimeError(f"the batching loop stopped: {exc!r}"))
            raise

    async def _execute(self, spans: list[tuple[_Job, int, int]]) -> None:
        loop = asyncio.get_running_loop()
        engine = spans[0][0].engine
        groups = [job.items[s:e] for job, s, e in spans]
        n = sum(len(g) for g in groups)
        started = loop.time()
        if self.metrics is not None:
            self.metrics.batch_items.observe(n)
            for job, _, _ in spans:
                self.metrics.queue_seconds.observe(started - job.enqueued)
        try:
            outcomes = await loop.run_in_executor(self._executor, _score_groups, engine, groups)
        except BaseException as exc:  # the executor itself failed (shut down, interpreter exiting)
            outcomes = [[exc] * len(g) for g in groups]
        elapsed = loop.time() - started
        if elapsed > 0:
            rate = n / elapsed
            self._items_per_s = rate if self._items_per_s is None else 0.8 * self._items_per_s + 0.2 * rate
        if self.metrics is not None:
            self.metrics.engine_seconds.observe(elapsed)
        for (job, s, e), outcome in zip(spans, outcomes, strict=True):
            job.results[s:e] = outcome
            job.done += e - s
            self._add_pending(-(e - s))
            if job.done == len(job.items) and not job.future.done():
                job.future.set_result(job.results)  # type: ignore[arg-type]
