"""Plugin tables: reading and writing each plugin's own tables, in its own namespace.

Method arguments take a table's short name (``notes``); SQL text writes it in braces
(``{notes}``), see :mod:`hub.store.plugin_namespace`. Every statement runs under the plugin's
:class:`~hub.store.plugin_namespace.Guard`. Reads run on the store's reader threads; every
write call is one transaction on its writer thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from hub.errors import PluginTableError
from hub.store.plugin_namespace import Guard, Namespace

if TYPE_CHECKING:
    import sqlite_utils

    from hub.store.database import Database

T = TypeVar("T")
R = TypeVar("R", bound="TableReader")

Value = str | int | float | bytes | None
"""A value SQLite stores as it is (JSON goes in as text: ``orjson.dumps(...).decode()``)."""
Key = Value | tuple[Value, ...]
"""A primary key: one value, or a tuple in the key's column order for a compound key."""
Row = dict[str, Any]
Params = Sequence[Any] | Mapping[str, Any]

COLUMN_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class TableReader:
    """Reads of one plugin's tables on one connection, under its :class:`Guard`."""

    def __init__(self, conn: sqlite3.Connection, namespace: Namespace, guard: Guard) -> None:
        self._conn = conn
        self.namespace = namespace
        self._guard = guard

    def get(self, table: str, key: Key) -> Row | None:
        """The row of ``table`` whose primary key is ``key``, or None.

        :raise PluginTableError: no such table, it has no primary key, or ``key`` has the
            wrong number of parts.
        """
        where, params = self._key_match(table, key)
        rows = self._run(f"SELECT * FROM {self.namespace.quoted(table)} WHERE {where}", params)
        return rows[0] if rows else None

    def query(
        self,
        table: str,
        where: str = "",
        params: Params = (),
        *,
        order_by: str = "",
        limit: int | None = None,
    ) -> list[Row]:
        """Rows of ``table`` matching ``where`` (an SQL condition; values always as ``?`` or
        ``:name`` with ``params``), sorted by ``order_by`` (SQL), at most ``limit``."""
        sql = f"SELECT * FROM {self.namespace.quoted(table)}"
        if where:
            sql += f" WHERE {where}"
        if order_by:
            sql += f" ORDER BY {order_by}"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return self._run(self.namespace.resolve(sql), params)

    def tables(self) -> list[str]:
        """The short names of the plugin's tables."""
        rows = self._run("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        prefix = len(self.namespace.prefix)
        return [str(r["name"])[prefix:] for r in rows if self.namespace.owns(str(r["name"]))]

    def _primary_key(self, table: str) -> list[str]:
        columns = self._run(f"PRAGMA table_info({self.namespace.quoted(table)})")
        if not columns:
            raise PluginTableError(f"plugin {self.namespace.plugin!r} has no table {table!r}")
        keyed = sorted((c for c in columns if c["pk"]), key=lambda c: int(c["pk"]))
        return [str(c["name"]) for c in keyed]

    def _key_match(self, table: str, key: Key) -> tuple[str, tuple[Value, ...]]:
        primary_key = self._primary_key(table)
        if not primary_key:
            raise PluginTableError(f"table {table!r} has no primary key")
        values = key if isinstance(key, tuple) else (key,)
        if len(values) != len(primary_key):
            raise PluginTableError(
                f"table {table!r} is keyed by {', '.join(primary_key)}: {key!r} does not match"
            )
        return " AND ".join(f'"{column}" = ?' for column in primary_key), values

    def _run(self, sql: str, params: Params = ()) -> list[Row]:
        self._guard.refusal = None
        try:
            cursor = self._conn.execute(sql, params)
        except sqlite3.DatabaseError:
            if self._guard.refusal is not None:
                raise PluginTableError(self._guard.refusal) from None
            raise
        if cursor.description is None:
            return []
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


class TableSession(TableReader):
    """One transaction over one plugin's tables, on the store's writer thread.

    :meth:`PluginTables.transaction` passes one to its function, and so does a migration
    whose ``apply`` is a callable (where schema changes are allowed too).
    """

    def upsert(
        self, table: str, rows: Iterable[Mapping[str, Value]], pk: str | Sequence[str] = ()
    ) -> int:
        """Insert ``rows`` (column -> value), or update the columns they give where a row with
        the same ``pk`` (default: the table's primary key) exists.

        :return: the number of rows given.
        """
        conflict = [pk] if isinstance(pk, str) else list(pk) or self._primary_key(table)
        if not conflict:
            raise PluginTableError(f"table {table!r} has no primary key: pass pk")
        statements: dict[tuple[str, ...], str] = {}
        count = 0
        for row in rows:
            columns = tuple(row)
            sql = statements.get(columns)
            if sql is None:
                sql = statements[columns] = self._upsert_sql(table, columns, conflict)
            self._run(sql, list(row.values()))
            count += 1
        return count

    def delete(self, table: str, keys: Iterable[Key]) -> int:
        """Delete the rows of ``table`` whose primary keys are ``keys``.

        :return: how many rows existed and were deleted.
        """
        deleted = 0
        for key in keys:
            where, params = self._key_match(table, key)
            self._run(f"DELETE FROM {self.namespace.quoted(table)} WHERE {where}", params)
            deleted += self._conn.execute("SELECT changes()").fetchone()[0]
        return deleted

    def execute(self, sql: str, params: Params = ()) -> list[Row]:
        """Run one SQL statement naming the plugin's tables as ``{name}``; values always as
        ``?`` or ``:name`` with ``params``.

        :return: the rows it produced (none for most writes).
        """
        return self._run(self.namespace.resolve(sql), params)

    def _upsert_sql(self, table: str, columns: tuple[str, ...], conflict: list[str]) -> str:
        for column in (*columns, *conflict):
            if not COLUMN_RE.match(column):
                raise PluginTableError(f"{column!r} is not a column name")
        missing = [column for column in conflict if column not in columns]
        if missing:
            raise PluginTableError(f"an upsert into {table!r} needs {', '.join(missing)}")
        updates = [f'"{c}" = excluded."{c}"' for c in columns if c not in conflict]
        action = f"DO UPDATE SET {', '.join(updates)}" if updates else "DO NOTHING"
        names = ", ".join(f'"{c}"' for c in columns)
        target = ", ".join(f'"{c}"' for c in conflict)
        values = ", ".join("?" for _ in columns)
        return (
            f"INSERT INTO {self.namespace.quoted(table)} ({names}) VALUES ({values}) "
            f"ON CONFLICT ({target}) {action}"
        )


@contextlib.contextmanager
def session(
    db: sqlite_utils.Database, namespace: Namespace, kind: type[R], ddl: bool = False
) -> Iterator[R]:
    """A reader or session of ``namespace`` on ``db``'s connection, guarded while it is open."""
    guard = Guard(namespace, write=issubclass(kind, TableSession), ddl=ddl)
    db.conn.set_authorizer(guard)
    try:
        yield kind(db.conn, namespace, guard)
    finally:
        db.conn.set_authorizer(None)


def call_in_session(fn: Callable[[TableSession], T], tx: TableSession) -> T:
    """``fn(tx)``, refusing an ``async`` function: it would return before doing anything.

    :raise TypeError: ``fn`` returned a coroutine.
    """
    result = fn(tx)
    if asyncio.iscoroutine(result):
        result.close()
        raise TypeError("a table function must be synchronous (it runs on the writer thread)")
    return result


class PluginTables:
    """One plugin's tables, as ``hub.tables(__name__)`` returns them.

    Table names are the plugin's short names (``notes``), never the physical ones. Reads run
    on a reader thread; each write call (``upsert``, ``delete``, ``transaction``) is one
    transaction on the store's writer thread, so the event loop never waits for SQLite.
    """

    def __init__(self, db: Database, namespace: Namespace) -> None:
        self._db = db
        self.namespace = namespace

    async def get(self, table: str, key: Key) -> Row | None:
        """The row of ``table`` whose primary key is ``key`` (a tuple for a compound key)."""
        return await self._read(lambda reader: reader.get(table, key))

    async def query(
        self,
        table: str,
        where: str = "",
        params: Params = (),
        *,
        order_by: str = "",
        limit: int | None = None,
    ) -> list[Row]:
        """Rows of ``table`` matching ``where`` (SQL, e.g. ``"status = ?"``, values only in
        ``params``), sorted by ``order_by`` (SQL), at most ``limit``; all rows by default."""
        return await self._read(
            lambda reader: reader.query(table, where, params, order_by=order_by, limit=limit)
        )

    async def upsert(
        self, table: str, rows: Iterable[Mapping[str, Value]], pk: str | Sequence[str] = ()
    ) -> int:
        """Insert or update ``rows`` by ``pk`` (default: the table's primary key) in one
        transaction; a row updates only the columns it gives. Returns the number of rows."""
        batch = [dict(row) for row in rows]
        return await self.transaction(lambda tx: tx.upsert(table, batch, pk))

    async def delete(self, table: str, keys: Iterable[Key]) -> int:
        """Delete the rows with these primary keys in one transaction; returns how many."""
        batch = list(keys)
        return await self.transaction(lambda tx: tx.delete(table, batch))

    async def transaction(self, fn: Callable[[TableSession], T]) -> T:
        """Run ``fn(session)`` on the writer thread in one transaction and return its result.

        ``fn`` is synchronous (it runs on another thread: it must not touch the event loop);
        an exception it raises rolls everything back and is raised here.
        """
        return await self._db.write(self._in_session, fn)

    def _in_session(self, db: sqlite_utils.Database, fn: Callable[[TableSession], T]) -> T:
        with session(db, self.namespace, TableSession) as tx:
            return call_in_session(fn, tx)

    async def _read(self, fn: Callable[[TableReader], T]) -> T:
        def read(db: sqlite_utils.Database) -> T:
            with session(db, self.namespace, TableReader) as reader:
                return fn(reader)

        return await self._db.read(read)
