"""Synced records: one table per integration and stream, keyed by (connection_id, id).

Each table holds the stream's indexed columns, the record's raw JSON (``data``), when it was
last written (``synced_at``), a soft-delete tombstone (``deleted_at``) and the full-sync
generation that last saw it (``_gen``, for tombstoning what a full sync no longer finds).
"""

from __future__ import annotations

import itertools
import operator
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import sqlite_utils

from hub.model import Field, Stream
from hub.store.bulk import chunk_sizes, chunks, variable_limit

NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
RESERVED_COLUMNS = frozenset({"connection_id", "id", "data", "synced_at", "deleted_at", "_gen"})
CHUNK = 900  # below SQLite's 999 variables per statement
Row = tuple[Any, ...]
"""A record as a table row: its id, its indexed columns, its JSON."""


def table_name(integration: str, stream: str) -> str:
    """``records_<integration>_<stream>``; ValueError for names that are not identifiers."""
    for part in (integration, stream):
        if not NAME_RE.match(part):
            raise ValueError(f"invalid integration or stream name {part!r}")
    return f"records_{integration}_{stream}"


def field_getter(path: Field) -> Callable[[dict[str, Any]], Any]:
    """A function reading ``path`` (a :data:`~hub.model.Field`) from a record."""
    if callable(path):
        return path
    parts = path.split(".")
    if len(parts) == 1:
        return operator.methodcaller("get", path)
    if len(parts) == 2:  # the common nested field (``MetaData.LastUpdatedTime``): no loop
        outer, inner = parts

        def get_two(record: dict[str, Any]) -> Any:
            value = record.get(outer)
            return value.get(inner) if isinstance(value, dict) else None

        return get_two

    def get(record: dict[str, Any]) -> Any:
        value: Any = record
        for part in parts:
            if not isinstance(value, dict):
                return None
            value = value.get(part)
        return value

    return get


_PLAIN = frozenset({str, int, type(None)})
"""Types a column stores as they are (checked before calling :func:`_column_value`)."""


def _column_value(value: Any) -> Any:
    if value is None or isinstance(value, str | int):
        return value
    if isinstance(value, float):
        return repr(value)  # money and decimals as text, never binary floats
    return orjson.dumps(value).decode()


@dataclass
class BatchCounts:
    """How many records one write created, updated (content changed) and tombstoned."""

    created: int = 0
    updated: int = 0
    deleted: int = 0

    def add(self, other: BatchCounts) -> None:
        """Add ``other`` into these counts."""
        self.created += other.created
        self.updated += other.updated
        self.deleted += other.deleted


