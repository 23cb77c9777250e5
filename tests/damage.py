"""Test support: a hub database damaged the way a failing disk damages one."""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path

from hub.store.database import Database


def fill_archive(conn: sqlite3.Connection) -> None:
    """A table of its own that nothing in the hub reads at start."""
    conn.execute("CREATE TABLE archive (n INTEGER PRIMARY KEY, pad BLOB)")
    conn.executemany("INSERT INTO archive (pad) VALUES (randomblob(700))", [()] * 400)


def fill_connections(conn: sqlite3.Connection) -> None:
    """The core's connections table, which every start reads."""
    conn.executemany(
        "INSERT INTO connections (id, integration, key, title, credentials, origin, "
        "created_at, updated_at) VALUES (?, 'x', ?, 't', randomblob(700), 'test', 'now', 'now')",
        [(f"x:{i}", str(i)) for i in range(300)],
    )


def damaged_copy(folder: Path, fill: Callable[[sqlite3.Connection], None] = fill_archive) -> Path:
    """A copy of a hub database whose pages of the rows ``fill`` writes (not the header, not
    the schema) are overwritten with garbage: it opens, and fails only when they are read."""
    source = folder / "source.db"
    Database(source).close()
    conn = sqlite3.connect(source)
    before = conn.execute("PRAGMA page_count").fetchone()[0]
    with conn:
        fill(conn)
    after, page_size = (
        conn.execute(f"PRAGMA {p}").fetchone()[0] for p in ("page_count", "page_size")
    )
    conn.close()  # the last connection: the WAL is copied back and removed
    assert not Path(f"{source}-wal").exists()
    copy = folder / "hub.db"
    shutil.copyfile(source, copy)
    with copy.open("r+b") as file:
        for page in range(before + 2, after, 5):  # pages 1-based; the table's leaves
            file.seek((page - 1) * page_size)
            file.write(b"\xa5" * page_size)
    return copy
