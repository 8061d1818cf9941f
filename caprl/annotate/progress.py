"""A rich progress bar with throughput and ETA, handed to library functions as an ``on_progress`` callback.

Library functions report ``on_progress(done_now, total)``: ``done_now`` items finished since the last call and
the number of items this run has to do. The bar shows done/total, items per second and the time left, so a
multi-day annotation run can be watched from its log.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

ProgressFn = Callable[[int, int], None]


class RateColumn(ProgressColumn):
    """Items per second over the whole run (rich's own speed column is for bytes)."""

    def __init__(self, unit: str = "items") -> None:
        super().__init__()
        self.unit = unit

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        if speed is None:
            return Text(f"- {self.unit}/s", style="progress.data.speed")
        return Text(f"{speed:.2f} {self.unit}/s", style="progress.data.speed")


@contextmanager
def progress_bar(label: str, *, unit: str = "items", console: Console | None = None) -> Iterator[ProgressFn]:
    """``with progress_bar("annotate") as on_progress: run(..., on_progress=on_progress)``."""
    columns = (
        TextColumn(f"[bold]{label}"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(unit),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
    )
    # speed_estimate_period: the rate averages over the last minutes, not the last second, so a slow batch does
    # not swing the ETA.
    with Progress(*columns, console=console, speed_estimate_period=300.0) as progress:
        task = progress.add_task(label, total=None)

        def on_progress(advance: int, total: int) -> None:
            progress.update(task, total=total, advance=advance)

        yield on_progress
