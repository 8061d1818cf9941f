"""Draw a scene with PIL: a still image, or the frame of a video at time ``t``.

Layout: an optional title band on top, then a 3x3 grid; each cell holds one shape with a band below it for the
shape's label. No system fonts are assumed (``ImageFont.load_default(size=...)`` ships with Pillow), and nothing is
random here, so the same scene always gives the same pixels.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from functools import lru_cache

from PIL import Image, ImageDraw, ImageFont

from caprl.synth.scene import Scene, SceneObject
from caprl.synth.vocab import BACKGROUND, COLOURS, COLS, ROWS, TEXT_COLOUR

_SIZE_SCALE = {"small": 0.26, "large": 0.46}


@dataclass(frozen=True)
class Layout:
    title_h: float
    cell_w: float
    cell_h: float
    label_h: float

    def centre(self, row: float, col: float) -> tuple[float, float]:
        """Centre of the shape box of a (possibly fractional, mid-move) cell."""
        x = (col + 0.5) * self.cell_w
        y = self.title_h + row * self.cell_h + (self.cell_h - self.label_h) / 2
        return x, y

    def radius(self, size: str) -> float:
        return _SIZE_SCALE[size] * min(self.cell_w, self.cell_h - self.label_h)


def layout(scene: Scene) -> Layout:
    title_h = round(scene.height * 0.125) if scene.title else 0
    cell_h = (scene.height - title_h) / ROWS
    label_h = round(cell_h * 0.22) if any(o.label for o in scene.objects) else 0
    return Layout(title_h=title_h, cell_w=scene.width / COLS, cell_h=cell_h, label_h=label_h)


@lru_cache(maxsize=32)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=max(8, size))


def _polygon(cx: float, cy: float, r: float, n: int, rotation: float, inner: float | None = None) -> list[tuple]:
    points = []
    steps = n * 2 if inner else n
    for i in range(steps):
        radius = r if inner is None or i % 2 == 0 else r * inner
        angle = rotation + 2 * math.pi * i / steps
        points.append((cx + radius * math.cos(angle), cy + radius * math.sin(angle)))
    return points


def draw_shape(
    draw: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, r: float, rgb: tuple[int, int, int]
) -> None:
    up = -math.pi / 2
    if shape == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=rgb)
    elif shape == "square":
        s = r * 0.85  # a square of half-side r looks much bigger than a circle of radius r
        draw.rectangle([cx - s, cy - s, cx + s, cy + s], fill=rgb)
    elif shape == "triangle":
        draw.polygon(_polygon(cx, cy + r * 0.15, r * 1.1, 3, up), fill=rgb)
    elif shape == "diamond":
        draw.polygon(_polygon(cx, cy, r * 1.05, 4, up), fill=rgb)
    elif shape == "star":
        draw.polygon(_polygon(cx, cy, r * 1.1, 5, up, inner=0.45), fill=rgb)
    elif shape == "hexagon":
        draw.polygon(_polygon(cx, cy, r, 6, 0.0), fill=rgb)
    else:
        raise ValueError(f"unknown shape {shape!r}")


def _draw_title(draw: ImageDraw.ImageDraw, scene: Scene, lay: Layout) -> None:
    if scene.title:
        draw.text(
            (scene.width / 2, lay.title_h / 2),
            scene.title,
            fill=TEXT_COLOUR,
            font=_font(int(lay.title_h * 0.7)),
            anchor="mm",
        )


def _draw_object(draw: ImageDraw.ImageDraw, o: SceneObject, lay: Layout, colour: str, row: float, col: float) -> None:
    cx, cy = lay.centre(row, col)
    draw_shape(draw, o.shape, cx, cy, lay.radius(o.size), COLOURS[colour])
    if o.label is not None:
        label_y = lay.title_h + (row + 1) * lay.cell_h - lay.label_h / 2
        draw.text((cx, label_y), o.label, fill=TEXT_COLOUR, font=_font(int(lay.label_h * 0.9)), anchor="mm")


def render_image(scene: Scene) -> Image.Image:
    """The still image of a scene (for a video scene: its first frame)."""
    return render_frame(scene, 0.0)


def render_frame(scene: Scene, t: float) -> Image.Image:
    """The scene at time ``t`` seconds: appeared objects shown, colours changed, movers slid linearly."""
    img = Image.new("RGB", (scene.width, scene.height), BACKGROUND)
    draw = ImageDraw.Draw(img)
    lay = layout(scene)
    _draw_title(draw, scene, lay)
    for o in scene.objects:
        visible, colour, row, col = True, o.colour, float(o.row), float(o.col)
        for e in sorted(scene.events_of(o.id), key=lambda e: e.start):
            if e.kind == "appear":
                visible = t >= e.start
            elif e.kind == "colour" and t >= e.start:
                colour = e.colour or colour
            elif e.kind == "move" and t > e.start:
                f = min(1.0, (t - e.start) / max(e.end - e.start, 1e-9))
                row, col = row + f * (e.to_row - row), col + f * (e.to_col - col)  # type: ignore[operator]
        if visible:
            _draw_object(draw, o, lay, colour, row, col)
    return img


def png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def render_png(scene: Scene) -> bytes:
    """PNG bytes of a still scene; identical for identical scenes."""
    return png_bytes(render_image(scene))
