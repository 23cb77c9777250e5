"""Test support: a hub database damaged the way a failing disk damages one."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

from hub.store.database import Database


def damaged_copy(folder: Path) -> Path:
    """A copy of a hub database whose pages of one table (not the header, not the schema)
    are overwritten with garbage: it opens, and fails only when that table is read."""
    source = folder / "source.db"
    Database(source).close()
    conn = sqlite3.connect(source)
    before = conn.execute("PRAGMA page_count").fetchone()[0]
    with conn:
        conn.execute("CREATE TABLE archive (n INTEGER PRIMARY KEY, pad BLOB)")
        conn.executemany("INSERT INTO archive (pad) VALUES (randomblob(700))", [()] * 400)
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