class RecordTable:
    """The SQL for one stream's table, prepared once per sync."""

    def __init__(self, integration: str, stream: Stream) -> None:
        self.name = table_name(integration, stream.name)
        columns = list(stream.columns)
        for column in columns:
            if not NAME_RE.match(column) or column in RESERVED_COLUMNS:
                raise ValueError(f"{integration}.{stream.name}: invalid column name {column!r}")
        self.columns = columns
        self._key = field_getter(stream.key)
        self._getters = [field_getter(stream.columns[column]) for column in columns]
        names = ["connection_id", "id", *columns, "data", "synced_at", "_gen"]
        updates = ", ".join(f"[{c}] = excluded.[{c}]" for c in [*columns, "data", "synced_at"])
        self._width = len(columns) + 2  # a row's own values: id, columns, data
        self._cache: dict[int, str] = {}
        self._insert = f"INSERT INTO [{self.name}] ({', '.join(f'[{n}]' for n in names)})"
        # only a change of content (or a tombstone) updates a row: a full sync's generation
        # of unchanged rows is set by one statement per batch (_seen_sql), so the upserts'
        # own change counts are the created and updated rows
        self._on_conflict = (
            f"ON CONFLICT (connection_id, id) DO UPDATE SET {updates}, deleted_at = NULL, "
            f"_gen = coalesce(excluded._gen, [{self.name}]._gen) "
            f"WHERE [{self.name}].data IS NOT excluded.data "
            f"OR [{self.name}].deleted_at IS NOT NULL"
        )
        batch_ids = "id IN (SELECT value FROM json_each(?2))"
        self._existing_sql = (
            f"SELECT count(*) FROM [{self.name}] WHERE connection_id = ?1 AND {batch_ids}"
        )
        self._seen_sql = (
            f"UPDATE [{self.name}] SET _gen = ?3 "
            f"WHERE connection_id = ?1 AND {batch_ids} AND _gen IS NOT ?3"
        )

    def create(self, db: sqlite_utils.Database, stream: str, integration: str) -> None:
        """Create the table and its indexes if they do not exist; add new columns."""
        existing = db.table_names()
        if self.name not in existing:
            cols = "".join(f"[{c}], " for c in self.columns)
            db.execute(
                f"CREATE TABLE [{self.name}] (connection_id TEXT NOT NULL, id TEXT NOT NULL, "
                f"{cols}data TEXT NOT NULL, synced_at TEXT NOT NULL, deleted_at TEXT, "
                "_gen INTEGER, PRIMARY KEY (connection_id, id))"
            )
        else:
            have = {c.name for c in db.table(self.name).columns}
            for index, column in enumerate(self.columns):
                if column not in have:
                    db.execute(f"ALTER TABLE [{self.name}] ADD COLUMN [{column}]")
                    self._fill(db, column, self._getters[index])
        # "." cannot occur in names: stream b + column c_d and stream b_c + column d no longer
        # share an index name (the older "_" names are dropped from this table if present).
        indexes = {row[1] for row in db.execute(f"PRAGMA index_list([{self.name}])")}
        for column in self.columns:
            legacy = f"{self.name}_{column}"
            if legacy in indexes:
                db.execute(f"DROP INDEX [{legacy}]")
            db.execute(
                f"CREATE INDEX IF NOT EXISTS [{self.name}.{column}] "
                f"ON [{self.name}] (connection_id, [{column}])"
            )
        # Counting live records and a full sync's sweep read only this index, never the rows
        # (whose large ``data`` would be read through to reach ``deleted_at`` and ``_gen``).
        db.execute(
            f"CREATE INDEX IF NOT EXISTS [{self.name}__live] "
            f"ON [{self.name}] (connection_id, deleted_at, _gen)"
        )
        db.execute(
            "INSERT OR REPLACE INTO record_tables (name, integration, stream, columns) "
            "VALUES (?, ?, ?, ?)",
            [self.name, integration, stream, orjson.dumps(self.columns).decode()],
        )

    def _fill(
        self, db: sqlite_utils.Database, column: str, getter: Callable[[dict[str, Any]], Any]
    ) -> None:
        """Fill a newly added column from the stored records (once, when it is added), so
        queries on it see every record, not only those written since."""
        rows = db.execute(f"SELECT rowid, data FROM [{self.name}]").fetchall()
        db.conn.executemany(
            f"UPDATE [{self.name}] SET [{column}] = ? WHERE rowid = ?",
            [(_column_value(getter(orjson.loads(data))), rowid) for rowid, data in rows],
        )

    def rows(self, records: Iterable[dict[str, Any]]) -> dict[str, Row]:
        """Turn provider records into table rows keyed by id (the last of a duplicate wins).

        Build them before handing a batch to the writer thread: the rows are a snapshot the
        plugin cannot change afterwards, and the writer thread only runs SQL.
        """
        key, getters, dumps, plain = self._key, self._getters, orjson.dumps, _PLAIN
        out: dict[str, Row] = {}
        for record in records:
            raw_id = key(record)
            if raw_id is None or raw_id == "":
                raise ValueError(f"{self.name}: a record has no id: {str(record)[:200]}")
            record_id = str(raw_id)
            out[record_id] = (
                record_id,
                *[v if type(v := get(record)) in plain else _column_value(v) for get in getters],
                dumps(record).decode(),
            )
        return out

    def upsert(
        self,
        db: sqlite_utils.Database,
        connection_id: str,
        rows: dict[str, Row],
        now: str,
        gen: int | None,
    ) -> BatchCounts:
        """Upsert ``rows`` (from :meth:`rows`) stamped ``now`` and generation ``gen``; call
        inside the batch's transaction.

        Rows go in statements of many rows each: SQLite then works through a whole chunk
        without the GIL, while the event loop parses the next page (a statement per row would
        take the GIL back after every row). Counting them takes one more statement per batch
        (the ids as one JSON parameter), and a full sync's generation one more.
        """
        if not rows:
            return BatchCounts()
        conn = db.conn
        ids = orjson.dumps(list(rows)).decode()
        existing = conn.execute(self._existing_sql, [connection_id, ids]).fetchone()[0]
        changed = 0
        values = list(rows.values())
        sizes = chunk_sizes(self._width, variable_limit(conn), reserved=3)
        for start, size in chunks(len(values), sizes):
            params = [
                connection_id,
                now,
                gen,
                *itertools.chain.from_iterable(values[start : start + size]),
            ]
            changed += conn.execute(self._upsert_sql(size), params).rowcount
        if gen is not None:
            conn.execute(self._seen_sql, [connection_id, ids, gen])
        created = len(values) - existing
        return BatchCounts(created=created, updated=changed - created)

    def _upsert_sql(self, rows: int) -> str:
        """The statement upserting ``rows`` rows. Its parameters: ``?1`` the connection,
        ``?2`` the time, ``?3`` the generation, then each row's values (id, indexed columns,
        data) in turn."""
        cached = self._cache.get(rows)
        if cached is not None:
            return cached
        width = self._width
        tuples = ", ".join(
            "(?1, " + "".join(f"?{n}, " for n in range(first, first + width)) + "?2, ?3)"
            for first in range(4, 4 + rows * width, width)
        )
        self._cache[rows] = sql = f"{self._insert} VALUES {tuples} {self._on_conflict}"
        return sql

    def write(
        self,
        db: sqlite_utils.Database,
        connection_id: str,
        rows: dict[str, Row],
        deleted: Sequence[str],
        now: str,
        gen: int | None,
    ) -> BatchCounts:
        """Upsert ``rows`` (from :meth:`rows`) then tombstone ``deleted`` ids; call inside
        one transaction."""
        counts = self.upsert(db, connection_id, rows, now, gen)
        if deleted:
            counts.deleted += self.tombstone(db, connection_id, deleted, now)
        return counts

    def tombstone(
        self, db: sqlite_utils.Database, connection_id: str, ids: Sequence[str], now: str
    ) -> int:
        """Mark ``ids`` deleted; return how many live records that tombstoned."""
        total = 0
        for start in range(0, len(ids), CHUNK):
            chunk = [str(i) for i in ids[start : start + CHUNK]]
            marks = ",".join("?" * len(chunk))
            cursor = db.conn.execute(
                f"UPDATE [{self.name}] SET deleted_at = ?, synced_at = ? "
                f"WHERE connection_id = ? AND deleted_at IS NULL AND id IN ({marks})",
                [now, now, connection_id, *chunk],
            )
            total += cursor.rowcount
        return total

    def sweep(
        self,
        db: sqlite_utils.Database,
        connection_id: str,
        gen: int,
        now: str,
        rows: tuple[int, int] | None = None,
    ) -> int:
        """Tombstone live records a completed full sync (generation ``gen``) did not see.

        :param rows: only rows whose rowid is in ``(low, high]`` (a sweep in parts).
        """
        part, bounds = ("AND rowid > ? AND rowid <= ?", list(rows)) if rows else ("", [])
        cursor = db.conn.execute(
            f"UPDATE [{self.name}] SET deleted_at = ?, synced_at = ? "
            "WHERE connection_id = ? AND deleted_at IS NULL AND (_gen IS NULL OR _gen != ?) "
            f"{part}",
            [now, now, connection_id, gen, *bounds],
        )
        return cursor.rowcount

    def last_rowid(self, db: sqlite_utils.Database) -> int:
        """The highest rowid of the table (0 when empty)."""
        row = db.conn.execute(f"SELECT max(rowid) FROM [{self.name}]").fetchone()
        return int(row[0] or 0)

    def count(self, db: sqlite_utils.Database, connection_id: str) -> int:
        """Live (not tombstoned) records of this stream for one connection."""
        if self.name not in db.table_names():
            return 0
        row = db.conn.execute(
            f"SELECT count(*) FROM [{self.name}] WHERE connection_id = ? AND deleted_at IS NULL",
            [connection_id],
        ).fetchone()
        return int(row[0])
