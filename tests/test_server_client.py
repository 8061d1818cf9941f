"""The reward-service client against real services on loopback: bulk chunks in order, several servers, retries
through a restart and through 503s, and loud failures."""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import pytest
from test_server_support import HeldReader, caprl_prompt, item_json, make_items

from caprl.reward.engine import RewardConfig, RewardEngine
from caprl.server.client import AsyncRewardClient, RewardClient, RewardRequestError, RewardServiceUnavailable
from caprl.server.serve import BackgroundServer

FAST = {"backoff_base": 0.05, "backoff_max": 0.2, "timeout": 30.0}


@pytest.fixture(scope="module")
def engine(reader):
    return RewardEngine(reader, RewardConfig(seed=11))


@pytest.fixture(scope="module")
def items():
    return make_items(5)


@pytest.fixture(scope="module")
def expected(engine, items):
    return engine.score(items)


@pytest.fixture(scope="module")
def server(engine):
    with BackgroundServer(engine) as srv:
        yield srv


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_sync_client_chunks_come_back_in_order(server, items, expected):
    with RewardClient(server.url, chunk_size=2, **FAST) as client:
        results = client.score(items)
        assert [r.model_dump() for r in results] == [r.model_dump() for r in expected]
        assert client.get_reward([caprl_prompt(it) for it in items]) == [r.reward for r in expected]
        assert client.health()[server.url]["status"] == "ready"


def test_async_client(server, reader, items, expected):
    async def main():
        async with AsyncRewardClient([server.url], chunk_size=3, **FAST) as client:
            await client.wait_ready(5)
            dicts = [item_json(it) for it in items]  # plain dicts are accepted as well as RewardItems
            return await asyncio.gather(client.score(dicts), client.score(items[:1], options={"mode": "soft"}))

    bulk, soft = asyncio.run(main())
    assert [r.reward for r in bulk] == [r.reward for r in expected]
    want = RewardEngine(reader, RewardConfig(seed=11, mode="soft")).score(items[:1])
    assert soft[0].reward == pytest.approx(want[0].reward, abs=1e-6)


def test_load_is_spread_over_servers(engine, items, expected):
    with BackgroundServer(engine) as a, BackgroundServer(engine) as b:
        with RewardClient([a.url, b.url], chunk_size=1, **FAST) as client:
            results = client.score(items)
            counts = client._async.requests
        assert [r.reward for r in results] == [r.reward for r in expected]
        assert counts[a.url] >= 2 and counts[b.url] >= 2


def test_a_dead_server_is_skipped(server, items, expected):
    dead = f"http://127.0.0.1:{free_port()}"
    with RewardClient([dead, server.url], chunk_size=1, **FAST) as client:
        assert [r.reward for r in client.score(items)] == [r.reward for r in expected]
        assert client.retries >= 1


def test_retries_across_a_server_restart(engine, items, expected):
    first = BackgroundServer(engine).start()
    port = first.port
    first.stop()
    restarted: list[BackgroundServer] = []

    def restart() -> None:
        time.sleep(0.5)
        restarted.append(BackgroundServer(engine, port=port).start())

    thread = threading.Thread(target=restart)
    thread.start()
    try:
        with RewardClient(f"http://127.0.0.1:{port}", max_retries=30, **FAST) as client:
            results = client.score(items)
            assert client.retries >= 1
        assert [r.reward for r in results] == [r.reward for r in expected]
    finally:
        thread.join()
        for srv in restarted:
            srv.stop()


def test_retries_on_503_until_the_reader_is_loaded(engine, items, expected):
    loaded = threading.Event()

    def factory():
        loaded.wait(30)
        return engine

    with BackgroundServer(factory) as srv:
        threading.Timer(0.5, loaded.set).start()
        # Retry-After says 5 s while loading; the client caps its wait so the test stays short.
        with RewardClient(srv.url, max_retries=20, max_retry_after=0.2, **FAST) as client:
            assert [r.reward for r in client.score(items[:2])] == [r.reward for r in expected[:2]]
            assert client.retries >= 1


def test_all_retries_failing_is_a_clear_error(items):
    url = f"http://127.0.0.1:{free_port()}"
    with RewardClient(url, max_retries=2, **FAST) as client, pytest.raises(RewardServiceUnavailable) as info:
        client.score(items[:1])
    assert len(info.value.causes) == 3
    assert "all 3 attempts failed" in str(info.value) and "connection failed" in str(info.value)


def test_bad_items_raise_with_the_other_rewards(server, items, expected):
    bad = item_json(items[3])
    bad["mcqs"][0]["gold"] = "Z"
    payload = [item_json(it) for it in items[:3]] + [bad, item_json(items[4])]
    with RewardClient(server.url, chunk_size=2, **FAST) as client, pytest.raises(RewardRequestError) as info:
        client.score(payload)
    err = info.value
    assert err.status == 422 and client.retries == 0  # a 4xx is not retried
    assert [(e.index, e.field) for e in err.errors] == [(3, "mcqs.0.gold")]  # index in the caller's list
    assert [r and r.reward for r in err.results] == [r.reward for r in expected[:3]] + [None, expected[4].reward]


def test_engine_failure_raises_with_reason(reader, items):
    held = HeldReader(reader, poison="POISON")
    poisoned = items[0].model_copy(update={"caption": "POISON"})
    with (
        BackgroundServer(RewardEngine(held)) as srv,
        RewardClient(srv.url, **FAST) as client,
        pytest.raises(RewardRequestError) as info,
    ):
        client.get_reward([caprl_prompt(poisoned), caprl_prompt(items[1])])
    assert info.value.status == 500 and "poisoned caption" in info.value.errors[0].message
    assert info.value.rewards[0] is None and info.value.rewards[1] is not None


def test_timeouts_are_retried_then_reported(reader, items):
    held = HeldReader(reader)
    held.gate.clear()
    try:
        with BackgroundServer(RewardEngine(held)) as srv, RewardClient(srv.url, max_retries=1, timeout=0.3) as client:
            with pytest.raises(RewardServiceUnavailable) as info:
                client.score(items[:1])
            assert "all 2 attempts failed" in str(info.value) and "timed out after 0.3 s" in str(info.value)
            held.gate.set()
    finally:
        held.gate.set()
