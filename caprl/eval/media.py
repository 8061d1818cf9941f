"""Media for the caption stage: images, whole videos, clips of videos ([start, end] questions) and folders of
frames (benchmarks that ship frames instead of video files)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from PIL import Image

from caprl.data.media import (
    MediaError,
    VideoFrames,
    keep_nearest,
    load_image,
    open_image,
    sample_frames,
    target_times,
)
from caprl.schema import FrameSampling, ImageMedia, Media

FRAME_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
# MVBench's frame folders hold frames at 3 fps.
FRAME_FOLDER_FPS = 3.0


def _natural(path: Path) -> list[object]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name)]


def _pick(times: np.ndarray, targets: list[float]) -> list[int]:
    return sorted({int(np.argmin(np.abs(times - t))) for t in targets})


def frame_folder(path: Path, sampling: FrameSampling, clip: tuple[float, float] | None, fps: float) -> VideoFrames:
    files = sorted((p for p in path.iterdir() if p.suffix.lower() in FRAME_SUFFIXES), key=_natural)
    if not files:
        raise MediaError("frame folder holds no images", path=path)
    times = np.arange(len(files)) / fps
    start, end = clip if clip else (0.0, len(files) / fps)
    targets = [start + t for t in target_times(max(end - start, 0.0), sampling)]
    keep = _pick(times, targets)
    frames = np.stack([np.asarray(open_image(files[i])) for i in keep])
    return VideoFrames(
        frames=frames, timestamps=[float(times[i]) for i in keep], duration=len(files) / fps, native_fps=fps
    )


def video_clip(path: Path, sampling: FrameSampling, clip: tuple[float, float]) -> VideoFrames:
    """Frames of ``[start, end]`` only: ``sampling`` applies to the clip, timestamps stay those of the video."""
    import av

    start, end = clip
    targets = [start + t for t in target_times(max(end - start, 1e-3), sampling)]
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            if stream.time_base is not None and start > 0:
                container.seek(int(start / stream.time_base), stream=stream, backward=True)
            kept = keep_nearest(((float(frame.time or 0.0), frame) for frame in container.decode(stream)), targets)
            duration = float(stream.duration * stream.time_base) if stream.duration and stream.time_base else end
    except (av.error.FFmpegError, OSError, IndexError) as exc:
        raise MediaError(f"cannot decode video clip {start:g}-{end:g}s: {exc}", path=path) from None
    decoded = sorted(kept.items())
    if not decoded:
        raise MediaError(f"no frames between {start:g}s and {end:g}s", path=path)
    return VideoFrames(
        frames=np.stack([f for _, f in decoded]),
        timestamps=[t for t, _ in decoded],
        duration=duration,
        native_fps=None,
    )


def load_unit_media(media: Media, clip: tuple[float, float] | None = None) -> Image.Image | VideoFrames:
    """What the captioner is shown for one caption unit."""
    if isinstance(media, ImageMedia):
        return load_image(media)
    path = Path(media.path)
    if path.is_dir():
        return frame_folder(path, media.sampling, clip, FRAME_FOLDER_FPS)
    if clip is not None:
        if not path.is_file():
            raise MediaError("video file not found", path=path)
        return video_clip(path, media.sampling, clip)
    return sample_frames(path, media.sampling)
