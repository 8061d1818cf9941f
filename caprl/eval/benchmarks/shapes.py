"""The shapes world as a built-in benchmark: every MCQ of every item is a question; no download needed.

Data: a caprl dataset directory (``caprl synth image|video``). With none given, a small one is generated into the
eval output folder (24 images or 8 videos, seed 0), so ``caprl eval prism --benchmark shapes-image`` just runs.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from caprl.data.io import read_dataset
from caprl.eval.benchmarks.base import Benchmark, LoadContext
from caprl.eval.data import DataSpec
from caprl.eval.types import EvalItem
from caprl.schema import VideoMedia, resolve_media_path

N_IMAGES, N_VIDEOS = 24, 8


def load(ctx: LoadContext) -> Iterator[EvalItem]:
    ds = read_dataset(ctx.path)
    for sample in ds.samples:
        media = sample.media
        name = media.path  # as the dataset names it (relative to its folder)
        if media.path is not None:
            path = str(resolve_media_path(media.path, ds.root).resolve())
            if isinstance(media, VideoMedia):
                # The dataset's own frame sampling, unless the run asked for another one.
                sampling = media.sampling if ctx.frames is None else ctx.frames
                media = VideoMedia(path=path, sampling=sampling)
            else:
                media = media.model_copy(update={"path": path})
        for j, mcq in enumerate(sample.mcqs):
            yield EvalItem(
                id=f"{sample.id}#q{j}",
                media_id=sample.id,
                media=media,
                question=mcq.question,
                options=list(mcq.options),
                gold=mcq.gold,
                category=mcq.kind,
                media_name=name,
            )


def check_captions(path: Path, captions: dict[str, list[str]]) -> dict:
    """Precision, recall and hallucination figures of the captions (``caprl.synth.truth``), media without a
    caption left out."""
    from caprl.synth.truth import truth_summary

    scenes = {s.id: s.metadata["scene"] for s in read_dataset(path).samples}
    ids = [m for m, caps in captions.items() if caps and m in scenes]
    return truth_summary([scenes[m] for m in ids], [captions[m] for m in ids])


def _make_images(folder: Path) -> Path:
    from caprl.synth import generate_image_dataset

    if not (folder / "samples.parquet").exists():
        generate_image_dataset(N_IMAGES, folder, seed=0, progress=False)
    return folder


def _make_videos(folder: Path) -> Path:
    from caprl.synth import generate_video_dataset

    if not (folder / "samples.parquet").exists():
        generate_video_dataset(N_VIDEOS, folder, seed=0, progress=False)
    return folder


_SPEC = DataSpec(
    download=("nothing: `caprl synth image|video --n N --out DIR` writes it (or let caprl generate a small one)",),
    layout="a caprl dataset directory: samples.parquet + media/",
)

SHAPES_IMAGE = Benchmark(
    name="shapes-image",
    title="Shapes world (images)",
    modality="image",
    data=_SPEC,
    load=load,
    builtin=_make_images,
    caption_check=check_captions,
)
SHAPES_VIDEO = Benchmark(
    name="shapes-video",
    title="Shapes world (videos)",
    modality="video",
    data=_SPEC,
    load=load,
    builtin=_make_videos,
    frames=None,  # each sample's own frame sampling
    caption_check=check_captions,
)
