"""The reward service's VLM-judge mode on loopback: judge items (a caption and its media) scored exactly as
``VLMJudge.score`` scores them in process, next to QA items; bad media a 422 naming the item and field, with the
other items still scored; paths held inside the media root; no judge loaded a clear 422; a judge that gives no
valid scores a 500 for its item with the reason and its answers (never a made-up reward); readiness, metrics and
the client.

The happy path runs over a rule-based judge double (its scores follow from the pixels and the prompt, so a mix-up
of media or items shows); the failure path also runs over the real tiny captioner, whose noise is never JSON.
"""

from __future__ import annotations

import base64
import json
import os
import threading
import time

import httpx
import pytest
from test_server_support import NOJSON, RuleJudgeCaptioner, caprl_prompt, item_json, make_items

from caprl.captioners.base import GenerationSettings
from caprl.data.media import open_image, sample_frames
from caprl.reward.engine import RewardConfig, RewardEngine
from caprl.reward.judge import JUDGE_SAMPLING, JudgeItem, VLMJudge
from caprl.schema import FrameSampling
from caprl.server import JudgeItemInput, JudgeRewardResult, RewardClient, RewardRequestError
from caprl.server.serve import BackgroundServer
from caprl.server.settings import ServerSettings
from caprl.synth.samples import make_image_sample, make_video_sample


def rule_judge() -> VLMJudge:
    return VLMJudge(RuleJudgeCaptioner(), retries=1)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def image_item(caption: str, *, data: bytes | None = None, path: str | None = None, id: str | None = None) -> dict:
    media = {"type": "image", "data": b64(data)} if data is not None else {"type": "image", "path": path}
    return {"mode": "judge", "caption": caption, "media": media, **({"id": id} if id else {})}


def video_item(caption: str, path: str, sampling: dict | None = None, id: str | None = None) -> dict:
    media = {"type": "video", "path": path, **({"sampling": sampling} if sampling else {})}
    return {"mode": "judge", "caption": caption, "media": media, **({"id": id} if id else {})}


def post(srv, path: str, body) -> httpx.Response:
    return httpx.post(srv.url + path, json=body, timeout=60)


