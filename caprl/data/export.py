"""Export caprl datasets to verl's RL parquet layout (``RLHFDataset``), losslessly.

One row per sample::

    data_source   "image_caption_rl" | "video_caption_rl" (by modality, unless overridden)
    prompt        [{"role": "user", "content": "<image>" + prompt}]   ("<video>" for videos)
    images        [{"bytes": ..., "path": ...}]                          (image rows)
    videos        [{"video": "/abs/path.mp4", "fps": 2.0, "max_frames": 64}]   (video rows)
    ability       "dense_caption"
    reward_model  {"style": "rule", "ground_truth": [{"question", "choices": ["A) ...", ...], "answer": "C"}]}
    extra_info    {"id", "index", "caprl_version", "media", "prompt", "references", "metadata", "mcq_kinds",
                   "video_path"}

verl splits the message content on ``<image>``/``<video>`` and feeds ``images``/``videos`` entries to
``process_image`` (which needs ``bytes``) and ``process_video`` (a dict with ``video`` and optional ``fps``/
``nframes``/``max_frames``; a key that is present but null breaks it, so the video struct only has sampling keys
that every row fills: ``fps``+``max_frames`` when all videos sample by rate, ``nframes`` when all take a fixed
count, and none when a file mixes both -- verl's own defaults apply then).

Choices:

- Images given by path are embedded (their file's bytes) by default, because verl's image loader reads bytes;
  ``embed_images=False`` writes the resolved path with null bytes, for loaders that open paths.
- A file that mixes images and videos gets both columns, null where a row lacks that medium; some verl versions
  test only for the column's presence, so prefer one modality per file for them.
- Video paths are written absolute (resolved against the dataset directory or ``media_root``), because verl
  resolves paths against its own working directory.
- ``extra_info`` keeps, as JSON strings, everything the verl columns do not carry: the original media fields
  (relative path, whether the bytes were embedded, frame sampling), references, metadata and MCQ kinds, plus the
  prompt when stripping the placeholder would not give it back. Importing the file with the ``verl``/``caprl-qa``
  importer restores exactly the exported samples.
- ``extra_info.video_path`` repeats a video row's absolute path (null for images): CapRL++'s VLM-judge reward
  function reads the video from there (``caprl.verl.reward`` with ``score_mode: vl_judge`` does too).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from caprl.data.convert import prompt_from_messages
from caprl.data.io import Dataset, atomic_write, read_dataset
from caprl.schema import (
    DEFAULT_IMAGE_PROMPT,
    DEFAULT_VIDEO_PROMPT,
    MCQ,
    FrameSampling,
    ImageMedia,
    Sample,
    SchemaError,
    VideoMedia,
    resolve_media_path,
)

DATA_SOURCES = {"image": "image_caption_rl", "video": "video_caption_rl"}
PLACEHOLDERS = {"image": "<image>", "video": "<video>"}
DEFAULT_ABILITY = "dense_caption"
REWARD_STYLE = "rule"
CAPRL_VERSION = 1

PROMPT_TYPE = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
IMAGES_TYPE = pa.list_(pa.struct([("bytes", pa.binary()), ("path", pa.string())]))
GROUND_TRUTH_TYPE = pa.list_(
    pa.struct([("question", pa.string()), ("choices", pa.list_(pa.string())), ("answer", pa.string())])
)
REWARD_MODEL_TYPE = pa.struct([("style", pa.string()), ("ground_truth", GROUND_TRUTH_TYPE)])
EXTRA_INFO_TYPE = pa.struct(
    [
        ("id", pa.string()),
        ("index", pa.int64()),
        ("caprl_version", pa.int64()),
        ("media", pa.string()),
        ("prompt", pa.string()),
        ("references", pa.string()),
        ("metadata", pa.string()),
        ("mcq_kinds", pa.string()),
        ("video_path", pa.string()),
    ]
)
_VIDEO_FIELDS = {"video": pa.string(), "fps": pa.float64(), "max_frames": pa.int64(), "nframes": pa.int64()}


def videos_type(keys: tuple[str, ...]) -> pa.DataType:
    return pa.list_(pa.struct([(k, _VIDEO_FIELDS[k]) for k in keys]))


def verl_schema(*, images: bool, videos: bool, video_keys: tuple[str, ...] = ("video",)) -> pa.Schema:
    """The exported file's schema; only the media columns of modalities present in the data are included."""
    fields = [("data_source", pa.string()), ("prompt", PROMPT_TYPE)]
    if images:
        fields.append(("images", IMAGES_TYPE))
    if videos:
        fields.append(("videos", videos_type(video_keys)))
    fields += [("ability", pa.string()), ("reward_model", REWARD_MODEL_TYPE), ("extra_info", EXTRA_INFO_TYPE)]
    return pa.schema(fields)


