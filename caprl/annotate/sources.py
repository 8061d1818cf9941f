"""What to caption: the items of a caprl dataset directory, or every image/video file under a plain directory.

Items are light (id, media reference, prompt, position); media is loaded only when its batch comes up, so a
source of millions of files costs a list of paths, not decoded pixels.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from PIL import Image
from pydantic import BaseModel, ConfigDict

from caprl.data.io import JSONL_NAME, PARQUET_NAME, located_records, sample_at
from caprl.data.media import VideoFrames, load_image, load_video
from caprl.errors import InputError, MissingInput
from caprl.schema import (
    DEFAULT_IMAGE_PROMPT,
    DEFAULT_VIDEO_PROMPT,
    FrameSampling,
    ImageMedia,
    Media,
    VideoMedia,
)

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"})
VIDEO_EXTENSIONS = frozenset({".mp4", ".mkv", ".webm", ".mov", ".avi", ".m4v"})


class WorkItem(BaseModel):
    """One thing to caption. ``index`` is its position in the source, so outputs can be put back in order."""

    model_config = ConfigDict(frozen=True)

    id: str
    index: int
    media: Media
    prompt: str

    @property
    def modality(self) -> str:
        return self.media.type

    @property
    def media_path(self) -> str | None:
        return self.media.path


class Source(BaseModel):
    """Items and the directory their relative media paths resolve against."""

    kind: str  # "dataset" | "directory"
    root: str
    items: list[WorkItem]


def is_dataset_dir(path: Path) -> bool:
    return path.is_dir() and ((path / PARQUET_NAME).exists() or (path / JSONL_NAME).exists())


def default_prompt(modality: str) -> str:
    return DEFAULT_VIDEO_PROMPT if modality == "video" else DEFAULT_IMAGE_PROMPT


def _media_files(root: Path) -> Iterator[Path]:
    for p in sorted(root.rglob("*")):
        hidden = any(part.startswith(".") for part in p.relative_to(root).parts)
        if p.is_file() and not hidden and p.suffix.lower() in IMAGE_EXTENSIONS | VIDEO_EXTENSIONS:
            yield p


def open_source(
    path: str | Path,
    *,
    prompt: str | None = None,
    video_sampling: FrameSampling | None = None,
    limit: int | None = None,
) -> Source:
    """Items of a caprl dataset (directory or samples file) or of a plain directory of images/videos.

    ``prompt`` replaces every item's prompt; without it a dataset item keeps its own and a file gets the default
    for its modality. In a plain directory the id of a file is its path relative to the directory (stable across
    runs, which resume needs); videos there are sampled with ``video_sampling`` (default 2 fps, at most 64 frames).
    """
    p = Path(path)
    if not p.exists():
        raise MissingInput(f"{path}: no such dataset or folder")
    items: list[WorkItem] = []
    if p.is_file() or is_dataset_dir(p):
        root = p if p.is_dir() else p.parent
        for i, (where, record) in enumerate(located_records(p)):
            if limit is not None and i >= limit:
                break
            s = sample_at(record, i, where, p)
            items.append(WorkItem(id=s.id, index=i, media=s.media, prompt=prompt or s.prompt))
        kind = "dataset"
    else:
        root = p
        sampling = video_sampling or FrameSampling()
        for i, f in enumerate(_media_files(p)):
            if limit is not None and i >= limit:
                break
            rel = f.relative_to(p).as_posix()
            media: ImageMedia | VideoMedia
            if f.suffix.lower() in VIDEO_EXTENSIONS:
                media = VideoMedia(path=rel, sampling=sampling)
            else:
                media = ImageMedia(path=rel)
            items.append(WorkItem(id=rel, index=i, media=media, prompt=prompt or default_prompt(media.type)))
        kind = "directory"
    ids = [it.id for it in items]
    if len(set(ids)) != len(ids):
        dupes = sorted({i for i in ids if ids.count(i) > 1})[:5]
        raise InputError(f"{path}: duplicate ids {dupes}: resuming needs every item to have its own id")
    if not items and limit != 0:
        kinds = ", ".join(sorted(IMAGE_EXTENSIONS | VIDEO_EXTENSIONS))
        what = "samples" if kind == "dataset" else f"images or videos ({kinds})"
        raise InputError(f"{path}: no {what} to work on")
    return Source(kind=kind, root=str(root.resolve()), items=items)


def load_item_media(item: WorkItem, root: str | Path | None) -> Image.Image | VideoFrames:
    """The item's pixels (raises ``MediaError`` naming the item and file when they cannot be read)."""
    if item.media.type == "image":
        return load_image(item.media, root, sample_id=item.id)
    return load_video(item.media, root, sample_id=item.id)
