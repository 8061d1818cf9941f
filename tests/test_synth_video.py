"""The shapes world, videos: deterministic mp4s, exact event MCQs, timed captions, events visible in decoded frames."""

from __future__ import annotations

import io
import re
from collections import Counter

import av
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from caprl.data.io import read_dataset
from caprl.schema import DEFAULT_VIDEO_PROMPT
from caprl.synth import (
    VIDEO_KINDS,
    answer_is_true,
    facts_for_query,
    generate_video_dataset,
    make_captions,
    make_mcqs,
    make_video_sample,
    make_video_scene,
    render_mp4,
)
from caprl.synth.cli import app
from caprl.synth.render import layout
from caprl.synth.video import encode_mp4, rgb_to_yuv420p
from caprl.synth.vocab import BACKGROUND, COLOURS, parse_timestamp

N_SCENES = 200
SCENES = [make_video_scene(s) for s in range(N_SCENES)]
_STAMP = re.compile(r"\[\d\d:\d\d(?: - \d\d:\d\d)?\]")


def _nearest(rgb) -> str:
    palette = {**COLOURS, "background": BACKGROUND}
    return min(palette, key=lambda k: sum((int(a) - int(b)) ** 2 for a, b in zip(palette[k], rgb, strict=True)))


def _decode(data: bytes) -> tuple[list[np.ndarray], list[float], float]:
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        frames = [(f.to_ndarray(format="rgb24"), float(f.time)) for f in container.decode(stream)]
        duration = container.duration / 1e6
    return [f for f, _ in frames], [t for _, t in frames], duration


def _colour_at(frames, times, scene, t: float, cell: tuple[int, int]) -> str:
    i = min(range(len(times)), key=lambda k: abs(times[k] - t))
    x, y = layout(scene).centre(*cell)
    return _nearest(frames[i][int(y), int(x)])


def _scene_with(kind: str):
    return next(s for s in SCENES if any(e.kind == kind for e in s.events))


def test_same_seed_gives_identical_mp4_and_different_seed_differs():
    a, mp4_a = make_video_sample(2, seed=0)
    b, mp4_b = make_video_sample(2, seed=0)
    _, mp4_other = make_video_sample(2, seed=1)
    assert mp4_a == mp4_b and a.model_dump() == b.model_dump()
    assert mp4_a != mp4_other
    assert render_mp4(SCENES[5]) == render_mp4(make_video_scene(5))


def test_rgb_to_yuv420p_is_bt601_limited_range_with_2x2_chroma_means():
    colours = {
        (0, 0, 0): (16, 128, 128),
        (255, 255, 255): (235, 128, 128),
        (255, 0, 0): (82, 90, 240),
        (0, 0, 255): (41, 240, 110),
    }
    for rgb, yuv in colours.items():
        y, cb, cr = rgb_to_yuv420p(np.full((2, 4, 3), rgb, dtype=np.uint8))
        assert y.shape == (2, 4) and cb.shape == cr.shape == (1, 2)
        assert (y == yuv[0]).all() and (cb == yuv[1]).all() and (cr == yuv[2]).all(), rgb
    block = np.zeros((2, 2, 3), dtype=np.uint8)
    block[0, 0] = (255, 0, 0)  # one red pixel in four: chroma of the mean colour (63.75, 0, 0), rounded
    _, cb, cr = rgb_to_yuv420p(block)
    assert (int(cb[0, 0]), int(cr[0, 0])) == (128 - 9, 128 + 28)
    with pytest.raises(ValueError, match="even"):
        rgb_to_yuv420p(np.zeros((3, 4, 3), dtype=np.uint8))


def test_mp4_is_tagged_bt601_limited_range_and_frames_must_share_one_size():
    data = render_mp4(make_video_scene(1, size=56, fps=2))
    with av.open(io.BytesIO(data)) as container:
        cc = container.streams.video[0].codec_context
        assert (cc.colorspace, cc.color_range) == (6, 1)  # AVCOL_SPC_SMPTE170M (BT.601), AVCOL_RANGE_MPEG
    with pytest.raises(ValueError, match="the first was 56x56"):
        encode_mp4([Image.new("RGB", (56, 56)), Image.new("RGB", (28, 56))], 2)


def test_video_mcqs_are_exact_and_cover_every_kind():
    kinds: Counter[str] = Counter()
    n_options: Counter[int] = Counter()
    for scene in SCENES:
        assert 4 <= scene.duration <= 8
        mcqs, queries = make_mcqs(scene)
        for mcq, query in zip(mcqs, queries, strict=True):
            assert 2 <= len(mcq.options) <= 6
            assert len({o.lower() for o in mcq.options}) == len(mcq.options)
            truth = [answer_is_true(scene, query, o) for o in mcq.options]
            assert truth == [i == mcq.gold for i in range(len(mcq.options))], (mcq, query, scene)
            if mcq.kind == "when":
                assert all(_STAMP.fullmatch(o) for o in mcq.options)
            kinds[mcq.kind] += 1
            n_options[len(mcq.options)] += 1
    assert set(kinds) == set(VIDEO_KINDS)
    assert {"order", "motion", "when"} <= set(kinds)
    assert set(n_options) == {2, 3, 4, 5, 6}