def video_struct_keys(samples: Iterable[Sample]) -> tuple[str, ...]:
    """Sampling keys every video row can fill (see the module docstring)."""
    modes = {
        "nframes" if s.media.sampling.num_frames is not None else "fps" for s in samples if s.media.type == "video"
    }
    if modes == {"fps"}:
        return ("video", "fps", "max_frames")
    if modes == {"nframes"}:
        return ("video", "nframes")
    return ("video",)


@dataclass(frozen=True)
class VerlExportOptions:
    media_root: Path | None = None
    data_source: str | None = None
    ability: str = DEFAULT_ABILITY
    embed_images: bool = True
    check_media: bool = True


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _default_prompt(modality: str) -> str:
    return DEFAULT_VIDEO_PROMPT if modality == "video" else DEFAULT_IMAGE_PROMPT


def _prompt_from_row(messages: Any, modality: str) -> str:
    """The prompt the importer reads back from verl's message list (placeholders stripped)."""
    return prompt_from_messages(messages, _default_prompt(modality))[0]


def _media_file(path: str, opts: VerlExportOptions, sample: Sample, index: int, *, must_exist: bool) -> Path:
    p = resolve_media_path(path, opts.media_root).expanduser().absolute()
    if must_exist and not p.is_file():
        raise SchemaError(f"{sample.media.type} file not found: {p}", row=index, id=sample.id, field="media.path")
    return p


def _image_entry(media: ImageMedia, opts: VerlExportOptions, sample: Sample, index: int) -> dict[str, Any]:
    if media.data is not None:
        return {"bytes": media.data, "path": media.path}
    assert media.path is not None  # ImageMedia guarantees a path or bytes
    if not opts.embed_images:
        return {"bytes": None, "path": str(_media_file(media.path, opts, sample, index, must_exist=opts.check_media))}
    p = _media_file(media.path, opts, sample, index, must_exist=True)
    return {"bytes": p.read_bytes(), "path": media.path}


def _video_entry(
    media: VideoMedia, keys: tuple[str, ...], opts: VerlExportOptions, sample: Sample, index: int
) -> dict[str, Any]:
    s = media.sampling
    values: dict[str, Any] = {
        "video": str(_media_file(media.path, opts, sample, index, must_exist=opts.check_media)),
        "fps": s.effective_fps,
        "max_frames": s.max_frames,
        "nframes": min(s.num_frames, s.max_frames) if s.num_frames is not None else None,
    }
    return {k: values[k] for k in keys}


def _media_payload(media: ImageMedia | VideoMedia) -> dict[str, Any]:
    if media.type == "image":
        return {"type": "image", "path": media.path, "embedded": media.data is not None}
    return {"type": "video", "path": media.path, "sampling": media.sampling.model_dump()}


def _ground_truth(mcqs: list[MCQ]) -> list[dict[str, Any]]:
    return [{"question": q.question, "choices": q.labelled_options(), "answer": q.gold_letter} for q in mcqs]


def sample_to_verl_row(
    sample: Sample, index: int, opts: VerlExportOptions, video_keys: tuple[str, ...] = ("video",)
) -> dict[str, Any]:
    """One Sample as a verl row (columns as in the module docstring)."""
    modality = sample.media.type
    content = PLACEHOLDERS[modality] + sample.prompt
    row: dict[str, Any] = {
        "data_source": opts.data_source or DATA_SOURCES[modality],
        "prompt": [{"role": "user", "content": content}],
        "images": None,
        "videos": None,
        "ability": opts.ability,
        "reward_model": {"style": REWARD_STYLE, "ground_truth": _ground_truth(sample.mcqs)},
    }
    if isinstance(sample.media, ImageMedia):
        row["images"] = [_image_entry(sample.media, opts, sample, index)]
    else:
        row["videos"] = [_video_entry(sample.media, video_keys, opts, sample, index)]
    # Keep the prompt verbatim only when the importer could not recover it from the message content.
    exact_prompt = None if _prompt_from_row(row["prompt"], modality) == sample.prompt else sample.prompt
    row["extra_info"] = {
        "id": sample.id,
        "index": index,
        "caprl_version": CAPRL_VERSION,
        "media": _json(_media_payload(sample.media)),
        "prompt": exact_prompt,
        "references": _json(sample.references),
        "metadata": _json(sample.metadata),
        "mcq_kinds": _json([q.kind for q in sample.mcqs]),
        "video_path": row["videos"][0]["video"] if row["videos"] else None,
    }
    return row


