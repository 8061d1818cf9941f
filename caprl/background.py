"""A private event loop in a daemon thread for sync callers (``LoopThread``), forgotten in forked children.

Sync callers submit coroutines to the loop and wait, which works the same from plain code, from a worker thread
and from inside a running event loop (the caller's loop is never re-entered; it only blocks while it waits).
``caprl.http.AsyncAPI`` (the OpenAI-compatible backends), ``caprl.server.RewardClient`` and verl's sync
``caprl.verl.compute_score`` each own one.

``fork`` copies the parent's memory but only the calling thread: a child inherits a loop object whose thread does
not exist there (a call would wait forever) and a lock that may have been held by a thread that is gone. verl's
process pools and ``multiprocessing`` fork on Linux, so every owner of such state registers with
``reset_in_forked_children`` and is reset in the child; a ``LoopThread`` starts a fresh loop on its next call.

>>> loops = LoopThread("example")
>>> async def two() -> int:
...     return 2
>>> loops.run(two())
2
>>> loops.stop()
"""

from __future__ import annotations

import asyncio
import os
import threading
import weakref
from collections.abc import Callable, Coroutine
from typing import Any, Protocol, TypeVar

T = TypeVar("T")


class ForkAware(Protocol):
    def _after_fork_in_child(self) -> None: ...


_OWNERS: weakref.WeakSet[ForkAware] = weakref.WeakSet()


def reset_in_forked_children(owner: ForkAware) -> None:
    """Call ``owner._after_fork_in_child()`` in every child forked from now on (while ``owner`` lives)."""
    _OWNERS.add(owner)


def _reset_all() -> None:
    for owner in list(_OWNERS):
        owner._after_fork_in_child()


os.register_at_fork(after_in_child=_reset_all)


def _stop_loop(loop: asyncio.AbstractEventLoop) -> None:
    if not loop.is_closed():
        loop.call_soon_threadsafe(loop.stop)


class LoopThread:
    """An event loop in a daemon thread named ``name``, started on first use and again after ``stop``.
    ``own_thread_error`` is the message of the error a call from the loop's own thread gets (it would deadlock)."""

    def __init__(self, name: str, own_thread_error: str = "called from its own event loop; await instead"):
        self.name = name
        self.own_thread_error = own_thread_error
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._finalizer: weakref.finalize | None = None
        reset_in_forked_children(self)

    def _after_fork_in_child(self) -> None:
        # The parent's loop thread does not exist here; its loop and lock are the parent's business.
        if self._finalizer is not None:
            self._finalizer.detach()
        self._lock = threading.Lock()
        self._loop = self._thread = self._finalizer = None

    @property
    def started(self) -> bool:
        return self._loop is not None

    def loop(self) -> asyncio.AbstractEventLoop:
        """The running loop (started here if it is not)."""
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                ready = threading.Event()

                def _main() -> None:
                    asyncio.set_event_loop(loop)
                    loop.call_soon(ready.set)
                    loop.run_forever()

                self._thread = threading.Thread(target=_main, name=self.name, daemon=True)
                self._thread.start()
                ready.wait()
                self._loop = loop
                # An owner dropped without stop() still stops its loop (the thread holds no reference to it).
                self._finalizer = weakref.finalize(self, _stop_loop, loop)
            return self._loop

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the loop and block until it finishes (safe inside a running loop)."""
        loop = self.loop()
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError(self.own_thread_error)
        return asyncio.run_coroutine_threadsafe(coro, loop).result()

    async def submit(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the loop and await its result from the caller's loop (which keeps running)."""
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.loop()))

    def stop(self, last: Callable[[], Coroutine[Any, Any, Any]] | None = None) -> None:
        """Run ``last()`` on the loop (e.g. closing a client that lives there), then stop the loop and its thread.
        Does nothing when the loop is not running."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None:
            return
        if last is not None:
            asyncio.run_coroutine_threadsafe(last(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join(timeout=10)
        loop.close()
