"""Many rows per statement, for the writer thread.

``executemany`` steps once per row, releasing and retaking the GIL each time: on the writer
thread, while the event loop's thread parses the next page, every row then waits for the
GIL. These helpers bind many rows to one statement instead, in a few fixed sizes (powers of
two), so each statement text is compiled once and stays in the connection's cache.
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Iterator, Sequence
from typing import Any

MAX_BOUND_VALUES = 999
"""Values one statement binds at most unless the connection allows more: SQLite's oldest
limit (3.32 raised the default)."""
STATEMENT_ROWS = 256
"""Rows one statement writes at most: larger statements save little and cost memory."""


@functools.cache
def chunk_sizes(width: int, limit: int = MAX_BOUND_VALUES, reserved: int = 0) -> tuple[int, ...]:
    """Rows per statement for rows of ``width`` values, largest first: the powers of two up
    to the largest whose values (and ``reserved`` ones besides) fit ``limit``, at most
    :data:`STATEMENT_ROWS`, so a group of n rows takes at most one statement per set bit
    of n beyond the full ones."""
    fitting = max(1, min(STATEMENT_ROWS, (limit - reserved) // width))
    largest = 1 << (fitting.bit_length() - 1)
    return tuple(largest >> shift for shift in range(largest.bit_length()))


def chunks(total: int, sizes: Sequence[int]) -> Iterator[tuple[int, int]]:
    """``(start, size)`` of each statement writing ``total`` rows in ``sizes`` (from
    :func:`chunk_sizes`), largest first."""
    start = 0
    for size in sizes:
        while total - start >= size:
            yield start, size
            start += size


def variable_limit(conn: sqlite3.Connection) -> int:
    """The most values one statement of ``conn`` may bind."""
    return conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)


@functools.cache
def _values(width: int, rows: int) -> str:
    row = "(" + ", ".join("?" * width) + ")"
    return ", ".join([row] * rows)


def insert_rows(conn: sqlite3.Connection, template: str, rows: Sequence[tuple[Any, ...]]) -> int:
    """Run ``template`` (with a ``{values}`` slot) over ``rows`` in a few multi-row statements;
    return how many rows they inserted (an ``OR IGNORE`` skips duplicates)."""
    if not rows:
        return 0
    width, inserted = len(rows[0]), 0
    for start, size in chunks(len(rows), chunk_sizes(width)):
        inserted += conn.execute(
            template.format(values=_values(width, size)),
            [value for row in rows[start : start + size] for value in row],
        ).rowcount
    return inserted
