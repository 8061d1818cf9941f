"""Shapes-world `Sample`s and datasets on disk.

Item ``i`` of a dataset is made from ``item_seed(seed, i)`` alone, so ``n=10`` gives exactly the first ten items
of ``n=100`` (same ids, same bytes), and any item can be regenerated on its own.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from caprl.data.io import JSONL_NAME, MANIFEST_NAME, PARQUET_NAME, write_dataset
from caprl.errors import RunStateError
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


def make_image_sample(
    index: int = 0, *, seed: int = 0, size: int = 224, absence: bool = False
) -> tuple[Sample, bytes]:
    """Item ``index`` of the image dataset with ``seed``: the Sample and its PNG bytes (not written anywhere).
    ``absence`` adds questions about absent objects (``caprl.synth.questions.make_mcqs``)."""
    scene = make_image_scene(item_seed(seed, index, "image"), size=size)
    mcqs, queries = make_mcqs(scene, absence=absence)
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


# The media files this module writes (see image_sample_id / video_sample_id and make_*_sample).
_OWN_MEDIA = re.compile(r"^shapes-(img|vid)-s-?\d+-\d+\.(png|mp4)$")


def clear_previous(out: Path) -> int:
    """Make ``out`` ready for a new shapes dataset; returns how many samples a previous one there had.

    A shapes dataset already there (or what a killed run left of one) is replaced cleanly: its samples file,
    manifest and media are removed first, so a smaller new dataset leaves no orphaned media behind. A folder
    holding anything else is refused: nothing a user put there is ever deleted."""
    files = [p for p in out.rglob("*") if p.is_file()] if out.is_dir() else ([out] if out.exists() else [])
    if not files:
        return 0
    media = [out / "media" / "images", out / "media" / "videos"]
    own = {p for p in files if p.parent in media and _OWN_MEDIA.match(p.name)}
    manifest = out / MANIFEST_NAME
    try:
        info = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        info = None
    made_here = isinstance(info, dict) and info.get("source") == "caprl.synth"
    if made_here:
        own |= {out / name for name in (PARQUET_NAME, JSONL_NAME, MANIFEST_NAME)}
    strangers = [p for p in files if p not in own]
    if strangers:
        raise RunStateError(
            f"--out {out}: holds files caprl synth did not make (e.g. {strangers[0]})",
            hint="choose a new or empty folder (nothing in it is deleted)",
        )
    n = int(info.get("n_samples", 0)) if made_here else 0  # type: ignore[union-attr]
    for p in own:
        p.unlink(missing_ok=True)
    return n


def generate_image_dataset(
    n: int, out_dir: str | Path, *, seed: int = 0, size: int = 224, progress: bool = True, absence: bool = False
) -> Path:
    """Write ``n`` shapes images (``media/images/*.png``) and ``samples.parquet`` to ``out_dir``; returns the dir.
    ``absence``: also ask about absent objects, as often as about present ones (``make_mcqs``)."""
    _check_n(n)
    out = Path(out_dir)
    clear_previous(out)
    samples = []
    for i in _track(range(n), n, "shapes images", progress):
        sample, png = make_image_sample(i, seed=seed, size=size, absence=absence)
        _write(out / str(sample.media.path), png)
        samples.append(sample)
    manifest = {"source": "caprl.synth", "world": "shapes", "modality": "image", "seed": seed, "size": size}
    if absence:
        manifest["absence_questions"] = True
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
    clear_previous(out)
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
