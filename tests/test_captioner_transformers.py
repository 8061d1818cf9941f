"""TransformersCaptioner on the tiny random Qwen2.5-VL: its text is noise, so these tests check the machinery.

Batched greedy output equals one-at-a-time output, request order survives modality splitting, sampling is seeded
per row, videos reach the processor with their real frame times, and bad media is blamed on its request.
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from transformers.video_utils import VideoMetadata

from caprl.captioners.base import Captioner, CaptionerError, CaptionRequest, GenerationSettings
from caprl.captioners.transformers import TransformersCaptioner, row_seed, sampling_fps, video_metadata
from caprl.data.media import VideoFrames

GREEDY = GenerationSettings(max_new_tokens=10)


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    # Tiny matmuls on a shared 2-core machine: two intra-op threads make every op wait on the other core.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def cap(tiny_models) -> TransformersCaptioner:
    return TransformersCaptioner(str(tiny_models.captioner), batch_size=8)


@contextmanager
def batch_size(cap: TransformersCaptioner, n: int):
    before = cap.batch_size
    cap.batch_size = n
    try:
        yield
    finally:
        cap.batch_size = before


def image(w: int, h: int, colour: str) -> Image.Image:
    img = Image.new("RGB", (w, h), "white")
    ImageDraw.Draw(img).ellipse((4, 4, w // 2, h // 2), fill=colour)
    return img


def video(frames: int, size: int, fps: float = 2.0, start: float = 0.0) -> VideoFrames:
    arr = np.full((frames, size, size, 3), 255, dtype=np.uint8)
    for t in range(frames):
        arr[t, 10:30, 4 + 5 * t : 24 + 5 * t] = (30, 160, 60)
    times = [start + t / fps for t in range(frames)]
    return VideoFrames(frames=arr, timestamps=times, duration=frames / fps, native_fps=25.0)


def mixed_requests() -> list[CaptionRequest]:
    # Different image sizes and video lengths, so rows of one batch really are padded to different lengths.
    return [
        CaptionRequest(image(224, 224, "red"), "Please describe this image in detail.", id="img-a"),
        CaptionRequest(video(8, 112), "Please describe this video in detail.", id="vid-a"),
        CaptionRequest(image(112, 168, "blue"), "Describe.", id="img-b", system="Be brief."),
        CaptionRequest(video(5, 84), "Describe the video.", id="vid-b"),
        CaptionRequest(image(280, 196, "green"), "What is in the picture?", id="img-c"),
    ]


def test_is_a_captioner_and_renders_with_the_chat_template(cap):
    assert isinstance(cap, Captioner)
    assert cap.name.startswith("transformers:")
    img_req = CaptionRequest(image(224, 224, "red"), "Describe it.", system="Be brief.")
    text = cap.render_prompt(img_req)
    assert "<|vision_start|><|image_pad|><|vision_end|>Describe it." in text
    assert text.startswith("<|im_start|>system\nBe brief.<|im_end|>")
    assert text.endswith("<|im_start|>assistant\n")
    vid_text = cap.render_prompt(CaptionRequest(video(4, 84), "Describe the video."))
    assert "<|video_pad|>" in vid_text and "You are a helpful assistant." in vid_text  # template's default system
    assert cap.caption([]) == []


def test_greedy_batched_equals_one_at_a_time(cap):
    requests = mixed_requests()
    batched = cap.caption(requests, GREEDY)
    with batch_size(cap, 1):
        alone = [cap.caption([r], GREEDY)[0] for r in requests]
    with batch_size(cap, 2):  # chunks that cut across requests of one modality
        chunked = cap.caption(requests, GREEDY)
    assert batched == alone == chunked
    assert all(len(texts) == 1 and isinstance(texts[0], str) for texts in batched)
    assert len({texts[0] for texts in batched}) > 1  # distinct media give distinct outputs (order is real)


def test_greedy_n_samples_are_copies_and_max_new_tokens_cuts(cap):
    req = mixed_requests()[:2]
    three = cap.caption(req, GenerationSettings(max_new_tokens=10, n=3))
    assert [len(t) for t in three] == [3, 3] and all(len(set(t)) == 1 for t in three)
    short = cap.caption(req, GenerationSettings(max_new_tokens=3))
    for s, long in zip(short, three, strict=True):
        assert long[0].startswith(s[0]) and len(s[0]) <= len(long[0])
    one = cap.caption(req, GenerationSettings(max_new_tokens=1))
    tok = cap.processor.tokenizer
    assert all(len(tok(t[0], add_special_tokens=False)["input_ids"]) <= 2 for t in one)


def test_sampling_is_seeded_per_row(cap):
    requests = mixed_requests()[:4]
    settings = GenerationSettings(max_new_tokens=6, temperature=1.0, n=2, seed=7)
    first = cap.caption(requests, settings)
    assert cap.caption(requests, settings) == first
    assert [len(t) for t in first] == [2] * len(requests)
    assert all(len(set(t)) > 1 for t in first)  # the n samples of a request differ
    other_seed = cap.caption(requests, GenerationSettings(max_new_tokens=6, temperature=1.0, n=2, seed=8))
    assert other_seed != first
    # A sample depends on (seed, request id, j) only: not on the batch size nor on the other requests.
    with batch_size(cap, 2):
        assert cap.caption(requests, settings) == first
    assert cap.caption([requests[3]], settings) == [first[3]]


def test_sampling_without_seed_follows_torch_global_rng(cap):
    req = mixed_requests()[:1]
    settings = GenerationSettings(max_new_tokens=8, temperature=1.0, n=2)
    torch.manual_seed(123)
    a = cap.caption(req, settings)
    torch.manual_seed(123)
    assert cap.caption(req, settings) == a
    assert cap.caption(req, settings) != a
    assert row_seed(0, "id:x", 0) == row_seed(0, "id:x", 0) != row_seed(0, "id:x", 1)


def test_top_p_near_zero_is_greedy(cap):
    requests = mixed_requests()[:3]
    greedy = cap.caption(requests, GenerationSettings(max_new_tokens=8))
    nucleus = cap.caption(requests, GenerationSettings(max_new_tokens=8, temperature=1.0, top_p=1e-6, seed=1))
    assert nucleus == greedy


@pytest.mark.parametrize(("fps", "start", "seconds_per_patch"), [(2.0, 0.0, 1.0), (1.0, 0.0, 2.0), (4.0, 0.125, 0.5)])
def test_video_reaches_processor_with_real_frame_times(cap, fps, start, seconds_per_patch):
    clip = video(8, 112, fps=fps, start=start)
    md = video_metadata(clip)
    meta = VideoMetadata(**md)
    assert meta.sampled_fps == pytest.approx(fps, rel=1e-3)
    assert meta.timestamps == pytest.approx(clip.timestamps, abs=1e-3)
    assert sampling_fps(clip) == pytest.approx(fps)
    inputs = cap._encode([CaptionRequest(clip, "Describe.")], [clip])
    assert inputs["video_grid_thw"].tolist() == [[4, 8, 8]]  # all 8 frames kept: no resampling
    assert inputs["second_per_grid_ts"].tolist() == pytest.approx([seconds_per_patch], rel=1e-3)


def test_bad_media_is_blamed_on_its_request(cap):
    good = CaptionRequest(image(224, 224, "red"), "Describe.", id="fine")
    thin = CaptionRequest(Image.new("RGB", (2000, 5)), "Describe.", id="too-thin")
    with pytest.raises(CaptionerError, match="too-thin") as err:
        cap.caption([good, thin], GREEDY)
    assert "fine" not in str(err.value) and "aspect ratio" in str(err.value)

    flat = VideoFrames(frames=np.zeros((4, 56, 56), np.uint8), timestamps=[0, 0.5, 1, 1.5], duration=2, native_fps=2)
    with pytest.raises(CaptionerError, match=r"'flat-video'.*\(T, H, W, 3\)"):
        cap.caption([good, CaptionRequest(flat, "Describe.", id="flat-video")], GREEDY)
    with pytest.raises(CaptionerError, match=r"#1 \(no id\).*media must be"):
        cap.caption([good, CaptionRequest("not media", "Describe.")], GREEDY)  # type: ignore[arg-type]
