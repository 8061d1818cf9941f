"""verl-style rows -> Samples: CapRL-QA-75K (``caprl-qa``), CapRL-Video-QA-20K (``caprl-video-qa``), and any verl
RL parquet (``verl``), including caprl's own exports.

Columns read: ``image`` {bytes, path} (or verl's ``images`` list), or ``videos`` (one path relative to the media
root, or a verl {video, fps|nframes, max_frames} dict); ``prompt`` as chat messages with an ``<image>``/``<video>``
placeholder; ``reward_model.ground_truth`` a list of {question, choices, answer} (choices ``"A) x"``, ``"A. x"`` or
bare; a trailing "Can not answer based on the caption" choice is dropped, see ``caprl.data.mcq_text``). Rows
written by ``caprl data export --to verl`` carry our own fields in ``extra_info`` and come back exactly as they
were exported. Embedded image bytes stay embedded (the driver can extract them).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from caprl.data.convert import (
    ImportContext,
    RowError,
    derive_id,
    ground_truth_mcqs,
    image_from_row,
    jsonable,
    mapping_field,
    prompt_from_messages,
    sha1,
    video_from_row,
)
from caprl.data.export import is_caprl_extra_info, restore_sample
from caprl.schema import DEFAULT_IMAGE_PROMPT, DEFAULT_VIDEO_PROMPT, ImageMedia, Sample, VideoMedia


def _row_id(row: Mapping[str, Any], extra: Mapping[str, Any]) -> str | None:
    for value in (row.get("id"), extra.get("id")):
        if value is not None and str(value).strip():
            return str(value)
    return None


def _requiremapping_field(row: Any) -> Mapping[str, Any]:
    if not isinstance(row, Mapping):
        raise RowError(f"expected a row object, got {type(row).__name__}")
    return row


def convert_verl_row(row: Any, index: int, ctx: ImportContext) -> Sample:
    """One verl-style row (CapRL-QA-75K, CapRL-Video-QA-20K, or our own verl export) -> Sample."""
    row = _requiremapping_field(row)
    extra = mapping_field(row.get("extra_info"), "extra_info")
    ours = is_caprl_extra_info(extra)
    reward_model = mapping_field(row.get("reward_model"), "reward_model")
    gt_field = "reward_model.ground_truth" if "ground_truth" in reward_model else "ground_truth"
    # Our own samples may legitimately have no MCQs yet; a public row without any is broken.
    gt = reward_model.get("ground_truth", row.get("ground_truth"))
    mcqs = ground_truth_mcqs(gt, gt_field, allow_empty=ours)
    if ours:
        try:
            return restore_sample(row, extra, mcqs)
        except ValueError as exc:
            raise RowError(f"bad caprl export fields: {exc}", "extra_info") from None

    has_video = row.get("videos") is not None or row.get("video") is not None
    modality = ctx.modality or ("video" if has_video else "image")
    media: ImageMedia | VideoMedia
    if modality == "video":
        if not has_video:
            raise RowError("no video: expected a 'videos' column", "videos")
        media, media_meta = video_from_row(row, ctx)
        media_key = media_meta["video_path"]
    else:
        if row.get("image") is None and row.get("images") is None:
            raise RowError("no image: expected an 'image' or 'images' column", "image")
        media, media_meta = image_from_row(row, ctx)
        media_key = media.path or sha1(media.data or b"")
    default = DEFAULT_VIDEO_PROMPT if modality == "video" else DEFAULT_IMAGE_PROMPT
    prompt, system = prompt_from_messages(row.get("prompt"), default)

    rid = _row_id(row, extra)
    sid = rid or derive_id(ctx.format, media_key, [q.question for q in mcqs])
    source: dict[str, Any] = {"format": ctx.format, "row": index, **media_meta}
    if rid is not None:
        source["id"] = rid
    for key in ("data_source", "ability"):
        if row.get(key) is not None:
            source[key] = jsonable(row[key])
    if system:
        source["system_prompt"] = system
    if extra:
        source["extra_info"] = jsonable(extra)
    return Sample(id=sid, media=media, prompt=prompt, mcqs=mcqs, metadata={"source": source})
