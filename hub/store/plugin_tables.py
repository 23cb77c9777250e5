"""Plugin tables: each plugin's own tables, in a namespace no other plugin (nor the core) shares.

A plugin names its tables by short names (``notes``: a lowercase letter, then lowercase
letters, digits and single underscores). The physical table is ``plugin_<plugin>__<table>``,
``<plugin>`` being the plugin's registered name lowercased, every run of other characters made
one ``_``. Method arguments take the short name; SQL text writes it in braces, ``{notes}``.

Every statement of a plugin runs under an SQLite authorizer that refuses any table outside the
plugin's namespace, schema changes outside a migration, writes outside a transaction,
temporary objects, ``ATTACH``, PRAGMAs other than table and index introspection, and
transaction control (the hub begins and ends every transaction). Reads run on the store's
reader threads; every write call is one transaction on its writer thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from hub.errors import PluginTableError

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

TABLE_RE = re.compile(r"^[a-z](?:_?[a-z0-9])*$")
"""A plugin's short table name: never ``__`` nor a trailing ``_``, so the physical name
``plugin_<plugin>__<table>`` splits one way only."""
COLUMN_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
PLACEHOLDER_RE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
INTROSPECTION_PRAGMAS = frozenset(
    {"table_info", "table_xinfo", "index_list", "index_info", "index_xinfo", "foreign_key_list"}
)
SCHEMA_TABLES = frozenset({"sqlite_master", "sqlite_schema"})
"""Written by SQLite itself while a statement creates, alters or drops an object."""

_ALWAYS = frozenset({sqlite3.SQLITE_SELECT, sqlite3.SQLITE_FUNCTION, sqlite3.SQLITE_RECURSIVE})
_WRITES = frozenset({sqlite3.SQLITE_INSERT, sqlite3.SQLITE_UPDATE, sqlite3.SQLITE_DELETE})
_DDL_NAMES: dict[int, tuple[int, ...]] = {
    # action -> which of (arg1, arg2) name an object of the plugin's namespace
    sqlite3.SQLITE_CREATE_TABLE: (0,),
    sqlite3.SQLITE_CREATE_VIEW: (0,),
    sqlite3.SQLITE_CREATE_INDEX: (0, 1),
    sqlite3.SQLITE_CREATE_TRIGGER: (0, 1),
    sqlite3.SQLITE_DROP_TABLE: (0,),
    sqlite3.SQLITE_DROP_VIEW: (0,),
    sqlite3.SQLITE_DROP_INDEX: (0, 1),
    sqlite3.SQLITE_DROP_TRIGGER: (0, 1),
    sqlite3.SQLITE_ALTER_TABLE: (1,),
    sqlite3.SQLITE_REINDEX: (0,),
    sqlite3.SQLITE_ANALYZE: (0,),
}


@dataclass(frozen=True)
class Namespace:
    """The physical names of one plugin's tables."""

    plugin: str
    """The plugin's name made an identifier (``my-plugin`` -> ``my_plugin``)."""

    @classmethod
    def of(cls, plugin_name: str) -> Namespace:
        """The namespace of the plugin registered as ``plugin_name``.

        :raise PluginTableError: the name has no letter or digit to build one from.
        """
        name = re.sub(r"[^a-z0-9]+", "_", plugin_name.lower()).strip("_")
        if not name:
            raise PluginTableError(f"plugin name {plugin_name!r} cannot name tables")
        return cls(name)

    @property
    def prefix(self) -> str:
        """What every physical name of the plugin starts with."""
        return f"plugin_{self.plugin}__"

    def table(self, name: str) -> str:
        """The physical name of the plugin's table (or index, view, trigger) ``name``.

        :raise PluginTableError: ``name`` is not a short table name.
        """
        if not isinstance(name, str) or not TABLE_RE.match(name):
            raise PluginTableError(
                f"{name!r} is not a table name (a lowercase letter, then lowercase letters, "
                "digits and single underscores)"
            )
        return self.prefix + name

    def quoted(self, name: str) -> str:
        """:meth:`table`, quoted for SQL."""
        return f'"{self.table(name)}"'

    def resolve(self, sql: str) -> str:
        """``sql`` with every ``{name}`` replaced by the quoted physical name."""
        return PLACEHOLDER_RE.sub(lambda match: self.quoted(match.group(1)), sql)

    def owns(self, physical: str) -> bool:
        """True if ``physical`` (any case: SQLite's names are case-insensitive) is the plugin's."""
        lowered = physical.lower()
        return lowered.startswith(self.prefix) and bool(TABLE_RE.match(lowered[len(self.prefix) :]))


class Guard:
    """The SQLite authorizer of one plugin's statements; remembers why it refused one."""

    def __init__(self, namespace: Namespace, write: bool, ddl: bool) -> None:
        self.namespace = namespace
        self.write = write
        self.ddl = ddl
        self.refusal: str | None = None

    def __call__(
        self, action: int, arg1: str | None, arg2: str | None, db: str | None, _: str | None
    ) -> int:
        """Allow or deny one step of a statement being prepared (SQLite's callback)."""
        reason = self._refusal(action, arg1, arg2, db)
        if reason is None:
            return sqlite3.SQLITE_OK
        if self.refusal is None:
            self.refusal = reason
        return sqlite3.SQLITE_DENY

    def _refusal(
        self, action: int, arg1: str | None, arg2: str | None, db: str | None
    ) -> str | None:
        if action in _ALWAYS:
            return None
        if action == sqlite3.SQLITE_ALTER_TABLE:  # (database, table), then a column maybe
            db = arg1
        if self.ddl and arg1 == "sqlite_temp_master":  # SQLite's own step of a rename
            return None
        if db not in (None, "main"):
            return f"only the main database is reachable, not {db!r}"
        if action == sqlite3.SQLITE_READ:
            return None if arg1 and arg1.lower().startswith("sqlite_") else self._outside(arg1)
        if action in _WRITES:
            if not self.write:
                return "a read cannot write: use upsert, delete or transaction"
            if arg1 in SCHEMA_TABLES:
                return None if self.ddl else "schema changes belong in a migration"
            if (
                self.ddl and arg1 == "sqlite_sequence"
            ):  # renaming or dropping an AUTOINCREMENT table
                return None
            return self._outside(arg1)
        if action == sqlite3.SQLITE_PRAGMA:
            if arg1 in INTROSPECTION_PRAGMAS and arg2 is not None:
                return self._outside(arg2)
            return f"PRAGMA {arg1} is not allowed"
        if action in _DDL_NAMES:
            if not self.ddl:
                return "schema changes belong in a migration"
            names = [(arg1, arg2)[i] for i in _DDL_NAMES[action]]
            # SQLite's own objects (autoindexes, sqlite_sequence): nobody else may name one so
            names = [n for n in names if n and not n.startswith("sqlite_")]
            for reason in map(self._outside, names):
                if reason:
                    return reason
            return None
        return "transactions, savepoints, ATTACH and temporary or virtual tables are not allowed"

    def _outside(self, name: str | None) -> str | None:
        if name is not None and self.namespace.owns(name):
            return None
        return (
            f"{name!r} is not one of plugin {self.namespace.plugin!r}'s tables "
            "(write your own as {name} in SQL)"
        )


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
            result = fn(tx)
        if asyncio.iscoroutine(result):
            result.close()
            raise TypeError("a transaction function must be synchronous (it runs on a thread)")
        return result

    async def _read(self, fn: Callable[[TableReader], T]) -> T:
        def read(db: sqlite_utils.Database) -> T:
            with session(db, self.namespace, TableReader) as reader:
                return fn(reader)

        return await self._db.read(read)
