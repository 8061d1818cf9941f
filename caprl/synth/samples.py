"""Shapes-world `Sample`s and datasets on disk.

Item ``i`` of a dataset is made from ``item_seed(seed, i)`` alone, so ``n=10`` gives exactly the first ten items
of ``n=100`` (same ids, same bytes), and any item can be regenerated on its own.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from caprl.data.io import write_dataset
from caprl.schema import DEFAULT_IMAGE_PROMPT, DEFAULT_VIDEO_PROMPT, FrameSampling, ImageMedia, Sample, VideoMedia
from caprl.synth.captions import make_captions
from caprl.synth.questions import make_mcqs
from caprl.synth.render import render_png
from caprl.synth.scene import Scene
from caprl.synth.seeds import item_seed
from caprl.synth.video import default_codec, render_mp4
from caprl.synth.world import make_image_scene, make_video_scene

T = TypeVar("T")


def image_sample_id(seed: int, index: int) -> str:
    return f"shapes-img-s{seed}-{index:06d}"


def video_sample_id(seed: int, index: int) -> str:
    return f"shapes-vid-s{seed}-{index:06d}"


def _metadata(scene: Scene, queries: list[dict[str, Any]], seed: int, index: int) -> dict[str, Any]:
    return {
        "world": "shapes",
        "seed": scene.seed,  # make_image_scene / make_video_scene(seed) rebuilds this exact scene
        "dataset_seed": seed,
        "index": index,
        "scene": scene.to_dict(),
        "queries": queries,
    }


def make_image_sample(index: int = 0, *, seed: int = 0, size: int = 224) -> tuple[Sample, bytes]:
    """Item ``index`` of the image dataset with ``seed``: the Sample and its PNG bytes (not written anywhere)."""
    scene = make_image_scene(item_seed(seed, index, "image"), size=size)
    mcqs, queries = make_mcqs(scene)
    sid = image_sample_id(seed, index)
    sample = Sample(
        id=sid,
        media=ImageMedia(path=f"media/images/{sid}.png"),
        prompt=DEFAULT_IMAGE_PROMPT,
        mcqs=mcqs,
        references=make_captions(scene),
        metadata=_metadata(scene, queries, seed, index),
    )
    return sample, render_png(scene)


def make_video_sample(
    index: int = 0,
    *,
    seed: int = 0,
    size: int = 168,
    fps: int = 8,
    sampling: FrameSampling | None = None,
    codec: str | None = None,
) -> tuple[Sample, bytes]:
    """Item ``index`` of the video dataset with ``seed``: the Sample and its mp4 bytes (not written anywhere)."""
    scene = make_video_scene(item_seed(seed, index, "video"), size=size, fps=fps)
    mcqs, queries = make_mcqs(scene)
    sid = video_sample_id(seed, index)
    sample = Sample(
        id=sid,
        media=VideoMedia(path=f"media/videos/{sid}.mp4", sampling=sampling or FrameSampling(fps=2.0, max_frames=16)),
        prompt=DEFAULT_VIDEO_PROMPT,
        mcqs=mcqs,
        references=make_captions(scene),
        metadata=_metadata(scene, queries, seed, index),
    )
    return sample, render_mp4(scene, codec=codec)


def _track(items: Iterable[T], total: int, description: str, enabled: bool) -> Iterator[T]:
    if not enabled:
        yield from items
        return
    from rich.progress import Progress  # imported lazily: only the interactive path needs it

    with Progress(transient=False) as bar:
        task = bar.add_task(description, total=total)
        for item in items:
            yield item
            bar.advance(task)


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _check_n(n: int) -> None:
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")


def generate_image_dataset(
    n: int, out_dir: str | Path, *, seed: int = 0, size: int = 224, progress: bool = True
) -> Path:
    """Write ``n`` shapes images (``media/images/*.png``) and ``samples.parquet`` to ``out_dir``; returns the dir."""
    _check_n(n)
    out = Path(out_dir)
    samples = []
    for i in _track(range(n), n, "shapes images", progress):
        sample, png = make_image_sample(i, seed=seed, size=size)
        _write(out / str(sample.media.path), png)
        samples.append(sample)
    manifest = {"source": "caprl.synth", "world": "shapes", "modality": "image", "seed": seed, "size": size}
    write_dataset(samples, out, manifest=manifest)
    return out


def generate_video_dataset(
    n: int,
    out_dir: str | Path,
    *,
    seed: int = 0,
    size: int = 168,
    fps: int = 8,
    sample_fps: float = 2.0,
    max_frames: int = 16,
    codec: str | None = None,
    progress: bool = True,
) -> Path:
    """Write ``n`` shapes videos (``media/videos/*.mp4``) and ``samples.parquet`` to ``out_dir``; returns the dir.

    ``fps`` is the encoded frame rate; ``sample_fps``/``max_frames`` go into each sample's frame sampling, i.e.
    what a captioner is shown.
    """
    _check_n(n)
    out = Path(out_dir)
    codec = codec or default_codec()
    sampling = FrameSampling(fps=sample_fps, max_frames=max_frames)
    samples = []
    for i in _track(range(n), n, "shapes videos", progress):
        sample, mp4 = make_video_sample(i, seed=seed, size=size, fps=fps, sampling=sampling, codec=codec)
        _write(out / str(sample.media.path), mp4)
        samples.append(sample)
    manifest = {
        "source": "caprl.synth",
        "world": "shapes",
        "modality": "video",
        "seed": seed,
        "size": size,
        "fps": fps,
        "codec": codec,
    }
    write_dataset(samples, out, manifest=manifest)
    return out