def samples_to_verl_table(samples: list[Sample], opts: VerlExportOptions | None = None) -> pa.Table:
    """All samples as one verl table (schema from ``verl_schema``)."""
    opts = opts or VerlExportOptions()
    has_images = any(s.media.type == "image" for s in samples)
    has_videos = any(s.media.type == "video" for s in samples)
    keys = video_struct_keys(samples)
    schema = verl_schema(images=has_images, videos=has_videos, video_keys=keys)
    rows = [sample_to_verl_row(s, i, opts, keys) for i, s in enumerate(samples)]
    return pa.Table.from_pylist([{k: r[k] for k in schema.names} for r in rows], schema=schema)


@dataclass
class ExportResult:
    path: Path
    n_rows: int
    n_images: int
    n_videos: int
    columns: list[str]


def export_verl(
    source: str | Path | Dataset | Iterable[Sample],
    out_file: str | Path,
    *,
    media_root: str | Path | None = None,
    data_source: str | None = None,
    ability: str = DEFAULT_ABILITY,
    embed_images: bool = True,
    check_media: bool = True,
) -> ExportResult:
    """Write a caprl dataset (directory, Dataset or samples) as one verl parquet file, atomically.

    Relative media paths resolve against ``media_root``, else the dataset directory.
    """
    if isinstance(source, str | Path):
        source = read_dataset(source)
    if isinstance(source, Dataset):
        samples, root = source.samples, source.root
    else:
        samples, root = list(source), None
    if not samples:
        raise ValueError("nothing to export: the dataset has no samples")
    root = Path(media_root) if media_root is not None else root
    opts = VerlExportOptions(
        media_root=root, data_source=data_source, ability=ability, embed_images=embed_images, check_media=check_media
    )
    table = samples_to_verl_table(samples, opts)
    out = Path(out_file)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, lambda p: pq.write_table(table, p, compression="zstd"))
    n_images = sum(s.media.type == "image" for s in samples)
    return ExportResult(out, len(samples), n_images, len(samples) - n_images, table.schema.names)


# --------------------------------------------------------------------------------------------------------------
# The way back: rows this module wrote -> the exact samples
# --------------------------------------------------------------------------------------------------------------


def is_caprl_extra_info(extra: Mapping[str, Any]) -> bool:
    """Whether a verl row's ``extra_info`` was written by ``sample_to_verl_row``."""
    return extra.get("caprl_version") is not None and extra.get("media") is not None


def _row_image_bytes(row: Mapping[str, Any]) -> bytes:
    images = row.get("images") or ([row["image"]] if row.get("image") is not None else [])
    if len(images) != 1 or not isinstance(images[0], Mapping) or not images[0].get("bytes"):
        raise ValueError("the media was embedded but the row has no single image with bytes")
    return bytes(images[0]["bytes"])


def _restore_media(info: Mapping[str, Any], row: Mapping[str, Any]) -> ImageMedia | VideoMedia:
    if info.get("type") == "video":
        return VideoMedia(path=info["path"], sampling=FrameSampling(**(info.get("sampling") or {})))
    if info.get("type") == "image":
        data = _row_image_bytes(row) if info.get("embedded") else None
        return ImageMedia(path=info.get("path"), data=data)
    raise ValueError(f"unknown media type {info.get('type')!r}")


def _load(extra: Mapping[str, Any], key: str, default: Any) -> Any:
    value = extra.get(key)
    return default if value is None else json.loads(value)


def restore_sample(row: Mapping[str, Any], extra: Mapping[str, Any], mcqs: list[MCQ]) -> Sample:
    """Rebuild the exported Sample: verl columns give the content, ``extra_info`` the rest.

    MCQs come from the ground truth (the verl-side truth, which a user may have edited); kinds are re-attached
    when the count still matches.
    """
    media = _restore_media(json.loads(extra["media"]), row)
    prompt = extra.get("prompt")
    if prompt is None:
        prompt = _prompt_from_row(row.get("prompt"), media.type)
    kinds = _load(extra, "mcq_kinds", [])
    if len(kinds) == len(mcqs):
        mcqs = [
            MCQ(question=q.question, options=q.options, gold=q.gold, kind=k) for q, k in zip(mcqs, kinds, strict=True)
        ]
    return Sample(
        id=str(extra["id"]),
        media=media,
        prompt=prompt,
        mcqs=mcqs,
        references=_load(extra, "references", {}),
        metadata=_load(extra, "metadata", {}),
    )
