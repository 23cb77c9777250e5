"""The benchmarks' baseline: plain ``sqlite3`` upserts into a table shaped like the hub's."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import orjson

from hub.model import Stream
from hub.store.records import table_name

Getter = Callable[[dict[str, Any]], Any]
CHUNK = 1000


def open_raw(path: Path) -> sqlite3.Connection:
    """A fresh database with the hub writer's pragmas (WAL, synchronous=NORMAL, no inline
    checkpoints), so the ratio measures the hub's own work."""
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA wal_autocheckpoint=0")
    return conn


def create_records_table(conn: sqlite3.Connection, table: str, columns: Sequence[str]) -> str:
    """Create ``table`` like a hub records table (same columns and indexes; the hub's upsert
    also skips unchanged rows and counts created/updated, which this does not); return the
    ``INSERT … ON CONFLICT DO UPDATE`` statement for rows
    ``(connection_id, id, *columns, data, synced_at, _gen)``."""
    conn.execute(
        f"CREATE TABLE {table} (connection_id TEXT NOT NULL, id TEXT NOT NULL, "
        + "".join(f"[{c}], " for c in columns)
        + "data TEXT NOT NULL, synced_at TEXT NOT NULL, deleted_at TEXT, _gen INTEGER, "
        "PRIMARY KEY (connection_id, id))"
    )
    for c in columns:
        conn.execute(f"CREATE INDEX {table}_{c} ON {table} (connection_id, [{c}])")
    conn.execute(f"CREATE INDEX {table}__live ON {table} (connection_id, deleted_at, _gen)")
    names = ["connection_id", "id", *columns, "data", "synced_at", "_gen"]
    return (
        f"INSERT INTO {table} ({', '.join(f'[{n}]' for n in names)}) "
        f"VALUES ({', '.join('?' * len(names))}) ON CONFLICT (connection_id, id) DO UPDATE SET "
        + ", ".join(f"[{c}] = excluded.[{c}]" for c in [*columns, "data", "synced_at", "_gen"])
    )


def timed_upsert(conn: sqlite3.Connection, sql: str, rows: list[tuple[Any, ...]]) -> float:
    """Upsert ``rows`` in one transaction; return the seconds it took."""
    began = time.perf_counter()
    with conn:
        conn.executemany(sql, rows)
    return time.perf_counter() - began


def upsert_hub_rows(
    folder: Path,
    integration: str,
    streams: Iterable[Stream],
    connection: str,
    getter: Callable[[str], Getter],
) -> tuple[int, float]:
    """Upsert the rows the hub stored in ``folder/hub.db`` into same-shaped tables of a new
    ``folder/raw.db``, a chunk per transaction; only the upserts are timed.

    :param getter: makes the function reading one indexed column from a record's path.
    :return: the rows upserted and the seconds the upserts took.
    """
    source = sqlite3.connect(folder / "hub.db")
    conn = open_raw(folder / "raw.db")
    total, elapsed = 0, 0.0
    for stream in streams:
        columns = list(stream.columns)
        getters = [getter(str(stream.columns[c])) for c in columns]
        sql = create_records_table(conn, f"raw_{stream.name}", columns)
        cursor = source.execute(
            f"SELECT id, data FROM {table_name(integration, stream.name)} ORDER BY rowid"
        )
        while chunk := cursor.fetchmany(CHUNK):
            rows = []
            for record_id, data in chunk:
                record = orjson.loads(data)
                rows.append((connection, record_id, *[g(record) for g in getters], data, "t", 1))
            elapsed += timed_upsert(conn, sql, rows)
            total += len(rows)
    source.close()
    conn.close()
    return total, elapsed
