"""The reward service on loopback with the tiny reader: same rewards as in process, every bad input a 4xx with a
message naming the item and field, engine failures 5xx for the affected items only, readiness, overload,
auth, metrics, OpenAPI, graceful shutdown."""

from __future__ import annotations

import json
import threading
import time

import httpx
import pytest
from test_server_support import HeldReader, caprl_prompt, item_json, make_items

from caprl.reward.engine import RewardConfig, RewardEngine
from caprl.server.serve import BackgroundServer
from caprl.server.settings import ServerSettings

SETTINGS = ServerSettings(max_caption_chars=4000, max_request_items=16, max_pending=64, max_body_mb=1 / 16)


@pytest.fixture(scope="module")
def engine(reader):
    return RewardEngine(reader, RewardConfig(seed=7))


@pytest.fixture(scope="module")
def items():
    return make_items(4)


@pytest.fixture(scope="module")
def expected(engine, items):
    return engine.score(items)


@pytest.fixture(scope="module")
def server(engine):
    with BackgroundServer(engine, SETTINGS) as srv:
        yield srv


def post(server, path: str, body, **kwargs) -> httpx.Response:
    if isinstance(body, bytes):
        return httpx.post(server.url + path, content=body, timeout=60, **kwargs)
    return httpx.post(server.url + path, json=body, timeout=60, **kwargs)


# ------------------------------------------------------------------------------------------- same rewards


def test_bulk_equals_in_process_engine(server, items, expected):
    response = post(server, "/v1/rewards", {"items": [item_json(it) for it in items]})
    assert response.status_code == 200, response.text
    got = response.json()["results"]
    assert [r["id"] for r in got] == [it.id for it in items]
    assert got == [json.loads(r.model_dump_json()) for r in expected]  # rewards and every part, exactly


def test_bulk_options_and_trimmed_answers(server, reader, items):
    options = {"mode": "soft", "seed": 3, "n_questions": 2}
    response = post(server, "/v1/rewards", {"items": [item_json(it) for it in items], "options": options,
                                            "include_questions": False})  # fmt: skip
    assert response.status_code == 200, response.text
    want = RewardEngine(reader, RewardConfig(mode="soft", seed=3, n_questions=2)).score(items)
    got = response.json()["results"]
    assert [r["reward"] for r in got] == pytest.approx([r.reward for r in want], abs=1e-6)
    assert all(r["questions"] == [] for r in got)


def test_get_reward_equals_in_process_engine(server, items, expected):
    # Labels in both reference styles: "A) red" (CapRL-QA) and "A. red" (CapRL-Video-QA).
    prompts = [caprl_prompt(it, "{letter}) {text}" if i % 2 else "{letter}. {text}") for i, it in enumerate(items)]
    response = post(server, "/get_reward", {"prompts": prompts})
    assert response.status_code == 200, response.text
    assert response.json() == {"rewards": [r.reward for r in expected], "qa_rewards": [r.qa for r in expected]}


def test_empty_requests_are_answered(server):
    assert post(server, "/v1/rewards", {"items": []}).json() == {"results": []}
    assert post(server, "/get_reward", {"prompts": []}).json() == {"rewards": [], "qa_rewards": []}


# ------------------------------------------------------------------------------------------- bad inputs


def _bad_item(items, mutate):
    raw = item_json(items[1])
    mutate(raw)
    return raw


ITEM_CASES = {
    "missing caption": (lambda r: r.pop("caption"), "caption", "required"),
    "caption of wrong type": (lambda r: r.update(caption=12), "caption", "string"),
    "missing mcqs": (lambda r: r.pop("mcqs"), "mcqs", "required"),
    "no mcqs": (lambda r: r.update(mcqs=[]), "mcqs", "at least 1"),
    "gold letter not among options": (lambda r: r["mcqs"][0].update(gold="Z"), "mcqs.0.gold", "outside"),
    "gold index out of range": (lambda r: r["mcqs"][0].update(gold=9), "mcqs.0.gold", "outside"),
    "gold of wrong type": (lambda r: r["mcqs"][0].update(gold=True), "mcqs.0.gold", "integer"),
    "empty option list": (lambda r: r["mcqs"][0].update(options=[]), "mcqs.0.options", "at least 2"),
    "option of wrong type": (lambda r: r["mcqs"][0]["options"].__setitem__(0, 3), "mcqs.0.options.0", "string"),
    "duplicate options": (lambda r: r["mcqs"][0].update(options=["a", "A"], gold=0), "mcqs.0.options", "duplicate"),
    "empty question": (lambda r: r["mcqs"][0].update(question=""), "mcqs.0.question", "at least 1"),
    "oversize caption": (lambda r: r.update(caption="x" * 5000), "caption", "more than this server's 4000"),
    "unknown field": (lambda r: r.update(extra={"path": "a.png"}), "extra", "not permitted"),
    "media on a QA item": (lambda r: r.update(media={"type": "image", "path": "a.png"}), "media", '"mode": "judge"'),
}