# ------------------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    """A media root with an image, a second image, a video, broken files and a symlink out; a secret beside it."""
    base = tmp_path_factory.mktemp("judge_media")
    root, outside = base / "root", base / "outside"
    (root / "images").mkdir(parents=True)
    (root / "videos").mkdir()
    outside.mkdir()
    _, png0 = make_image_sample(0, seed=3, size=56)
    _, png1 = make_image_sample(1, seed=3, size=84)
    _, mp4 = make_video_sample(0, seed=3, size=56, fps=4)
    (root / "images" / "one.png").write_bytes(png0)
    (root / "images" / "two.png").write_bytes(png1)
    (root / "videos" / "clip.mp4").write_bytes(mp4)
    (root / "images" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (root / "videos" / "broken.mp4").write_bytes(b"not a video at all")
    (outside / "secret.png").write_bytes(png0)
    os.symlink(outside / "secret.png", root / "images" / "link.png")
    return {"root": root, "outside": outside, "png0": png0, "png1": png1}


@pytest.fixture(scope="module")
def engine(reader):
    return RewardEngine(reader, RewardConfig(seed=7))


@pytest.fixture(scope="module")
def items():
    return make_items(2)


@pytest.fixture(scope="module")
def settings(media):
    return ServerSettings(max_request_items=16, max_pending=64, max_caption_chars=4000, media_root=media["root"])


@pytest.fixture(scope="module")
def server(engine, settings):
    """The reader and the rule judge in one service."""
    with BackgroundServer(engine, settings, judge=rule_judge()) as srv:
        yield srv


# ------------------------------------------------------------------------------------------------ happy path


def test_judge_items_score_as_the_in_process_judge(server, engine, items, media):
    root = media["root"]
    body = {
        "items": [
            item_json(items[0]),
            image_item("A red circle and a blue square.", data=media["png0"], id="inline"),
            image_item("Two shapes on white.", path="images/two.png", id="by-path"),
            video_item("[00:00] A square moves right.", "videos/clip.mp4", id="clip"),
            video_item("[00:00] A square.", "videos/clip.mp4", sampling={"num_frames": 4}),
            item_json(items[1]),
        ]
    }
    response = post(server, "/v1/rewards", body)
    assert response.status_code == 200, response.text
    got = response.json()["results"]

    # QA items: exactly the in-process engine, as before.
    want_qa = engine.score(items)
    assert [got[0], got[5]] == [json.loads(r.model_dump_json()) for r in want_qa]

    # Judge items: exactly the in-process judge on the same media, loaded the way the judge loads it.
    clip = sample_frames(root / "videos" / "clip.mp4", JUDGE_SAMPLING)
    want = rule_judge().score(
        [
            JudgeItem(open_image(media["png0"]), "A red circle and a blue square.", id="inline"),
            JudgeItem(open_image(root / "images" / "two.png"), "Two shapes on white.", id="by-path"),
            JudgeItem(clip, "[00:00] A square moves right.", id="clip"),
            JudgeItem(sample_frames(root / "videos" / "clip.mp4", FrameSampling(num_frames=4)), "[00:00] A square."),
        ]
    )
    assert all(w.ok for w in want) and len(clip) > 4
    for res, w in zip(got[1:5], want, strict=True):
        assert res["mode"] == "judge"
        assert (res["id"], res["modality"], res["reward"]) == (w.id, w.modality, w.score)
        assert res["scores"] == w.scores and res["attempts"] == w.attempts == 1
        assert res["raw"] == w.raw and res["rejected"] == []
    assert set(got[3]["scores"]) == {"factuality", "temporal_alignment", "coverage", "hallucination"}
    assert set(got[1]["scores"]) == {"factuality", "coverage", "hallucination"}
    assert got[1]["scores"] != got[2]["scores"]  # different images, different scores: no mix-up


def test_judge_parse_failure_is_a_500_for_that_item_with_reason_and_answers(server, items):
    body = {
        "items": [
            image_item(f"{NOJSON} a caption", path="images/one.png", id="bad"),
            item_json(items[0]),
            image_item("A fine caption.", path="images/one.png"),
        ]
    }
    response = post(server, "/v1/rewards", body)
    assert response.status_code == 500, response.text
    data = response.json()
    [error] = data["errors"]
    assert (error["index"], error["id"], error["status"]) == (0, "bad", 500)
    assert error["message"].startswith("item 0 (id 'bad'): the judge gave no score: no valid scores in 2 attempt(s)")
    assert "no JSON object in the answer" in error["message"]
    assert error["raw"] == ["I would rather describe the weather."] * 2  # every answer, as the judge gave it
    results = data["results"]
    assert results[0] is None  # never a made-up reward
    assert results[1]["reward"] is not None and results[2]["mode"] == "judge"


BAD_MEDIA = {
    "not base64": (lambda: image_item("c", data=b"x") | {"media": {"type": "image", "data": "%%%"}}, "media.data",
                   "not valid base64"),
    "undecodable image bytes": (lambda: image_item("c", data=b"plain text, no image"), "media.data",
                                "not a readable image"),
    "undecodable image file": (lambda: image_item("c", path="images/broken.png"), "media.path", "image"),
    "undecodable video": (lambda: video_item("c", "videos/broken.mp4"), "media.path", "video"),
    "missing file": (lambda: image_item("c", path="images/nope.png"), "media.path", "no such file"),
    "a directory": (lambda: image_item("c", path="images"), "media.path", "no such file"),
    "dot-dot out of the root": (lambda: image_item("c", path="../outside/secret.png"), "media.path",
                                "outside the server's media root"),
    "absolute path elsewhere": (lambda: image_item("c", path="/etc/passwd"), "media.path",
                                "outside the server's media root"),
    "symlink out of the root": (lambda: image_item("c", path="images/link.png"), "media.path",
                                "outside the server's media root"),
    "no media": (lambda: {"mode": "judge", "caption": "c"}, "media", "required"),
    "no media type": (lambda: {"mode": "judge", "caption": "c", "media": {"path": "images/one.png"}}, "media.type",
                      "required"),
    "data and path": (lambda: image_item("c", path="images/one.png") | {"media": {
        "type": "image", "path": "images/one.png", "data": "AAAA"}}, "media", "not both"),
    "too many frames": (lambda: video_item("c", "videos/clip.mp4", {"max_frames": 65}), "media.sampling.max_frames",
                        "more than this server's 64"),
    "fps and num_frames": (lambda: video_item("c", "videos/clip.mp4", {"fps": 1, "num_frames": 2}), "media.sampling",
                           "not both"),
    "MCQs on a judge item": (lambda: image_item("c", path="images/one.png") | {"mcqs": []}, "mcqs", "not used"),
    "modality mismatch": (lambda: image_item("c", path="images/one.png") | {"modality": "video"}, "modality",
                          "does not match"),
    "unknown mode": (lambda: image_item("c", path="images/one.png") | {"mode": "vlm"}, "mode", "'judge'"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(BAD_MEDIA))
def test_bad_media_is_422_naming_item_and_field_and_others_are_scored(server, media, case):
    make, field, reason = BAD_MEDIA[case]
    body = {"items": [image_item("Good.", path="images/one.png"), make(), image_item("Fine.", data=media["png1"])]}
    response = post(server, "/v1/rewards", body)
    assert response.status_code == 422, response.text
    data = response.json()
    [error] = data["errors"]
    assert (error["index"], error["field"], error["status"]) == (1, field, 422), error
    assert error["message"].startswith(f"item 1, field {field!r}: ") and reason in error["message"], error
    assert str(media["outside"]) not in error["message"] and str(media["root"]) not in error["message"]
    results = data["results"]
    assert results[0]["mode"] == results[2]["mode"] == "judge" and results[1] is None


def test_health_metrics_and_schema(server, items):
    health = httpx.get(server.url + "/health").json()
    assert health["status"] == "ready" and health["judge"] == "rules:judge" and health["reader"]
    post(server, "/v1/rewards", {"items": [image_item(f"{NOJSON}", path="images/one.png")]})
    post(server, "/v1/rewards", {"items": [image_item("c", path="images/nope.png")]})
    text = httpx.get(server.url + "/metrics").text
    expected = [f'caprl_judge_items_total{{outcome="{o}"}}' for o in ("scored", "failed", "invalid")]
    expected += ["caprl_judge_parse_failures_total", "caprl_judge_batch_items_bucket", "caprl_judge_seconds_bucket"]
    for line in [*expected, 'caprl_errors_total{kind="judge"}']:
        assert line in text, line
    parse_failures = next(ln for ln in text.splitlines() if ln.startswith("caprl_judge_parse_failures_total"))
    assert float(parse_failures.split()[-1]) >= 2  # both attempts of the NOJSON item, at least
    schema = httpx.get(server.url + "/openapi.json").json()["components"]["schemas"]
    assert {"JudgeItemInput", "ImageMediaInput", "VideoMediaInput", "FrameSamplingInput", "JudgeRewardResult"} <= set(
        schema
    )


# ------------------------------------------------------------------------------------------------ client


def test_client_passes_media_through(server, engine, items, media):
    from PIL import Image

    picture = Image.open(media["root"] / "images" / "two.png")
    judge_items = [
        JudgeItemInput.image("Two shapes.", picture, id="pil"),
        JudgeItemInput.image("One shape.", media["png0"], id="bytes"),
        JudgeItemInput.video("[00:00] Moves.", "videos/clip.mp4", sampling={"num_frames": 4}, id="clip"),
        video_item("[00:00] Moves.", "videos/clip.mp4", id="dict"),
    ]
    with RewardClient(server.url, chunk_size=2, backoff_base=0.05, timeout=30) as client:
        results = client.score([items[0], *judge_items])
        assert results[0].reward == engine.score(items[:1])[0].reward
        assert all(isinstance(r, JudgeRewardResult) for r in results[1:])
        want = rule_judge().score(
            [
                JudgeItem(open_image(media["root"] / "images" / "two.png"), "Two shapes.", id="pil"),
                JudgeItem(open_image(media["png0"]), "One shape.", id="bytes"),
                JudgeItem(sample_frames(media["root"] / "videos" / "clip.mp4", FrameSampling(num_frames=4)),
                          "[00:00] Moves.", id="clip"),
                JudgeItem(sample_frames(media["root"] / "videos" / "clip.mp4", JUDGE_SAMPLING), "[00:00] Moves.",
                          id="dict"),
            ]
        )  # fmt: skip
        assert [(r.id, r.reward, r.scores) for r in results[1:]] == [(w.id, w.score, w.scores) for w in want]

        with pytest.raises(RewardRequestError) as caught:
            client.score([items[0], JudgeItemInput.image(NOJSON, media["png0"]), judge_items[0]])
        err = caught.value
        assert err.status == 500 and [e.index for e in err.errors] == [1]
        assert err.errors[0].raw and "no valid scores" in err.errors[0].message
        assert err.results[1] is None and isinstance(err.results[2], JudgeRewardResult)


# ------------------------------------------------------------------------------------------------ no judge, no reader


def test_judge_items_on_a_server_without_judge_get_a_clear_422(engine, settings, items):
    with BackgroundServer(engine, settings) as srv:
        assert httpx.get(srv.url + "/health").json()["judge"] is None
        response = post(srv, "/v1/rewards", {"items": [image_item("c", path="images/one.png"), item_json(items[0])]})
        assert response.status_code == 422
        data = response.json()
        [error] = data["errors"]
        assert (error["index"], error["field"]) == (0, "mode")
        assert "no VLM judge loaded" in error["message"] and "--judge" in error["message"]
        assert data["results"][1]["reward"] is not None


def test_judge_only_server(settings, items):
    with BackgroundServer(None, settings, judge=rule_judge()) as srv:
        health = httpx.get(srv.url + "/health")
        assert health.status_code == 200 and health.json()["reader"] is None and health.json()["judge"]
        response = post(srv, "/v1/rewards", {"items": [item_json(items[0]), image_item("c", path="images/one.png")]})
        assert response.status_code == 422
        data = response.json()
        assert data["errors"][0]["field"] == "mode" and "no reader" in data["errors"][0]["message"]
        assert data["results"][1]["mode"] == "judge"
        response = post(srv, "/get_reward", {"prompts": [caprl_prompt(items[0])]})
        assert response.status_code == 422 and "no reader" in response.json()["detail"]


def test_no_paths_without_a_media_root(engine, media):
    with BackgroundServer(None, ServerSettings(), judge=rule_judge()) as srv:
        response = post(srv, "/v1/rewards", {"items": [image_item("c", path="images/one.png"),
                                                       image_item("c", data=media["png0"])]})  # fmt: skip
        assert response.status_code == 422
        [error] = response.json()["errors"]
        assert error["field"] == "media.path" and "--media-root" in error["message"]


# ------------------------------------------------------------------------------------------------ readiness


def test_health_is_ready_only_when_both_models_are_loaded(engine, settings, items):
    loaded = threading.Event()

    def slow_judge() -> VLMJudge:
        loaded.wait(30)
        return rule_judge()

    with BackgroundServer(engine, settings, judge=slow_judge) as srv:
        health = httpx.get(srv.url + "/health")
        assert health.status_code == 503 and health.json()["status"] == "loading"
        response = post(srv, "/v1/rewards", {"items": [item_json(items[0])]})
        assert response.status_code == 503 and "the models are still loading" in response.json()["detail"]
        loaded.set()
        deadline = time.monotonic() + 10
        while httpx.get(srv.url + "/health").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert httpx.get(srv.url + "/health").json()["judge"] == "rules:judge"

    def broken() -> VLMJudge:
        raise OSError("no such judge: /nowhere")

    with BackgroundServer(engine, settings, judge=broken) as srv:
        deadline = time.monotonic() + 10
        while (health := httpx.get(srv.url + "/health").json())["status"] == "loading":
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert health["status"] == "failed" and health["detail"].startswith("the judge failed to load")


# ------------------------------------------------------------------------------------------------ the tiny VLM


def test_tiny_captioner_judge_fails_loudly_like_in_process(tiny_models, media, settings):
    """A random-weights VLM never answers with valid scores: each judge item fails with its reason and raw answers,
    the same answers the in-process judge gets."""
    import torch

    from caprl.captioners.transformers import TransformersCaptioner

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        captioner = TransformersCaptioner(str(tiny_models.captioner), device="cpu")
        judge = VLMJudge(captioner, retries=1, settings=GenerationSettings(max_new_tokens=6, seed=3))
        body = {
            "items": [
                image_item("A red circle.", data=media["png0"], id="img"),
                video_item("[00:00] A square.", "videos/clip.mp4", sampling={"num_frames": 2}, id="vid"),
            ]
        }
        with BackgroundServer(None, settings, judge=judge) as srv:
            response = post(srv, "/v1/rewards", body)
        clip = sample_frames(media["root"] / "videos" / "clip.mp4", FrameSampling(num_frames=2))
        want = judge.score(
            [
                JudgeItem(open_image(media["png0"]), "A red circle.", id="img"),
                JudgeItem(clip, "[00:00] A square.", id="vid"),
            ]
        )
    finally:
        torch.set_num_threads(before)
    assert response.status_code == 500, response.text
    data = response.json()
    assert data["results"] == [None, None]
    for error, w in zip(data["errors"], want, strict=True):
        assert not w.ok and error["status"] == 500 and error["id"] == w.id
        assert "no valid scores in 2 attempt(s)" in error["message"]
        assert error["raw"] == w.raw and len(w.raw) == 2


# ------------------------------------------------------------------------------------------------ command line


def test_serve_command_judge_flags():
    from typer.testing import CliRunner

    from caprl.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["reward", "serve", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for text in ("--judge", "--judge-backend", "--media-root", "--max-judge-frames", "--judge-max-batch"):
        assert text in result.output, text
    result = runner.invoke(app, ["reward", "serve"])
    assert result.exit_code != 0 and "--judge" in result.output
    result = runner.invoke(app, ["reward", "serve", "--judge", "x", "--judge-backend", "nope"])
    assert result.exit_code != 0 and "transformers" in result.output
