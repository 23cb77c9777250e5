"""Multi-row statements: the sizes they come in, and inserts through them."""

from __future__ import annotations

import itertools
import sqlite3

import pytest

from hub.store.bulk import MAX_BOUND_VALUES, STATEMENT_ROWS, chunk_sizes, chunks, insert_rows


@pytest.mark.parametrize("width", [5, 8, 9, 200, 999])
def test_chunk_sizes_are_powers_of_two_within_the_bound(width):
    sizes = chunk_sizes(width)
    assert sizes[-1] == 1 and all(a == 2 * b for a, b in itertools.pairwise(sizes))
    assert sizes[0] * width <= MAX_BOUND_VALUES < sizes[0] * 2 * width


def test_chunk_sizes_keep_reserved_values_and_the_row_cap():
    assert chunk_sizes(2, limit=32766)[0] == STATEMENT_ROWS
    assert chunk_sizes(4, limit=40, reserved=3) == (8, 4, 2, 1)  # 9 rows fit: 8
    assert chunk_sizes(50, limit=40) == (1,)  # a row wider than the limit still gets one


@pytest.mark.parametrize("total", [0, 1, 7, 256, 1000, 1023])
def test_chunks_cover_every_row_once_in_order(total):
    sizes = chunk_sizes(3, limit=32766)
    position = 0
    for start, size in chunks(total, sizes):
        assert (start, size in sizes) == (position, True)
        position += size
    assert position == total


def test_insert_rows_counts_what_it_inserted():
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (a INTEGER PRIMARY KEY, b TEXT)")
    rows = [(i, f"v{i}") for i in range(700)]
    assert insert_rows(conn, "INSERT INTO t (a, b) VALUES {values}", rows) == 700
    again = [(i, "x") for i in range(690, 710)]
    assert insert_rows(conn, "INSERT OR IGNORE INTO t (a, b) VALUES {values}", again) == 10
    assert conn.execute("SELECT count(*), max(a) FROM t").fetchone() == (710, 709)
    assert insert_rows(conn, "INSERT INTO t (a, b) VALUES {values}", []) == 0
