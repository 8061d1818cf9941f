"""Media loading: EXIF rotation, RGB conversion, video frame sampling with timestamps, clear errors."""

import io
from fractions import Fraction

import av
import numpy as np
import pytest
from PIL import Image

from caprl.data.media import MediaError, load_image, load_media, open_image, sample_frames, target_times
from caprl.schema import FrameSampling, ImageMedia, Sample, VideoMedia

FPS = 10
N_FRAMES = 30  # 3 seconds


def write_counting_video(path, n=N_FRAMES, fps=FPS, size=(64, 48)):
    """Frame i is a flat grey of level 8*i, so a decoded frame tells which frame it was."""
    with av.open(str(path), mode="w") as out:
        stream = out.add_stream("mpeg4", rate=fps)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.bit_rate = 20_000_000  # near-lossless, so a frame's grey level identifies it
        stream.codec_context.time_base = Fraction(1, fps)
        for i in range(n):
            arr = np.full((size[1], size[0], 3), 8 * i, dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(arr, format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def frame_index(frame: np.ndarray) -> int:
    return int(round(frame.mean() / 8))


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return write_counting_video(tmp_path_factory.mktemp("v") / "count.mp4")


def test_exif_rotation_applied(tmp_path):
    img = Image.new("RGB", (40, 20), (0, 0, 255))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    path = tmp_path / "rot.jpg"
    img.save(path, exif=exif)
    assert Image.open(path).size == (40, 20)
    assert open_image(path).size == (20, 40)


def test_transparent_pixels_become_white_not_black():
    img = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    out = open_image(buf.getvalue())
    assert out.mode == "RGB" and out.getpixel((0, 0)) == (255, 255, 255)


def test_grayscale_and_palette_become_rgb(tmp_path):
    for mode in ("L", "P", "CMYK"):
        path = tmp_path / f"x_{mode}.{'jpg' if mode == 'CMYK' else 'png'}"
        Image.new(mode, (5, 5)).save(path)
        assert open_image(path).mode == "RGB"


def test_load_image_prefers_bytes_and_resolves_relative_paths(tmp_path):
    (tmp_path / "media").mkdir()
    Image.new("RGB", (7, 3), (1, 2, 3)).save(tmp_path / "media" / "a.png")
    assert load_image(ImageMedia(path="media/a.png"), tmp_path).size == (7, 3)
    buf = io.BytesIO()
    Image.new("RGB", (2, 9)).save(buf, format="PNG")
    assert load_image(ImageMedia(path="missing.png", data=buf.getvalue()), tmp_path).size == (2, 9)


def test_image_errors_name_sample_and_file(tmp_path):
    with pytest.raises(MediaError, match=r"sample 's1' .*nope\.png: image file not found"):
        load_image(ImageMedia(path="nope.png"), tmp_path, sample_id="s1")
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"definitely not a png")
    with pytest.raises(MediaError, match="not a readable image"):
        open_image(bad, sample_id="s2")
    good = io.BytesIO()
    Image.new("RGB", (64, 64), (9, 9, 9)).save(good, format="JPEG")
    truncated = tmp_path / "trunc.jpg"
    truncated.write_bytes(good.getvalue()[: len(good.getvalue()) // 2])
    with pytest.raises(MediaError, match="cannot decode image"):
        open_image(truncated)


def test_target_times():
    assert target_times(3.0, FrameSampling(fps=2)) == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5]
    assert target_times(4.0, FrameSampling(num_frames=4)) == [0.5, 1.5, 2.5, 3.5]
    capped = target_times(100.0, FrameSampling(fps=1, max_frames=5))
    assert capped == [0.0, 25.0, 50.0, 74.0, 99.0]
    assert len(target_times(10.0, FrameSampling(num_frames=50, max_frames=8))) == 8


def test_sample_by_fps_returns_the_right_frames(video):
    out = sample_frames(video, FrameSampling(fps=2))
    assert out.frames.shape == (6, 48, 64, 3) and out.frames.dtype == np.uint8
    assert out.timestamps == pytest.approx([0.0, 0.5, 1.0, 1.5, 2.0, 2.5])
    assert [frame_index(f) for f in out.frames] == [0, 5, 10, 15, 20, 25]
    assert out.duration == pytest.approx(3.0) and out.native_fps == pytest.approx(FPS)


def test_sample_fixed_count_and_max_frames(video):
    out = sample_frames(video, FrameSampling(num_frames=3))
    # centres of three 1 s segments: 0.5, 1.5, 2.5 s = frames 5, 15, 25
    assert [frame_index(f) for f in out.frames] == [5, 15, 25]
    assert out.timestamps == pytest.approx([0.5, 1.5, 2.5])
    out = sample_frames(video, FrameSampling(fps=10, max_frames=4))
    assert len(out) == 4 and out.timestamps[0] == 0.0 and out.timestamps[-1] == pytest.approx(2.9)
    dense = sample_frames(video, FrameSampling(fps=10, max_frames=100))
    assert [frame_index(f) for f in dense.frames] == list(range(N_FRAMES))


def test_more_frames_than_the_video_has_repeat_nearest(video):
    out = sample_frames(video, FrameSampling(fps=20, max_frames=100))
    assert len(out) == 60
    idx = [frame_index(f) for f in out.frames]
    assert idx == sorted(idx) and set(idx) == set(range(N_FRAMES))


def test_video_errors(tmp_path):
    with pytest.raises(MediaError, match=r"sample 'v9' .*: video file not found"):
        sample_frames(tmp_path / "none.mp4", sample_id="v9")
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 1000)
    with pytest.raises(MediaError, match="cannot decode video"):
        sample_frames(bad, sample_id="v10")


def test_load_media_dispatches(tmp_path, video):
    s = Sample(id="v", media=VideoMedia(path=str(video), sampling=FrameSampling(num_frames=2)))
    assert len(load_media(s)) == 2
    Image.new("RGB", (3, 3)).save(tmp_path / "i.png")
    assert load_media(Sample(id="i", media=ImageMedia(path="i.png")), tmp_path).size == (3, 3)
