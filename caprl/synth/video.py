"""Encode a video scene to mp4 bytes with PyAV, deterministically.

H.264 (libx264) with one thread, a fixed CRF and ffmpeg's ``bitexact`` flags: single-threaded x264 makes the same
bitstream for the same frames, and ``bitexact`` keeps the muxer from stamping version strings or times, so the same
seed gives the same bytes. ``mpeg4`` is the fallback where PyAV was built without libx264.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from fractions import Fraction

import av
from PIL import Image

from caprl.synth.render import render_frame
from caprl.synth.scene import Scene


def default_codec() -> str:
    return "libx264" if "libx264" in av.codecs_available else "mpeg4"


def encode_mp4(frames: Iterable[Image.Image], fps: int, *, codec: str | None = None) -> bytes:
    """mp4 bytes for RGB frames at a constant ``fps``."""
    codec = codec or default_codec()
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4", options={"fflags": "+bitexact"}) as container:
        stream = container.add_stream(codec, rate=fps)
        stream.pix_fmt = "yuv420p"
        stream.time_base = Fraction(1, fps)
        stream.codec_context.thread_count = 1
        options = {"flags": "+bitexact"}
        if codec == "libx264":
            # Low CRF: flat colours must survive so pixel tests (and tiny captioners) see the true colour.
            options.update(
                {"crf": "16", "preset": "medium", "threads": "1", "x264-params": "threads=1:sliced-threads=0"}
            )
        else:
            options.update({"qscale": "2"})
        stream.options = options
        sized = False
        for i, img in enumerate(frames):
            if not sized:
                stream.width, stream.height = img.size
                sized = True
            frame = av.VideoFrame.from_image(img.convert("RGB"))
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
