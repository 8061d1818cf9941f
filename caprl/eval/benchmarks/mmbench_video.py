"""MMBench-Video: open questions about long videos, each answer scored 0-3 by an LLM judge against the reference
with the benchmark's own judge prompt; reported as the mean score (0-3, not a percentage) overall and by dimension,
a question counting in every dimension it lists (as VLMEvalKit's ratings count it).

Layout: the ``opencompass/MMBench-Video`` download. Its rows are ``MMBench-Video.tsv`` (``index, video,
video_path, question, answer, dimensions``; the ``_q``/``_a`` JSONs beside it hold the same questions and are not
read). Its videos ship as ``video_pkl/*.pkl`` (pickled ``{video name: mp4 bytes}`` chunks), which VLMEvalKit
unpacks into ``video/<name>.mp4``; a download with ``video/`` is read as it is, and one with only ``video_pkl/`` is
unpacked once into the output folder (``OUT/media/mmbench-video/video/``), never executing anything from the pickles.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from caprl.data.io import atomic_write
from caprl.eval.benchmarks.base import Benchmark, BenchmarkError, LoadContext, Metric, literal_list, video_file
from caprl.eval.data import DataSpec, Layout, pick
from caprl.eval.metrics.judge import MMBENCH_VIDEO
from caprl.eval.types import EvalItem

OPEN = (
    "You are given a description of a video, not the video itself. Using only the description, answer the "
    "question about the video in one or two sentences."
)

# VLMEvalKit's dimension taxonomy (vlmeval/dataset/utils/mmbench_video.py): L3 dimensions under L2 groups, and the
# L1 groups Perception and Reasoning. A question counts in each dimension it lists and in each group above them.
L2_GROUPS: dict[str, tuple[str, ...]] = {
    "CP": ("Video Topic", "Video Emotion", "Video Scene", "Video Style"),
    "FP-S": ("OCR", "Object Recognition", "Attribute Recognition", "Event Recognition", "Human Motion", "Counting"),
    "FP-C": ("Spatial Relationship", "Human-object Interaction", "Human Interaction"),
    "HL": ("Hallucination",),
    "LR": ("Structuralized Image-Text Understanding", "Mathematical Calculation"),
    "AR": ("Physical Property", "Function Reasoning", "Identity Reasoning"),
    "RR": ("Natural Relation", "Physical Relation", "Social Relation"),
    "CSR": ("Common Sense Reasoning",),
    "TR": ("Counterfactual Reasoning", "Causal Reasoning", "Future Prediction"),
}
L1_GROUPS: dict[str, tuple[str, ...]] = {
    "Perception": ("CP", "FP-C", "FP-S", "HL"),
    "Reasoning": ("LR", "AR", "RR", "CSR", "TR"),
}


def dimensions(dims: list[str], where: str) -> list[str]:
    """The question's categories: its L3 dimensions, then the L2 and L1 groups holding any of them."""
    known = {d for group in L2_GROUPS.values() for d in group}
    unknown = [d for d in dims if d not in known]
    if unknown or not dims:
        raise BenchmarkError(f"mmbench-video: {where}: unknown or missing dimensions {unknown or dims!r}")
    l2 = [g for g, members in L2_GROUPS.items() if any(d in members for d in dims)]
    l1 = [g for g, members in L1_GROUPS.items() if any(c in members for c in l2)]
    return [*dims, *l2, *l1]


class _BytesOnly(pickle.Unpickler):
    """Unpickles plain containers of str/bytes only: a pickle naming any class or function is refused (loading
    a downloaded pickle must never run code). Protocol-2 pickles spell bytes as ``_codecs.encode``, which is let
    through with the bytes constructors."""

    def find_class(self, module: str, name: str) -> Any:
        import codecs

        allowed = {
            ("_codecs", "encode"): codecs.encode,
            ("builtins", "bytes"): bytes,
            ("builtins", "bytearray"): bytearray,
        }
        if (module, name) in allowed:
            return allowed[(module, name)]
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a video pickle")


def unpack_video_pickles(source: Path, target: Path) -> Path:
    """Write every video of ``source/*.pkl`` to ``target/<name>.mp4`` once (a marker records what is done)."""
    pickles = sorted(source.glob("*.pkl"))
    marker = target / ".unpacked.json"
    done = {p.name: p.stat().st_size for p in pickles}
    if marker.exists() and json.loads(marker.read_text()) == done:
        return target
    target.mkdir(parents=True, exist_ok=True)
    for pkl in pickles:
        with open(pkl, "rb") as f:
            try:
                videos = _BytesOnly(f).load()
            except (pickle.UnpicklingError, EOFError, ValueError) as exc:
                raise BenchmarkError(f"mmbench-video: {pkl} is not a video pickle: {exc}") from None
        if not isinstance(videos, dict):
            raise BenchmarkError(f"mmbench-video: {pkl} holds a {type(videos).__name__}, not {{name: video bytes}}")
        for name, data in videos.items():
            out = target / f"{name}.mp4"
            if not out.exists():
                atomic_write(out, lambda p, data=data: p.write_bytes(bytes(data)))
    atomic_write(marker, lambda p: p.write_text(json.dumps(done)))
    return target


def _video_root(ctx: LoadContext, tsv: Path) -> None:
    """Use ``video/`` beside the TSV; with only ``video_pkl/`` there, unpack it into the output folder."""
    if ctx.media_root is not None or (tsv.parent / "video").is_dir() or not (tsv.parent / "video_pkl").is_dir():
        return
    ctx.media_root = unpack_video_pickles(tsv.parent / "video_pkl", ctx.store.root / "video")


def load(ctx: LoadContext) -> Iterator[EvalItem]:
    for row in ctx.rows():
        _video_root(ctx, Path(row["_path"]))
        name = str(pick(row, "video"))
        where = f"{row['_file']} index {row.get('index')!r}"
        media_id, media = ctx.video(video_file(name), row=row)
        yield EvalItem(
            id=ctx.next_id(row, "index"),
            media_id=media_id,
            media=media,
            question=str(pick(row, "question")),
            answers=[str(pick(row, "answer"))],
            category=dimensions([str(d) for d in literal_list(pick(row, "dimensions"))], where),
        )


MMBENCH_VIDEO = Benchmark(
    name="mmbench-video",
    title="MMBench-Video",
    modality="video",
    data=DataSpec(
        download=("HF dataset opencompass/MMBench-Video: MMBench-Video.tsv and video_pkl/ (or video/ unpacked)",),
        layout="the download folder (or the .tsv file)",
        media_dir="video",
        layouts=(Layout("opencompass/MMBench-Video TSV", ("**/MMBench-Video.tsv", "**/MMBench_VIDEO.tsv")),),
    ),
    load=load,
    metric=Metric("judge_score", scale=3.0, judge=MMBENCH_VIDEO),
    open_instruction=OPEN,
)
