"""Progress bars for downloads, assembly and conversion (rich, on stderr; silent when disabled).

Tasks count bytes by default; add ``unit="tensors"`` (any word) to a task to count items instead.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text


class _AmountColumn(ProgressColumn):
    """Bytes as ``1.1/2.2 GB``, or items as ``12/22 wheels``."""

    def __init__(self) -> None:
        super().__init__()
        self._bytes, self._items = DownloadColumn(), MofNCompleteColumn()

    def render(self, task: Task) -> Text:
        unit = task.fields.get("unit")
        if unit:
            return Text(f"{self._items.render(task)} {unit}", style="progress.download")
        return self._bytes.render(task)


@contextlib.contextmanager
def transfer_progress(enabled: bool = True, console: Console | None = None) -> Iterator[Progress]:
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        _AmountColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console or Console(stderr=True),
        disable=not enabled,
    )
    with bar:
        yield bar
