"""Before/after caption sheets: the same held-out images with the captioner's captions before and after RL, as a
self-contained HTML page and as a PNG (for a look without a browser)."""

from __future__ import annotations

import base64
import html
import io
import textwrap
from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from caprl.data.io import Dataset
from caprl.data.media import load_image


def _png_data_uri(img: Image.Image) -> str:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _accuracy(correct: dict[tuple[str, int], tuple[int, int]], image: str, j: int) -> str:
    right, total = correct.get((image, j), (0, 0))
    return f"{right}/{total}" if total else "-"


def _marked(scene: dict | None, caption: str) -> tuple[str, str]:
    """The caption as HTML with each false statement struck in red and each unread sentence in grey, and a tag
    "k of n statements true" (``caprl.synth.truth``); plain text when there is no scene."""
    if scene is None:
        return html.escape(caption), ""
    from caprl.synth.truth import check_caption, sentences

    truth = check_caption(scene, caption)
    false = {st.text for st in truth.statements if not st.true}
    unread = set(truth.unread)
    parts = []
    for sentence in sentences(caption):
        text = html.escape(sentence)
        if sentence in false:
            parts.append(f"<span class='false' title='false'>{text}</span>")
        elif sentence in unread:
            parts.append(f"<span class='unread' title='not read by the checker'>{text}</span>")
        else:
            parts.append(text)
    n = len(truth.statements)
    tag = f" · {n - len([st for st in truth.statements if not st.true])} of {n} statements true" if n else ""
    return " ".join(parts), tag


def write_html(
    out: Path,
    ds: Dataset,
    before: Sequence[Sequence[str]],
    after: Sequence[Sequence[str]],
    scores: tuple[dict[tuple[str, int], tuple[int, int]], dict[tuple[str, int], tuple[int, int]]],
    *,
    title: str,
    n: int = 12,
) -> Path:
    """One row per image: the image, its first caption before and after RL, questions right out of asked, and how
    many of the caption's statements are true (false ones struck in red, unread sentences in grey)."""
    rows = []
    for i, s in enumerate(ds.samples[:n]):
        img = load_image(s.media, ds.root, sample_id=s.id)
        cells = []
        for label, caps, sc in (("before RL", before, scores[0]), ("after RL", after, scores[1])):
            text, tag = _marked(s.metadata.get("scene"), caps[i][0])
            cells.append(
                f"<td><div class='tag'>{label} · {_accuracy(sc, s.id, 0)} questions right{tag}</div>{text}</td>"
            )
        rows.append(f"<tr><td><img src='{_png_data_uri(img)}' alt='{html.escape(s.id)}'></td>{''.join(cells)}</tr>")
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: sans-serif; margin: 24px; }}
table {{ border-collapse: collapse; }}
td {{ border-top: 1px solid #ccc; padding: 8px; vertical-align: top; max-width: 420px; font-size: 14px; }}
img {{ width: 160px; height: 160px; }}
.tag {{ color: #555; font-size: 12px; margin-bottom: 4px; }}
.false {{ color: #b00; text-decoration: line-through; }}
.unread {{ color: #999; }}
</style></head><body><h2>{html.escape(title)}</h2>
<p class="tag">Struck in red: statements the scene graph says are false; grey: sentences the checker could not read.</p>
<table><tr><th>image</th><th>before RL</th><th>after RL</th></tr>{"".join(rows)}</table></body></html>
"""
    out.write_text(page)
    return out


def write_png(
    out: Path,
    ds: Dataset,
    before: Sequence[Sequence[str]],
    after: Sequence[Sequence[str]],
    *,
    n: int = 6,
    thumb: int = 128,
    width_chars: int = 58,
) -> Path:
    """The first ``n`` images with their first caption before and after RL, as one PNG."""
    font = ImageFont.load_default()
    line_h = 13
    blocks = []
    for i, s in enumerate(ds.samples[:n]):
        left = textwrap.wrap("BEFORE: " + before[i][0], width_chars) or [""]
        right = textwrap.wrap("AFTER: " + after[i][0], width_chars) or [""]
        blocks.append((s, left, right, max(thumb, line_h * max(len(left), len(right))) + 10))
    col_w = width_chars * 7
    sheet = Image.new("RGB", (thumb + 2 * col_w + 30, sum(b[3] for b in blocks) + 10), "white")
    draw = ImageDraw.Draw(sheet)
    y = 5
    for s, left, right, h in blocks:
        sheet.paste(load_image(s.media, ds.root, sample_id=s.id).resize((thumb, thumb)), (5, y))
        for k, line in enumerate(left):
            draw.text((thumb + 15, y + k * line_h), line, fill="black", font=font)
        for k, line in enumerate(right):
            draw.text((thumb + 20 + col_w, y + k * line_h), line, fill=(0, 90, 0), font=font)
        y += h
        draw.line((0, y - 4, sheet.width, y - 4), fill=(200, 200, 200))
    sheet.save(out)
    return out
