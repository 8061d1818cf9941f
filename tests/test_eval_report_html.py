"""report.html opened in a real browser (Debian's Chromium, headless): it shows the images and video frames, each
captioner's captions side by side, the reader's answers and whether they were right; a screenshot is taken and
checked for content."""

from __future__ import annotations

import re
import shutil
import subprocess
from html import escape
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from prism_support import Matcher, references, write_jsonl

from caprl.eval import DataPaths, PrismConfig, run_prism

WINDOW = (1280, 1800)


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None and Path("/usr/bin/chromium").is_file():
        found = "/usr/bin/chromium"
    if found is None:
        pytest.fail(
            "Chromium is needed to check report.html in a real browser and was not found: install Debian's "
            "package (apt-get install -y chromium)"
        )
    return found


def browse(html: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """Chromium, headless and offline, on a fresh profile; returns the finished process."""
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    cmd = [
        chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={profile}", f"--window-size={WINDOW[0]},{WINDOW[1]}", "--virtual-time-budget=5000",
        *args, html.as_uri(),
    ]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True)


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> tuple[Path, dict[str, list[dict]]]:
    """One run over an image and a video benchmark, exhaustive reference captions compared with terse ones."""
    from caprl.synth import generate_image_dataset, generate_video_dataset

    root = tmp_path_factory.mktemp("html")
    data = {
        "shapes-image": generate_image_dataset(3, root / "img", seed=1, progress=False),
        "shapes-video": generate_video_dataset(1, root / "vid", seed=1, max_frames=8, progress=False),
    }
    paths = DataPaths(data={k: str(v) for k, v in data.items()}, env={})
    captions = {}
    for level in ("terse", "exhaustive"):
        rows = [r for ds in data.values() for r in references(ds, level)]
        captions[level] = rows
        file = write_jsonl(root / f"{level}.jsonl", rows)
        cfg = PrismConfig(
            benchmarks=list(data), out=root / "out", captioner=level, reader="matcher", captions=file, html_items=6,
            compare="terse" if level == "exhaustive" else None,
        )  # fmt: skip
        run_prism(cfg, reader=Matcher(), paths=paths)
    return root / "out" / "report.html", captions


def test_report_html_shows_media_captions_and_answers_in_chromium(report, tmp_path):
    html, captions = report
    text = html.read_text()
    assert "http://" not in text.replace('href="#', "") and 'src="http' not in text  # self-contained
    n_images = text.count("<img ")
    dom = browse(html, tmp_path, "--dump-dom").stdout
    # Every image (the pictures and the video's frames, inlined) decoded in the browser.
    assert f'data-images-loaded="{n_images}/{n_images}"' in dom and n_images >= 6 + 4
    # Both captioners side by side, their captions, the reader's answers with right/wrong marks.
    # (a DOM dump escapes text nodes' &, < and > only)
    shown_exhaustive = [r["caption"] for r in captions["exhaustive"] if escape(r["caption"], quote=False) in dom]
    shown_terse = [r["caption"] for r in captions["terse"] if escape(r["caption"], quote=False) in dom]
    assert len(shown_exhaustive) == len(shown_terse) == 4  # every medium of the sample, from each captioner
    assert dom.count('class="side"') == 2 * dom.count('class="item"') and dom.count('class="item"') == 12
    assert "✓ right" in dom and "✗ wrong" in dom and "no caption:" in dom
    assert re.search(r"vs terse</td><td>\d+</td>", dom)  # the paired comparison
    assert "Shapes world (images)" in dom and "Shapes world (videos)" in dom


def test_report_html_screenshot_is_not_blank(report, tmp_path):
    html, _ = report
    shot = tmp_path / "report.png"
    browse(html, tmp_path, f"--screenshot={shot}")
    image = np.asarray(Image.open(shot).convert("RGB"))
    assert image.shape[:2] == (WINDOW[1], WINDOW[0])
    colours = np.unique(image.reshape(-1, 3), axis=0)
    assert len(colours) > 200  # text, tables, thumbnails: not a blank or single-colour page
    # The page's dark header is drawn, and the shapes' saturated colours from the inlined thumbnails show.
    assert (image[:40, :, :].mean(axis=(0, 1)) < 60).all()
    saturated = (image.max(axis=2).astype(int) - image.min(axis=2).astype(int)) > 150
    assert saturated.sum() > 2000


def test_media_view_frames_of_a_clip_cached_and_failures_named(tmp_path):
    from caprl.eval.html import media_view
    from caprl.eval.types import EvalItem
    from caprl.schema import VideoMedia
    from caprl.synth import make_video_sample

    video = tmp_path / "v.mp4"
    video.write_bytes(make_video_sample(0, seed=0)[1])
    item = EvalItem(id="q", media_id="vid:v.mp4@1-3", media=VideoMedia(path=str(video)), question="Q?",
                    options=["a", "b"], gold=0, extra={"clip": [1.0, 3.0]})  # fmt: skip
    view = media_view(item, tmp_path / "thumbs")
    assert len(view["images"]) == 4 and all(u.startswith("data:image/jpeg;base64,") for u in view["images"])
    assert view["times"] == sorted(view["times"]) and view["times"][0] >= 1.0 and view["times"][-1] <= 3.0
    video.unlink()  # the thumbnails are cached: re-scoring does not decode the video again
    assert media_view(item, tmp_path / "thumbs") == view
    missing = media_view(item.model_copy(update={"extra": {}}), tmp_path / "thumbs")
    assert missing["images"] == [] and "video file not found" in missing["error"]
