"""Encode a video scene to mp4 bytes with PyAV, deterministically: the same frames give the same bytes in every
process, on every run.

- Colour conversion is ours (:func:`rgb_to_yuv420p`): integer BT.601 limited-range coefficients and a 2x2 chroma
  mean, so the encoder is handed the same ``yuv420p`` planes on every machine. (swscale's default RGB->YUV path is
  not bit-exact: some chroma samples come out one step away from its ``BITEXACT`` output, depending on the SIMD code
  the CPU gets.) Every byte of each frame buffer, line padding included, is written, so nothing the encoder reads
  is left uninitialised.
- H.264 (libx264) in one thread with no lookahead or sliced threads, a fixed CRF, and **mb-tree off**. libx264's
  mb-tree pass (on in the ``medium`` preset) uses values that come from uninitialised stack memory in the lookahead
  (valgrind memcheck: "Use of uninitialised value" inside ``x264_encoder_encode``, in the mb-tree's log2 table
  lookups; none with ``mbtree=0``). The quantiser offsets it gave a few macroblocks, and so the bitstream, then
  depended on the process's stack and address-space layout: the same frames gave different mp4s in different
  processes (one encode in five to seven), and now and then within one process.
- ffmpeg's ``bitexact`` flags keep the muxer and encoder from stamping version strings or times.

``mpeg4`` is the fallback where PyAV was built without libx264.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from fractions import Fraction
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from caprl.synth.render import render_frame
from caprl.synth.scene import Scene

if TYPE_CHECKING:
    import av

# PyAV (FFmpeg) is imported where a video is encoded, not with this module: ``caprl.cli`` imports the synth package,
# and commands that never encode a video (``caprl reward serve``, ``caprl train`` on images) should neither pay for
# FFmpeg at start-up nor need PyAV installed (benchmarks/gpu carries no 36 MB PyAV wheel to the GPU machine).

# ITU-R BT.601, limited ("TV") range, 8-bit integer form: Y in [16, 235], Cb/Cr in [16, 240].
_Y = np.array([66, 129, 25], dtype=np.int32)
_CB = np.array([-38, -74, 112], dtype=np.int32)
_CR = np.array([112, -94, -18], dtype=np.int32)
_AVCOL_SPC_SMPTE170M = 6  # ffmpeg's AVColorSpace for BT.601 (PyAV's Colorspace enum holds swscale's numbers instead)

# One encoder thread, and no lookahead/sliced threads or mb-tree (see the module docstring).
_X264_PARAMS = "threads=1:lookahead-threads=1:sliced-threads=0:sync-lookahead=0:mbtree=0"


def default_codec() -> str:
    import av

    return "libx264" if "libx264" in av.codecs_available else "mpeg4"


def rgb_to_yuv420p(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The Y, Cb, Cr planes (``uint8``; chroma at half width and height) of an ``H x W x 3`` ``uint8`` RGB image with
    even sides: BT.601 limited range, each chroma sample from the mean RGB of its 2x2 block. Integer arithmetic with
    fixed rounding (half up), so the same pixels always give the same planes."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"need an H x W x 3 uint8 RGB array, got {rgb.dtype} {rgb.shape}")
    h, w = rgb.shape[:2]
    if h % 2 or w % 2:
        raise ValueError(f"yuv420p needs even sides, got {w}x{h}")
    px = rgb.astype(np.int32)
    y = ((px @ _Y + 128) >> 8) + 16
    block = px.reshape(h // 2, 2, w // 2, 2, 3).sum(axis=(1, 3))  # 4x the 2x2 mean
    cb = ((block @ _CB + 512) >> 10) + 128
    cr = ((block @ _CR + 512) >> 10) + 128
    return y.astype(np.uint8), cb.astype(np.uint8), cr.astype(np.uint8)


def _yuv_frame(img: Image.Image) -> av.VideoFrame:
    """A ``yuv420p`` frame of the image, every byte of its buffers written (line padding zeroed)."""
    import av
    from av.video.reformatter import ColorRange

    frame = av.VideoFrame(img.width, img.height, "yuv420p")
    for plane, data in zip(frame.planes, rgb_to_yuv420p(np.asarray(img.convert("RGB"))), strict=True):
        rows = np.frombuffer(plane, dtype=np.uint8).reshape(-1, plane.line_size)
        rows[:, data.shape[1] :] = 0
        rows[: data.shape[0], : data.shape[1]] = data
    frame.colorspace = _AVCOL_SPC_SMPTE170M
    frame.color_range = ColorRange.MPEG
    return frame


def encode_mp4(frames: Iterable[Image.Image], fps: int, *, codec: str | None = None) -> bytes:
    """mp4 bytes for RGB frames of one even size at a constant ``fps``."""
    import av
    from av.video.reformatter import ColorRange

    codec = codec or default_codec()
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4", options={"fflags": "+bitexact"}) as container:
        stream = container.add_stream(codec, rate=fps)
        stream.pix_fmt = "yuv420p"
        stream.time_base = Fraction(1, fps)
        stream.codec_context.thread_count = 1
        stream.codec_context.colorspace = _AVCOL_SPC_SMPTE170M
        stream.codec_context.color_range = ColorRange.MPEG
        options = {"flags": "+bitexact", "threads": "1"}
        if codec == "libx264":
            # Low CRF: flat colours must survive so pixel tests (and tiny captioners) see the true colour.
            options.update({"crf": "16", "preset": "medium", "x264-params": _X264_PARAMS})
        else:
            options.update({"qscale": "2"})
        stream.options = options
        size = None
        for i, img in enumerate(frames):
            if size is None:
                size = img.size
                stream.width, stream.height = size
            elif img.size != size:
                raise ValueError(f"frame {i} is {img.size[0]}x{img.size[1]}, the first was {size[0]}x{size[1]}")
            frame = _yuv_frame(img)
            frame.pts = i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buf.getvalue()


def frame_times(scene: Scene) -> list[float]:
    """Presentation time of each frame: ``duration * fps`` frames at ``i / fps``."""
    return [i / scene.fps for i in range(scene.duration * scene.fps)]


def render_mp4(scene: Scene, *, codec: str | None = None) -> bytes:
    """Render every frame of a video scene and encode it."""
    if scene.kind != "video":
        raise ValueError("render_mp4 needs a video scene (make_video_scene)")
    return encode_mp4((render_frame(scene, t) for t in frame_times(scene)), scene.fps, codec=codec)
