"""Text tables and lines that fit a terminal width: abbreviation with a legend, column splitting,
wrapping. Standard library only (plain ``pytest`` may load it); knows nothing of measurements.

The rule (issue 14, item 9): no line of the ``egbench`` output is wider than :data:`WIDTH`. A
table too wide is split into several tables over the same row labels, at its sections first
(e.g. stages / derived metrics); a name too long for its column is replaced by a short key that a
legend line under the table spells out; a long line is wrapped. Nothing is cut silently.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field

#: The widest line the egbench output may print (columns).
WIDTH = 120
#: Longest row label (first column) or column title kept as it is; longer ones get a key.
LABEL_LIMIT = 40
TITLE_LIMIT = 26
_GAP = "  "


@dataclass
class Grid:
    """A table as cells: ``header`` and ``rows`` (lists of strings of the header's length; the
    first column holds the row labels). ``sections``: column indices (> 0) where a new section
    begins, the places a too-wide table is split first."""

    header: list[str]
    rows: list[list[str]]
    sections: list[int] = field(default_factory=list)


def render(grid: Grid) -> list[str]:
    """Fixed-width lines: first column left-aligned, the others right-aligned, two spaces apart."""
    lines = [grid.header, *grid.rows]
    widths = [max(len(r[i]) for r in lines) for i in range(len(grid.header))]
    return [_GAP.join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip() for r in lines]


def wrap(line: str, width: int = WIDTH, indent: str = "  ") -> list[str]:
    """``line`` wrapped at spaces into lines of at most ``width`` columns, continuation lines
    indented by ``indent``; a word longer than a line (a path) is broken, never dropped."""
    if len(line) <= width:
        return [line]
    return textwrap.wrap(line, width=width, subsequent_indent=indent, break_on_hyphens=False) or [""]


def abbreviate(names: Sequence[str], limit: int, prefix: str) -> tuple[list[str], list[str]]:
    """``names`` with each one longer than ``limit`` replaced by a key ``{prefix}{i}`` (numbered
    from 1 in order of first appearance; equal names share a key), and the legend, one
    ``key: name`` line each (wrapped to :data:`WIDTH`). Raises ``ValueError`` if ``limit`` is
    shorter than the keys."""
    keys: dict[str, str] = {}
    for name in names:
        if len(name) > limit and name not in keys:
            keys[name] = f"{prefix}{len(keys) + 1}"
    if any(len(k) > limit for k in keys.values()):
        raise ValueError(f"abbreviate: limit {limit} is shorter than the keys {list(keys.values())}")
    legend = [line for name, key in keys.items() for line in wrap(f"{key}: {name}", indent=" " * (len(key) + 2))]
    return [keys.get(n, n) for n in names], legend


def _chunks(widths: Sequence[int], sections: Sequence[int], room: int) -> list[list[int]]:
    """Column indices (from 1) grouped so that each group's columns, two spaces apart, take at
    most ``room`` columns: whole sections while they fit, a section too wide alone column by
    column. A single column wider than ``room`` gets a group of its own."""
    bounds = sorted({1, *(s for s in sections if 0 < s < len(widths))}) + [len(widths)]
    out: list[list[int]] = []
    current: list[int] = []

    def used(cols: list[int]) -> int:
        return sum(len(_GAP) + widths[c] for c in cols)

    for start, stop in zip(bounds, bounds[1:]):
        section = list(range(start, stop))
        if current and used(current + section) > room:
            out.append(current)
            current = []
        if used(section) <= room:
            current += section
            continue
        for c in section:
            if current and used(current + [c]) > room:
                out.append(current)
                current = []
            current.append(c)
    return out + ([current] if current else [])


def fit(grid: Grid, width: int = WIDTH) -> list[str]:
    """``grid`` as text lines of at most ``width`` columns: long row labels and column titles
    replaced by keys with a legend (rows ``r1``, ``r2``...; columns ``c1``...), then split into
    several tables over the same row labels where the columns do not fit (a blank line between
    them), the legend last."""
    labels, row_legend = abbreviate([r[0] for r in grid.rows], LABEL_LIMIT, "r")
    # a title no wider than the column's cells costs nothing: only longer ones get a key
    cell = max((len(c) for r in grid.rows for c in r[1:]), default=0)
    titles, col_legend = abbreviate(grid.header[1:], max(TITLE_LIMIT, cell), "c")
    header = [grid.header[0], *titles]
    rows = [[label, *r[1:]] for label, r in zip(labels, grid.rows)]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines: list[str] = []
    for cols in _chunks(widths, grid.sections, width - widths[0]):
        part = Grid([header[0], *(header[c] for c in cols)], [[r[0], *(r[c] for c in cols)] for r in rows])
        lines += ([""] if lines else []) + render(part)
    if len(header) == 1:  # labels only
        lines = render(Grid(header, rows))
    return lines + row_legend + col_legend