@pytest.mark.parametrize("case", list(ITEM_CASES))
def test_bad_item_gets_422_naming_item_and_field_and_others_are_scored(server, items, expected, case):
    mutate, field, reason = ITEM_CASES[case]
    body = {"items": [item_json(items[0]), _bad_item(items, mutate), item_json(items[2])]}
    response = post(server, "/v1/rewards", body)
    assert response.status_code == 422, response.text
    data = response.json()
    [error] = data["errors"]
    assert (error["index"], error["field"], error["status"]) == (1, field, 422)
    assert error["message"].startswith(f"item 1 (id {items[1].id!r}), field {field!r}")
    assert reason in error["message"]
    assert data["detail"].startswith("1 of 3 items not scored")
    # The good items are not lost.
    assert [r and r["reward"] for r in data["results"]] == [expected[0].reward, None, expected[2].reward]


REQUEST_CASES = {
    "malformed JSON": (b'{"items": [', 400, None, "not valid JSON"),
    "empty body": (b"", 400, None, "empty"),
    "NaN": (b'{"items": [], "options": {"temperature": NaN}}', 400, None, "NaN"),
    "not an object": ([1, 2], 422, None, "JSON object"),
    "missing items": ({"captions": []}, 422, "items", "required"),
    "items of wrong type": ({"items": {"a": 1}}, 422, "items", "list"),
    "unknown option": ({"items": [], "options": {"temperatur": 1}}, 422, "options.temperatur", "not permitted"),
    "bad option value": ({"items": [], "options": {"n_questions": 0}}, 422, "options.n_questions", "greater"),
    "option beyond the server's bounds": ({"items": [], "options": {"n_questions": 10**6}}, 422,
                                          "options.n_questions", "at most"),
    "soft mode on the generate path": ({"items": [], "options": {"mode": "soft", "path": "generate"}}, 422,
                                       "options.path", "letter probabilities"),
    "too many items": ({"items": [{}] * 17}, 413, "items", "17 items"),
    "oversize body": ({"items": [{"caption": "x" * 70_000}]}, 413, None, "bytes"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(REQUEST_CASES))
def test_bad_request_gets_4xx_with_message(server, case):
    body, status, field, reason = REQUEST_CASES[case]
    response = post(server, "/v1/rewards", body)
    assert response.status_code == status, response.text
    data = response.json()
    assert reason in data["detail"]
    assert data["errors"][0].get("field") == field
    if field:
        assert repr(field) in data["detail"]


def test_item_that_is_not_an_object(server, items, expected):
    response = post(server, "/v1/rewards", {"items": [item_json(items[0]), "a caption"]})
    assert response.status_code == 422
    [error] = response.json()["errors"]
    assert error["index"] == 1 and "item 1: " in error["message"] and "dictionary" in error["message"]
    assert response.json()["results"][0]["reward"] == expected[0].reward


CAPRL_CASES = {
    "gold letter not among options": (lambda p: p[1][0].__setitem__(1, "Z"), "qa.0.answer", "outside"),
    "no options in the question": (lambda p: p[1][0].__setitem__(0, "What colour?"), "qa.0.question", "labelled"),
    "empty QA list": (lambda p: p.__setitem__(1, []), "qa", "non-empty"),
    "pair of wrong shape": (lambda p: p[1].__setitem__(0, ["What?\nA) x\nB) y"]), "qa.0", "pair"),
    "caption of wrong type": (lambda p: p.__setitem__(0, None), "caption", "string"),
    "oversize caption": (lambda p: p.__setitem__(0, "x" * 5000), "caption", "more than"),
}


@pytest.mark.parametrize("case", list(CAPRL_CASES))
def test_get_reward_bad_prompt_gets_422_and_others_are_scored(server, items, expected, case):
    mutate, field, reason = CAPRL_CASES[case]
    prompts = [caprl_prompt(it) for it in items[:3]]
    mutate(prompts[1])
    response = post(server, "/get_reward", {"prompts": prompts})
    assert response.status_code == 422, response.text
    data = response.json()
    [error] = data["errors"]
    assert (error["index"], error["field"]) == (1, field)
    assert error["message"].startswith(f"prompt 1, field {field!r}") and reason in error["message"]
    assert data["rewards"] == [expected[0].reward, None, expected[2].reward]  # null, never a made-up 0.0


def test_get_reward_bad_envelope(server):
    response = post(server, "/get_reward", {"prompt": []})
    assert response.status_code == 422 and "'prompts': required" in response.json()["detail"]
    response = post(server, "/get_reward", {"prompts": ["just a caption"]})
    assert response.status_code == 422 and "prompt 0" in response.json()["detail"]


# ------------------------------------------------------------------------------------------- engine failure


def test_engine_failure_is_5xx_for_the_affected_items_only(reader, items):
    held = HeldReader(reader, poison="POISON")
    engine = RewardEngine(held, RewardConfig(seed=7))
    poisoned = items[1].model_copy(update={"caption": "POISON " + items[1].caption})
    with BackgroundServer(engine, SETTINGS) as srv:
        response = post(srv, "/v1/rewards", {"items": [item_json(it) for it in (items[0], poisoned, items[2])]})
        assert response.status_code == 500, response.text
        data = response.json()
        [error] = data["errors"]
        assert error["index"] == 1 and error["status"] == 500
        assert "the engine failed: ValueError: poisoned caption" in error["message"]
        want = RewardEngine(reader, RewardConfig(seed=7)).score([items[0], items[2]])
        assert [r and r["reward"] for r in data["results"]] == [want[0].reward, None, want[1].reward]
        metrics = httpx.get(srv.url + "/metrics").text
        assert 'caprl_items_total{outcome="failed"} 1.0' in metrics


# ------------------------------------------------------------------------------------------- service


def test_openapi_schema_documents_the_api(server):
    schema = httpx.get(server.url + "/openapi.json").json()
    assert {"/v1/rewards", "/get_reward", "/health", "/metrics"} <= set(schema["paths"])
    components = schema["components"]["schemas"]
    assert {"RewardsRequest", "ItemInput", "MCQInput", "RewardOptions", "GetRewardRequest", "RewardResult"} <= set(
        components
    )
    body = schema["paths"]["/v1/rewards"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/RewardsRequest"}
    assert set(schema["paths"]["/v1/rewards"]["post"]["responses"]) == {"200", "400", "401", "413", "422", "500", "503"}
    assert httpx.get(server.url + "/docs").status_code == 200


def test_health_and_metrics(server, items):
    health = httpx.get(server.url + "/health")
    assert health.status_code == 200
    assert health.json()["status"] == "ready" and health.json()["config"]["seed"] == 7
    post(server, "/v1/rewards", {"items": [item_json(it) for it in items[:2]]})
    metrics = httpx.get(server.url + "/metrics")
    assert metrics.status_code == 200 and metrics.headers["content-type"].startswith("text/plain")
    text = metrics.text
    for name in ("caprl_requests_total", "caprl_request_seconds_bucket", "caprl_items_total", "caprl_questions_total",
                 "caprl_batch_items_bucket", "caprl_engine_seconds_bucket", "caprl_errors_total",
                 "caprl_parse_failures_total", "caprl_pending_items", "caprl_ready 1.0"):  # fmt: skip
        assert name in text, name
    assert 'caprl_requests_total{endpoint="/v1/rewards",status="200"}' in text


def test_health_is_503_until_the_reader_is_loaded(engine, items):
    loaded = threading.Event()

    def slow_factory():
        loaded.wait(30)
        return engine

    with BackgroundServer(slow_factory, SETTINGS) as srv:
        health = httpx.get(srv.url + "/health")
        assert health.status_code == 503 and health.json()["status"] == "loading"
        response = post(srv, "/v1/rewards", {"items": [item_json(items[0])]})
        assert response.status_code == 503 and response.headers["retry-after"] == "5"
        loaded.set()
        deadline = time.monotonic() + 10
        while httpx.get(srv.url + "/health").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert post(srv, "/v1/rewards", {"items": [item_json(items[0])]}).status_code == 200


def test_failed_load_is_reported(items):
    def broken():
        raise OSError("no such model: /nowhere")

    with BackgroundServer(broken, SETTINGS) as srv:
        deadline = time.monotonic() + 10
        while (health := httpx.get(srv.url + "/health").json())["status"] == "loading":
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert health["status"] == "failed" and "no such model" in health["detail"]
        response = post(srv, "/v1/rewards", {"items": [item_json(items[0])]})
        assert response.status_code == 503 and "failed to load" in response.json()["detail"]


def test_overload_answers_503_with_retry_after(reader, items):
    held = HeldReader(reader)
    held.gate.clear()
    settings = ServerSettings(max_pending=2, max_request_items=2, max_wait_ms=0)
    with BackgroundServer(RewardEngine(held, RewardConfig(seed=7)), settings) as srv:
        first: dict = {}
        body = {"items": [item_json(it) for it in items[:2]]}
        worker = threading.Thread(target=lambda: first.update(r=post(srv, "/v1/rewards", body)))
        worker.start()
        assert held.entered.wait(10)
        response = post(srv, "/v1/rewards", {"items": [item_json(items[2])]})
        assert response.status_code == 503, response.text
        assert int(response.headers["retry-after"]) >= 1
        assert "overloaded" in response.json()["detail"]
        held.gate.set()
        worker.join(30)
        assert first["r"].status_code == 200
        assert post(srv, "/v1/rewards", {"items": [item_json(items[2])]}).status_code == 200
        metrics = httpx.get(srv.url + "/metrics").text
        assert 'caprl_errors_total{kind="overloaded"} 1.0' in metrics and 'kind="not_ready"' not in metrics


def test_bearer_token_auth(engine, items):
    settings = ServerSettings.model_validate({**SETTINGS.model_dump(), "api_key": "s3cret"})
    body = {"prompts": [caprl_prompt(items[0])]}
    with BackgroundServer(engine, settings) as srv:
        assert post(srv, "/get_reward", body).status_code == 401
        wrong = post(srv, "/get_reward", body, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == "Bearer"
        assert httpx.get(srv.url + "/metrics").status_code == 401
        assert httpx.get(srv.url + "/health").status_code == 200  # probes need no token
        ok = post(srv, "/get_reward", body, headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200 and len(ok.json()["rewards"]) == 1


def test_coalescing_merges_concurrent_requests(reader, items, expected):
    held = HeldReader(reader)
    held.gate.clear()
    settings = ServerSettings(max_batch=64, max_wait_ms=0)
    with BackgroundServer(RewardEngine(held, RewardConfig(seed=7)), settings) as srv:
        answers: dict[int, httpx.Response] = {}
        blocker = threading.Thread(target=lambda: post(srv, "/v1/rewards", {"items": [item_json(items[0])]}))
        blocker.start()
        assert held.entered.wait(10)

        # While the engine is busy, four single-item requests queue up; they must become one engine call.
        def ask(i: int) -> None:
            answers[i] = post(srv, "/v1/rewards", {"items": [item_json(items[i])]})

        workers = [threading.Thread(target=ask, args=(i,)) for i in range(4)]
        for w in workers:
            w.start()
        deadline = time.monotonic() + 10
        while srv.state.coalescer.pending < 5:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        held.gate.set()
        for w in [blocker, *workers]:
            w.join(30)
        assert held.calls == 2
        assert [answers[i].json()["results"][0]["reward"] for i in range(4)] == [r.reward for r in expected]


def test_graceful_shutdown_answers_requests_in_flight(reader, items, expected):
    held = HeldReader(reader)
    held.gate.clear()
    srv = BackgroundServer(RewardEngine(held, RewardConfig(seed=7)), SETTINGS).start()
    answer: dict = {}
    worker = threading.Thread(
        target=lambda: answer.update(r=post(srv, "/v1/rewards", {"items": [item_json(items[0])]}))
    )
    worker.start()
    assert held.entered.wait(10)
    stopper = threading.Thread(target=srv.stop)
    stopper.start()
    time.sleep(0.3)
    assert srv.state.status == "draining"
    held.gate.set()
    worker.join(30)
    stopper.join(30)
    assert answer["r"].status_code == 200
    assert answer["r"].json()["results"][0]["reward"] == expected[0].reward
    with pytest.raises(httpx.ConnectError):
        httpx.get(srv.url + "/health")


# ------------------------------------------------------------------------------------------- command line


def test_serve_command_help_and_bad_flags(monkeypatch):
    from typer.testing import CliRunner

    from caprl.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["reward", "serve", "--help"], env={"COLUMNS": "160"})
    assert result.exit_code == 0
    for text in ("/v1/rewards", "/get_reward", "/health", "/metrics", "--api-key-env", "--max-batch", "--max-wait-ms",
                 "--max-pending", "Retry-After"):  # fmt: skip
        assert text in result.output, text
    monkeypatch.delenv("CAPRL_TEST_KEY", raising=False)
    result = runner.invoke(app, ["reward", "serve", "--reader", "x", "--api-key-env", "CAPRL_TEST_KEY"])
    assert result.exit_code != 0 and "CAPRL_TEST_KEY" in result.output
    result = runner.invoke(app, ["reward", "serve", "--reader", "x", "--mode", "soft", "--path", "generate"])
    assert result.exit_code != 0 and "letter probabilities" in result.output


@pytest.mark.slow
def test_serve_command_end_to_end(tiny_models, items, expected, tmp_path):
    """The real ``caprl reward serve`` process: ready, scores like the engine, exits on SIGTERM."""
    from caprl.server.client import RewardClient
    from caprl.server.process import ServiceProcess

    env = {"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    with ServiceProcess(tiny_models.reader, ["--seed", "7"], env=env, log_path=tmp_path / "serve.log") as svc:
        with RewardClient(svc.url) as client:
            assert [r.reward for r in client.score(items)] == [r.reward for r in expected]
        proc = svc.proc
    assert proc is not None and proc.returncode is not None