def test_events_are_well_formed():
    for scene in SCENES:
        starts = [e.start for e in sorted(scene.events, key=lambda e: e.start)]
        assert len(set(starts)) == len(starts) >= 2  # distinct times, so "which happened first" has one answer
        assert len({e.obj for e in scene.events}) == len(scene.events)
        assert len({o.shape for o in scene.objects}) == len(scene.objects)
        for e in scene.events:
            assert 1 <= e.start <= e.end < scene.duration
        cells = [(o.row, o.col) for o in scene.objects] + [
            (e.to_row, e.to_col) for e in scene.events if e.kind == "move"
        ]
        assert len(set(cells)) == len(cells)  # one object per cell at any time


def test_captions_are_chronological_and_exhaustive_one_answers_everything():
    for scene in SCENES:
        _, queries = make_mcqs(scene)
        captions = make_captions(scene)
        needed = [facts_for_query(scene, q) for q in queries]
        assert all(f in captions["exhaustive"] for facts in needed for f in facts)
        assert not all(f in captions["terse"] for facts in needed for f in facts)
        assert _STAMP.match(captions["terse"])
        for level in ("detailed", "exhaustive"):
            stamps = [parse_timestamp(s) for s in _STAMP.findall(captions[level])]
            assert stamps and all(s is not None for s in stamps)
            starts = [s[0] for s in stamps]
            assert starts == sorted(starts)
            assert len(stamps) >= 1 + len(scene.events)


def test_decoded_video_has_expected_frames_and_shows_each_event_at_its_time():
    for kind in ("appear", "colour", "move"):
        scene = _scene_with(kind)
        frames, times, duration = _decode(render_mp4(scene))
        assert len(frames) == scene.duration * scene.fps
        assert abs(duration - scene.duration) < 1e-6
        assert frames[0].shape == (scene.height, scene.width, 3)
        assert times[:3] == [0.0, 1 / scene.fps, 2 / scene.fps]
        e = next(e for e in scene.events if e.kind == kind)
        o = scene.obj(e.obj)
        before, after = e.start - 0.5, e.end + 0.5
        if kind == "appear":
            assert _colour_at(frames, times, scene, before, (o.row, o.col)) == "background"
            assert _colour_at(frames, times, scene, after, (o.row, o.col)) == o.colour
        elif kind == "colour":
            assert _colour_at(frames, times, scene, before, (o.row, o.col)) == o.colour
            assert _colour_at(frames, times, scene, after, (o.row, o.col)) == e.colour
        else:
            src, dst = (o.row, o.col), (e.to_row, e.to_col)
            assert _colour_at(frames, times, scene, before, src) == o.colour
            assert _colour_at(frames, times, scene, before, dst) == "background"
            assert _colour_at(frames, times, scene, after, src) == "background"
            assert _colour_at(frames, times, scene, after, dst) == o.colour


def test_video_dataset_reads_back_and_small_n_is_a_prefix(tmp_path):
    small = read_dataset(generate_video_dataset(2, tmp_path / "a", seed=4, progress=False))
    big = read_dataset(generate_video_dataset(3, tmp_path / "b", seed=4, progress=False))
    assert [s.id for s in small] == [s.id for s in big][:2] == ["shapes-vid-s4-000000", "shapes-vid-s4-000001"]
    for a, b in zip(small, big.samples[: len(small)], strict=True):
        assert a.model_dump() == b.model_dump()
        assert (small.root / a.media.path).read_bytes() == (big.root / b.media.path).read_bytes()
    sample = big.samples[2]
    assert sample.modality == "video" and sample.prompt == DEFAULT_VIDEO_PROMPT
    assert sample.media.path == f"media/videos/{sample.id}.mp4"
    assert sample.media.sampling.fps == 2.0 and sample.media.sampling.max_frames == 16
    assert sample.metadata["world"] == "shapes" and len(sample.metadata["queries"]) == len(sample.mcqs)
    frames, _, _ = _decode((big.root / sample.media.path).read_bytes())
    assert len(frames) == sample.metadata["scene"]["duration"] * sample.metadata["scene"]["fps"]


def test_cli_writes_a_video_dataset(tmp_path):
    out = tmp_path / "v"
    result = CliRunner().invoke(app, ["video", "--n", "1", "--out", str(out), "--seed", "2", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert str(out) in result.output
    ds = read_dataset(out)
    assert [s.id for s in ds] == ["shapes-vid-s2-000000"] and ds.manifest["modality"] == "video"
