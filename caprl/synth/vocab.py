"""The shapes world's closed vocabulary: colours, shapes, sizes, grid cells, titles, directions, time formats.

Everything the generator says and everything the checker parses comes from these tables, so a word means the
same thing in a scene graph, a caption, a question and an option.
"""

from __future__ import annotations

import re

# Chosen to stay far apart in RGB so a pixel test (and a tiny captioner) can tell them apart.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "orange": (245, 135, 20),
    "yellow": (235, 205, 0),
    "green": (30, 160, 60),
    "blue": (30, 80, 220),
    "purple": (130, 50, 170),
    "pink": (245, 120, 190),
    "brown": (130, 80, 35),
    "gray": (128, 128, 128),
    "black": (20, 20, 20),
}
COLOUR_NAMES: tuple[str, ...] = tuple(COLOURS)
BACKGROUND = (255, 255, 255)
TEXT_COLOUR = (0, 0, 0)

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "diamond", "star", "hexagon")
SIZES: tuple[str, ...] = ("small", "large")

ROWS = 3
COLS = 3
_ROW_NAMES = ("top", "middle", "bottom")
_COL_NAMES = ("left", "center", "right")


def cell_name(row: int, col: int) -> str:
    """Human name of a 3x3 grid cell: ``(0, 0) -> "top left"``, ``(1, 1) -> "center"``."""
    if (row, col) == (1, 1):
        return "center"
    return f"{_ROW_NAMES[row]} {_COL_NAMES[col]}"


CELL_NAMES: tuple[str, ...] = tuple(cell_name(r, c) for r in range(ROWS) for c in range(COLS))
CELL_OF_NAME: dict[str, tuple[int, int]] = {cell_name(r, c): (r, c) for r in range(ROWS) for c in range(COLS)}

# Where one object lies relative to another on the grid; every pair of distinct cells has exactly one.
RELATIONS: tuple[str, ...] = (
    "left",
    "right",
    "above",
    "below",
    "above left",
    "above right",
    "below left",
    "below right",
)

DIRECTIONS: dict[str, tuple[int, int]] = {"left": (0, -1), "right": (0, 1), "up": (-1, 0), "down": (1, 0)}

# Short texts that mimic chart titles and document headers; upper case reads best in the tiny default font.
TITLES: tuple[str, ...] = (
    "SALES",
    "Q3 REPORT",
    "TOTALS",
    "FIGURE 2",
    "INVENTORY",
    "SCORES",
    "BUDGET",
    "RESULTS",
    "PLAN B",
    "MAP 7",
    "LEVEL 3",
    "TEAM A",
    "WEEK 12",
    "SURVEY",
    "INDEX",
    "PART 4",
)

NUMBER_WORDS = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def plural(shape: str) -> str:
    return shape + "s"


def with_article(phrase: str) -> str:
    return ("an " if phrase[:1] in "aeiou" else "a ") + phrase


def join_and(items: list[str]) -> str:
    """``["a", "b", "c"] -> "a, b and c"``."""
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def fmt_time(seconds: float) -> str:
    """``[mm:ss]`` for a whole number of seconds."""
    s = int(round(seconds))
    return f"[{s // 60:02d}:{s % 60:02d}]"


def fmt_range(start: float, end: float) -> str:
    """``[mm:ss - mm:ss]``."""
    return f"{fmt_time(start)[:-1]} - {fmt_time(end)[1:]}"


_TIME_RE = re.compile(r"^\[(\d{2}):(\d{2})(?: - (\d{2}):(\d{2}))?\]$")


def parse_timestamp(text: str) -> tuple[int, int] | None:
    """``"[00:03]" -> (3, 3)``, ``"[00:02 - 00:04]" -> (2, 4)``; anything else -> None."""
    m = _TIME_RE.match(text.strip())
    if not m:
        return None
    start = int(m.group(1)) * 60 + int(m.group(2))
    if m.group(3) is None:
        return start, start
    return start, int(m.group(3)) * 60 + int(m.group(4))
