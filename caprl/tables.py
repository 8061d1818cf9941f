"""The figures a command reports, as a two-column table (what, value).

One row per figure instead of one column per figure: however many figures a command has, the table fits an
80-column terminal and no header is squeezed or cut.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Group
from rich.table import Table
from rich.text import Text


def summary_table(title: str, rows: Sequence[tuple[str, object]]) -> Group:
    """The title on its own line (a long output path wraps at the terminal's width, not the table's), then the
    table."""
    table = Table(show_header=False)
    table.add_column("what")
    table.add_column("value", justify="right", overflow="fold")
    for name, value in rows:
        table.add_row(name, str(value))
    return Group(Text(title), table)
