"""VLM-judge reward: parsing of judge answers, fusion, retries and reported failures.

The judge logic is tested with a scripted Captioner (a test double that returns set answers); one end-to-end test
runs the judge over the real tiny captioner, whose noise must end as a reported failure, never a score.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
import pytest
import torch
from PIL import Image

from caprl.captioners.base import Captioner, CaptionerError, CaptionRequest, GenerationSettings
from caprl.data.media import VideoFrames
from caprl.reward.judge import (
    DEFAULT_WEIGHTS,
    DIMENSIONS,
    JudgeItem,
    JudgeParseError,
    VLMJudge,
    check_weights,
    fuse,
    judge_prompt,
    parse_judge_output,
)

VALID = '{"factuality": 8, "temporal_alignment": 6, "coverage": 7, "hallucination": 9}'
EXPECTED = {"factuality": 8.0, "temporal_alignment": 6.0, "coverage": 7.0, "hallucination": 9.0}
IMAGE_VALID = '{"factuality": 8, "coverage": 7, "hallucination": 9}'


def frames(n: int = 4) -> VideoFrames:
    return VideoFrames(
        frames=np.zeros((n, 56, 56, 3), np.uint8), timestamps=[t / 2 for t in range(n)], duration=n / 2, native_fps=2
    )


def picture() -> Image.Image:
    return Image.new("RGB", (56, 56), "white")


class ScriptedCaptioner:
    """Answers each request with the next scripted text for its id; records every call."""

    name = "scripted"

    def __init__(self, script: dict[str, list[str]], reject: Sequence[str] = ()):
        self.script = {k: list(v) for k, v in script.items()}
        self.reject = set(reject)
        self.calls: list[tuple[list[str | None], GenerationSettings]] = []
        self.prompts: dict[str | None, str] = {}

    def caption(self, requests: Sequence[CaptionRequest], settings: GenerationSettings | None = None):
        self.calls.append(([r.id for r in requests], settings))
        bad = [r.id for r in requests if r.id in self.reject]
        if bad:
            raise CaptionerError(f"media rejected by the processor: request {bad[0]!r}: too small")
        for r in requests:
            self.prompts[r.id] = r.prompt
        return [[self.script[r.id].pop(0)] for r in requests]


# ---- parsing --------------------------------------------------------------------------------------------------

PARSED = [
    ("plain", VALID, EXPECTED),
    ("fenced", f"```json\n{VALID}\n```", EXPECTED),
    ("prose around", f"Here is my assessment.\n{VALID}\nOverall the caption is good.", EXPECTED),
    ("single quotes, trailing comma", str(EXPECTED).replace("}", ",}"), EXPECTED),
    (
        "numbers as strings",
        '{"factuality": "8", "temporal_alignment": "6.5", "coverage": " 7 ", "hallucination": "9"}',
        {**EXPECTED, "temporal_alignment": 6.5},
    ),
    (
        "stated per-value scales",
        '{"factuality": "8/10", "temporal_alignment": "0.6/1", "coverage": "70%", "hallucination": "9 out of 10"}',
        EXPECTED,
    ),
    (
        "stated 0-1 scale",
        '{"scale": "0-1", "factuality": 0.8, "temporal_alignment": 0.6, "coverage": 0.7, "hallucination": 0.9}',
        EXPECTED,
    ),
    (
        "key case and spacing",
        '{"Factuality": 8, "Temporal Alignment": 6, "coverage": 7, "HALLUCINATION": 9}',
        EXPECTED,
    ),
    (
        "score objects with reasons",
        json.dumps({k: {"score": v, "reason": "ok {fine}"} for k, v in EXPECTED.items()}),
        EXPECTED,
    ),
    ("wrapped", json.dumps({"scores": EXPECTED, "comment": "fine"}), EXPECTED),
    (
        "think block with a draft",
        '<think>first guess {"factuality": 1, "temporal_alignment": 1, "coverage": 1, "hallucination": 1}'
        f"</think>\n{VALID}",
        EXPECTED,
    ),
    (
        "echoed template then answer",
        '{"factuality": <0-10>, "temporal_alignment": <0-10>, "coverage": <0-10>, "hallucination": <0-10>}\n' + VALID,
        EXPECTED,
    ),
    ("same object twice", f"{VALID}\nTo repeat: {VALID}", EXPECTED),
    ("zeros and tens", '{"factuality": 0, "temporal_alignment": 10, "coverage": 0, "hallucination": 10}', None),
    (
        "low integers are 0-10, not 0-1",
        '{"factuality": 1, "temporal_alignment": 0, "coverage": 1, "hallucination": 1}',
        None,
    ),
]

FAILED = [
    ("missing key", '{"factuality": 8, "temporal_alignment": 6, "coverage": 7}', "missing hallucination"),
    ("out of range high", VALID.replace("8", "11"), "outside 0-10"),
    ("out of range negative", VALID.replace("6", "-1"), "outside 0-10"),
    ("beyond stated scale", VALID.replace("8", '"12/10"'), "outside the stated scale"),
    ("non-JSON prose", "The caption is accurate; I would give it 9 out of 10.", "no JSON object"),
    ("empty", "   ", "empty answer"),
    ("word for a number", VALID.replace("8", '"high"'), "not a number"),
    ("boolean", VALID.replace("8", "true"), "not a number"),
    ("NaN", VALID.replace("8", "NaN"), "not finite"),
    ("truncated", '{"factuality": 8, "temporal_alig', "no JSON object"),
    (
        "unstated 0-1 scale",
        '{"factuality": 0.8, "temporal_alignment": 0.6, "coverage": 0.7, "hallucination": 0.9}',
        "0-1",
    ),
    ("two different objects", f"{VALID}\n{VALID.replace('8', '3')}", "2 different score objects"),
    ("a list, not an object", "[8, 6, 7, 9]", "no JSON object"),
    ("broken object", "{factuality: eight}", "neither JSON nor a Python literal"),
]


@pytest.mark.parametrize(("name", "text", "expected"), PARSED, ids=[p[0] for p in PARSED])
def test_parses_near_miss_answers(name, text, expected):
    scores = parse_judge_output(text, "video")
    assert set(scores) == set(DIMENSIONS)
    if expected is not None:
        assert scores == pytest.approx(expected)


@pytest.mark.parametrize(("name", "text", "reason"), FAILED, ids=[f[0] for f in FAILED])
def test_rejects_bad_answers_with_a_reason(name, text, reason):
    with pytest.raises(JudgeParseError, match=reason):
        parse_judge_output(text, "video")


def test_image_answers_need_no_temporal_score():
    assert parse_judge_output(IMAGE_VALID, "image") == {"factuality": 8, "coverage": 7, "hallucination": 9}
    # A temporal score given for an image is ignored, not fused.
    assert "temporal_alignment" not in parse_judge_output(VALID, "image")
    with pytest.raises(JudgeParseError, match="missing temporal_alignment"):
        parse_judge_output(IMAGE_VALID, "video")


# ---- fusion ---------------------------------------------------------------------------------------------------


def test_fusion_video_uses_reference_weights():
    assert fuse(EXPECTED, "video") == pytest.approx((0.30 * 8 + 0.25 * 6 + 0.25 * 7 + 0.20 * 9) / 10)  # 0.745
    assert fuse(dict.fromkeys(DIMENSIONS, 10.0), "video") == pytest.approx(1.0)
    assert fuse(dict.fromkeys(DIMENSIONS, 0.0), "video") == 0.0


def test_fusion_image_renormalises_without_temporal():
    image_scores = {"factuality": 8.0, "coverage": 7.0, "hallucination": 9.0}
    expected = (0.30 * 8 + 0.25 * 7 + 0.20 * 9) / 0.75 / 10  # weights 0.40 / 0.333 / 0.267
    assert fuse(image_scores, "image") == pytest.approx(expected)
    assert fuse({**image_scores, "temporal_alignment": 0.0}, "image") == pytest.approx(expected)
    assert fuse(dict.fromkeys(DIMENSIONS, 10.0), "image") == pytest.approx(1.0)


def test_weights_are_checked():
    custom = {"factuality": 1, "temporal_alignment": 0, "coverage": 1, "hallucination": 0}
    assert fuse(EXPECTED, "video", check_weights(custom)) == pytest.approx(0.75)
    with pytest.raises(ValueError, match="missing"):
        check_weights({"factuality": 1})
    with pytest.raises(ValueError, match="unknown"):
        check_weights({**DEFAULT_WEIGHTS, "style": 0.1})
    with pytest.raises(ValueError, match=">= 0"):
        check_weights({**DEFAULT_WEIGHTS, "coverage": -0.1})
    with pytest.raises(ValueError, match="image captions no positive weight"):
        check_weights({"factuality": 0, "temporal_alignment": 1, "coverage": 0, "hallucination": 0})


# ---- the judge over a scripted captioner ----------------------------------------------------------------------


def test_prompts_ask_for_the_modality_dimensions():
    video_prompt = judge_prompt("[00:00] A square moves right.", "video", duration=2.0)
    image_prompt = judge_prompt("A red circle.", "image")
    assert "[00:00] A square moves right." in video_prompt and "2.0 seconds" in video_prompt
    assert all(f'"{d}": <0-10>' in video_prompt for d in DIMENSIONS)
    assert "temporal_alignment" not in image_prompt
    assert "Higher means fewer hallucinations" in image_prompt


def test_batched_scoring_with_retries_and_reports():
    script = {
        "good-video": [f"```json\n{VALID}\n```"],
        "good-image": [IMAGE_VALID],
        "fixed-on-retry": ["Sure! The caption is fine.", IMAGE_VALID],
        "never-valid": ["{}", "nonsense", '{"factuality": 42, "coverage": 1, "hallucination": 1}'],
    }
    cap = ScriptedCaptioner(script)
    assert isinstance(cap, Captioner)
    items = [
        JudgeItem(frames(), "[00:00] a square", id="good-video"),
        JudgeItem(picture(), "a circle", id="good-image"),
        JudgeItem(picture(), "a circle", id="fixed-on-retry"),
        JudgeItem(picture(), "a circle", id="never-valid"),
    ]
    results = VLMJudge(cap, retries=2).score(items)

    assert [r.id for r in results] == [it.id for it in items]
    good_video, good_image, fixed, never = results
    assert good_video.ok and good_video.score == pytest.approx(0.745) and good_video.attempts == 1
    assert good_video.modality == "video" and good_video.scores == EXPECTED
    assert good_image.score == pytest.approx((0.30 * 8 + 0.25 * 7 + 0.20 * 9) / 7.5)
    assert (
        fixed.ok and fixed.attempts == 2 and fixed.raw == script["fixed-on-retry"]
    )  # the double pops from its own copy
    assert fixed.errors == ["no JSON object in the answer"] and fixed.error is None

    assert not never.ok and never.score is None and never.scores is None
    assert never.attempts == 3 and len(never.raw) == 3 and never.raw[1] == "nonsense"
    assert "3 attempt(s)" in never.error and "outside 0-10" in never.error
    assert json.loads(json.dumps(never.to_dict()))["score"] is None

    # One batched call per attempt; retries carry only the items still failing, at a new seed and temperature.
    assert [ids for ids, _ in cap.calls] == [
        ["good-video", "good-image", "fixed-on-retry", "never-valid"],
        ["fixed-on-retry", "never-valid"],
        ["never-valid"],
    ]
    seeds = [(s.seed, s.temperature, s.n) for _, s in cap.calls]
    assert seeds == [(0, 0.0, 1), (1, 0.7, 1), (2, 0.7, 1)]
    assert "temporal_alignment" in cap.prompts["good-video"]
    assert "temporal_alignment" not in cap.prompts["good-image"]


def test_zero_retries_and_rejected_media():
    cap = ScriptedCaptioner({"ok": [IMAGE_VALID], "bad-answer": ["{'factuality': 9}"]}, reject=["broken"])
    items = [JudgeItem(picture(), "c", id=i) for i in ("ok", "broken", "bad-answer")]
    ok, broken, bad = VLMJudge(cap, retries=0).score(items)
    assert ok.ok
    # Media the judge cannot take: reported, not retried, no answer kept, and the other items still scored.
    assert broken.score is None and broken.attempts == 0 and broken.raw == []
    assert "judge call failed" in broken.error and "'broken'" in broken.error
    assert bad.score is None and bad.attempts == 1 and "missing coverage, hallucination" in bad.error
    # The failed batch was split into single calls to isolate the rejected item.
    assert [ids for ids, _ in cap.calls] == [["ok", "broken", "bad-answer"], ["ok"], ["broken"], ["bad-answer"]]


# ---- end to end over the tiny captioner -----------------------------------------------------------------------


def test_tiny_captioner_noise_ends_as_reported_failure(tiny_models):
    from caprl.captioners.transformers import TransformersCaptioner

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        judge_model = TransformersCaptioner(str(tiny_models.captioner))
        judge = VLMJudge(judge_model, retries=1, settings=GenerationSettings(max_new_tokens=8, seed=3))
        items = [
            JudgeItem(Image.new("RGB", (112, 112), "red"), "A red square.", id="img"),
            JudgeItem(frames(4), "[00:00] Nothing happens.", id="vid"),
        ]
        results = judge.score(items)
    finally:
        torch.set_num_threads(before)
    for res, item in zip(results, items, strict=True):
        assert res.id == item.id and res.modality == item.modality
        assert res.score is None and res.scores is None
        assert res.attempts == 2 and len(res.raw) == 2 and len(res.errors) == 2
        assert all(isinstance(r, str) for r in res.raw)
        assert res.error.startswith("no valid scores in 2 attempt(s)")
