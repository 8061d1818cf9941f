"""Load media for captioners: images (PIL, EXIF-rotated, RGB) and sampled video frames (PyAV) with timestamps.

Every failure is a ``MediaError`` that names the sample and the file, so a batch job can record it per sample
and go on.

>>> frames = sample_frames("clip.mp4", FrameSampling(fps=2, max_frames=16))   # doctest: +SKIP
>>> frames.timestamps[:3]                                                    # doctest: +SKIP
[0.0, 0.5, 1.0]
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from caprl.schema import FrameSampling, ImageMedia, Sample, VideoMedia, resolve_media_path


class MediaError(RuntimeError):
    """Media that cannot be read. ``str(err)`` names the sample, the file and the reason."""

    def __init__(self, reason: str, *, path: str | Path | None = None, sample_id: str | None = None):
        self.reason, self.path, self.sample_id = reason, None if path is None else str(path), sample_id
        where = []
        if sample_id is not None:
            where.append(f"sample {sample_id!r}")
        if path is not None:
            where.append(str(path))
        super().__init__(f"{' '.join(where)}: {reason}" if where else reason)


@dataclass
class VideoFrames:
    """Frames sampled from a video: ``frames`` is (T, H, W, 3) uint8 RGB; ``timestamps`` in seconds."""

    frames: np.ndarray
    timestamps: list[float]
    duration: float
    native_fps: float | None

    def __len__(self) -> int:
        return len(self.timestamps)

    def to_pil(self) -> list[Image.Image]:
        return [Image.fromarray(f) for f in self.frames]


def _to_rgb(img: Image.Image) -> Image.Image:
    # Transparent regions go onto white: a plain convert("RGB") turns them black, which changes what a
    # captioner sees in logos and charts with transparent backgrounds.
    if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def open_image(source: str | Path | bytes, *, sample_id: str | None = None) -> Image.Image:
    """Open an image file or encoded bytes as an upright RGB PIL image (EXIF orientation applied)."""
    label = "<embedded bytes>" if isinstance(source, bytes) else source
    try:
        if isinstance(source, bytes):
            img = Image.open(io.BytesIO(source))
        else:
            if not Path(source).is_file():
                raise MediaError("image file not found", path=source, sample_id=sample_id)
            img = Image.open(source)
        img.load()  # decode now, so truncated files fail here and not later inside a processor
        img = ImageOps.exif_transpose(img)
        return _to_rgb(img)
    except MediaError:
        raise
    except UnidentifiedImageError:
        raise MediaError("not a readable image (unknown or corrupt format)", path=label, sample_id=sample_id) from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise MediaError(f"cannot decode image: {exc}", path=label, sample_id=sample_id) from None


def load_image(media: ImageMedia, root: str | Path | None = None, *, sample_id: str | None = None) -> Image.Image:
    """Image of an ``ImageMedia``: its embedded bytes when present, else its path resolved against ``root``."""
    if media.data is not None:
        return open_image(media.data, sample_id=sample_id)
    assert media.path is not None  # guaranteed by ImageMedia's validator
    return open_image(resolve_media_path(media.path, root), sample_id=sample_id)


def target_times(duration: float, sampling: FrameSampling) -> list[float]:
    """The timestamps (seconds) at which frames are wanted.

    ``num_frames``: centres of ``n`` equal segments. ``fps``: 0, 1/fps, 2/fps, ... below ``duration``.
    Either way at most ``max_frames``, thinned evenly.
    """
    if duration <= 0:
        return [0.0]
    if sampling.num_frames is not None:
        n = min(sampling.num_frames, sampling.max_frames)
        return [(i + 0.5) * duration / n for i in range(n)]
    fps = sampling.effective_fps
    assert fps is not None
    count = max(1, int(np.ceil(duration * fps - 1e-9)))
    times = [i / fps for i in range(count)]
    if len(times) > sampling.max_frames:
        keep = np.linspace(0, len(times) - 1, sampling.max_frames).round().astype(int)
        times = [times[i] for i in keep]
    return times


def _nearest_frames(decoded: list[tuple[float, np.ndarray]], targets: list[float]) -> tuple[list[float], np.ndarray]:
    times = np.array([t for t, _ in decoded])
    picked = [int(np.argmin(np.abs(times - t))) for t in targets]
    return [float(times[i]) for i in picked], np.stack([decoded[i][1] for i in picked])


def keep_nearest(decoded: Iterable[tuple[float, Any]], targets: Sequence[float]) -> dict[float, np.ndarray]:
    """For each target time (ascending), the decoded ``(time, av.VideoFrame)`` nearest to it: the one just before
    it or the first at/after it, as RGB arrays keyed by time.

    Decoding is consumed in order and stops once every target is served; only frames that can still be the nearest
    to a target are converted, so memory is bounded by the number of targets, not by the length of the video.
    """
    kept: dict[float, np.ndarray] = {}
    prev: tuple[float, Any] | None = None
    j = 0
    for t, frame in decoded:
        while j < len(targets) and t >= targets[j]:
            use_prev = prev is not None and abs(prev[0] - targets[j]) <= abs(t - targets[j])
            best_t, best = prev if use_prev else (t, frame)
            if best_t not in kept:
                kept[best_t] = best.to_ndarray(format="rgb24")
            j += 1
        prev = (t, frame)
        if j >= len(targets):
            break
    if j < len(targets) and prev is not None and prev[0] not in kept:
        kept[prev[0]] = prev[1].to_ndarray(format="rgb24")
    return kept


def sample_frames(
    path: str | Path, sampling: FrameSampling | None = None, *, sample_id: str | None = None
) -> VideoFrames:
    """Decode ``path`` with PyAV and return the frames nearest to ``target_times`` and their real timestamps."""
    import av  # imported here: image-only users should not pay for FFmpeg at import time

    sampling = sampling or FrameSampling()
    path = Path(path)
    if not path.is_file():
        raise MediaError("video file not found", path=path, sample_id=sample_id)
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise MediaError("no video stream in file", path=path, sample_id=sample_id)
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            native_fps = float(stream.average_rate) if stream.average_rate else None
            duration = _duration(container, stream)
            targets = target_times(duration, sampling) if duration else None
            # Decode in order and keep only frames that can still be the nearest to a target: memory stays
            # bounded by the number of targets, not by the length of the video.
            timed = (
                (float(frame.time) if frame.time is not None else i / (native_fps or 1.0), frame)
                for i, frame in enumerate(container.decode(stream))
            )
            if targets is None:
                kept = {t: frame.to_ndarray(format="rgb24") for t, frame in timed}
            else:
                kept = keep_nearest(timed, targets)
            decoded = sorted(kept.items(), key=lambda kv: kv[0])
    except MediaError:
        raise
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise MediaError(f"cannot decode video: {exc}", path=path, sample_id=sample_id) from None
    if not decoded:
        raise MediaError("video has no decodable frames", path=path, sample_id=sample_id)
    if targets is None:  # container did not say how long it is: we know now
        last = decoded[-1][0]
        duration = last + (1.0 / native_fps if native_fps else 0.0)
        targets = target_times(duration, sampling)
    times, frames = _nearest_frames(decoded, targets)
    return VideoFrames(frames=frames, timestamps=times, duration=float(duration), native_fps=native_fps)


def _duration(container, stream) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / 1_000_000  # av.time_base
    if stream.frames and stream.average_rate:
        return stream.frames / float(stream.average_rate)
    return None


def load_video(media: VideoMedia, root: str | Path | None = None, *, sample_id: str | None = None) -> VideoFrames:
    return sample_frames(resolve_media_path(media.path, root), media.sampling, sample_id=sample_id)


def load_media(sample: Sample, root: str | Path | None = None) -> Image.Image | VideoFrames:
    """The media of a sample, ready for a processor: a PIL image or sampled ``VideoFrames``."""
    if sample.media.type == "image":
        return load_image(sample.media, root, sample_id=sample.id)
    return load_video(sample.media, root, sample_id=sample.id)
