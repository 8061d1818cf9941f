"""``caprl.background.LoopThread``: the private loop the sync HTTP clients share, from every kind of caller."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from caprl.background import LoopThread


async def _double(x: int) -> int:
    await asyncio.sleep(0)
    return 2 * x


def test_runs_from_plain_code_and_from_inside_a_running_loop():
    loops = LoopThread("test", "own loop")
    assert not loops.started
    assert loops.run(_double(2)) == 4

    async def caller() -> tuple[int, int]:
        blocking = loops.run(_double(3))  # blocks this loop while it waits; never re-enters it
        awaited = await loops.submit(_double(4))
        return blocking, awaited

    assert asyncio.run(caller()) == (6, 8)
    loops.stop()
    assert not loops.started


def test_a_call_from_its_own_thread_is_refused_not_deadlocked():
    loops = LoopThread("test", "called from its own loop")

    async def inner() -> None:
        loops.run(_double(1))

    with pytest.raises(RuntimeError, match="called from its own loop"):
        loops.run(inner())
    loops.stop()


def test_stop_runs_the_last_coroutine_on_the_loop_and_a_later_call_restarts_it():
    loops = LoopThread("test")
    seen: list[bool] = []

    async def last() -> None:
        seen.append(asyncio.get_running_loop() is first)

    first = loops.loop()
    loops.stop(last)
    assert seen == [True] and first.is_closed()
    assert loops.run(_double(5)) == 10 and loops.loop() is not first
    loops.stop()
    loops.stop()  # a second stop does nothing


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX-only")
def test_a_forked_child_gets_a_fresh_loop():
    loops = LoopThread("test")
    assert loops.run(_double(1)) == 2  # the parent's loop thread exists; the child's copy would not
    pid = os.fork()
    if pid == 0:  # child: must answer, not wait forever on the parent's thread (the alarm ends a hang)
        signal.alarm(20)
        os._exit(0 if loops.run(_double(21)) == 42 else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    loops.stop()
