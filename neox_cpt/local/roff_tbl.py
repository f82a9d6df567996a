"""A ``tbl`` table (between ``.TS`` and ``.TE``) as text rows, for :mod:`neox_cpt.local.roff`.

Options (``tab(:);``) and format lines (up to the one ending in ``.``) are read and dropped; each data
row becomes one line with its cells separated by a space; ``T{ … T}`` text blocks join into their cell;
rules (``_``, ``=``) and requests inside the table vanish.

    >>> rows = iter(["tab(:);", "l l.", "a:b", "_", "c:T{", "long", "text", "T}", ".TE", "after"])
    >>> table_rows(rows, str)
    ['a b', 'c long text']
    >>> next(rows)
    'after'
"""
from __future__ import annotations

import re
from typing import Callable, Iterator, List


def _skip_format(lines: Iterator[str]) -> None:
    for line in lines:
        if line.rstrip().endswith("."):
            return


def table_rows(lines: Iterator[str], expand: Callable[[str], str]) -> List[str]:
    """The rows of the table whose ``.TS`` line was just read; consumes ``lines`` through ``.TE``."""
    tab = "\t"
    line = next(lines, None)
    if line is not None and line.rstrip().endswith(";"):
        m = re.search(r"tab\s*\((.)\)", line)
        tab = m.group(1) if m else tab
        line = next(lines, None)
    while line is not None and not line.rstrip().endswith("."):  # the format lines
        line = next(lines, None)
    rows: List[str] = []
    for row in lines:
        if re.match(r"[.']\s*TE", row):
            break
        if re.match(r"[.']\s*T&", row):
            _skip_format(lines)
            continue
        if row[:1] in (".", "'") or row.strip() in ("_", "=", "\\_"):
            continue
        while row.rstrip().endswith("T{"):  # a text block cell, until a line starting with T}
            block: List[str] = []
            end = ""
            for cell_line in lines:
                if cell_line.startswith("T}"):
                    end = cell_line[2:]
                    break
                if cell_line[:1] not in (".", "'"):
                    block.append(cell_line)
            row = row.rstrip()[:-2] + " ".join(block) + end
        cells = [expand(c).strip() for c in row.split(tab)]
        cells = [c for c in cells if c and c not in ("_", "=")]
        if cells:
            rows.append(" ".join(" ".join(cells).split()))
    return rows
