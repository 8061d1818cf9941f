"""The figures a command reports, as a two-column table (what, value).

One row per figure instead of one column per figure: however many figures a command has, the table fits an
80-column terminal and no header is squeezed or cut.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.table import Table


def summary_table(title: str, rows: Sequence[tuple[str, object]]) -> Table:
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column("what")
    table.add_column("value", justify="right", overflow="fold")
    for name, value in rows:
        table.add_row(name, str(value))
    return table
