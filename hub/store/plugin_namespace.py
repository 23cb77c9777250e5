"""The names of one plugin's tables, and the SQLite authorizer that keeps its SQL inside them.

A plugin names its tables by short names (``notes``: a lowercase letter, then lowercase
letters, digits and single underscores). The physical table is ``plugin_<plugin>__<table>``,
``<plugin>`` being the plugin's registered name lowercased, every run of other characters made
one ``_``. SQL text writes a short name in braces, ``{notes}``.

The :class:`Guard` refuses any table outside the plugin's namespace, schema changes outside a
migration, writes outside a transaction, temporary objects, ``ATTACH``, PRAGMAs other than
table and index introspection, and transaction control (the hub begins and ends every
transaction).
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass

from hub.errors import PluginTableError

TABLE_RE = re.compile(r"^[a-z](?:_?[a-z0-9])*$")
"""A plugin's short table name: never ``__`` nor a trailing ``_``, so the physical name
``plugin_<plugin>__<table>`` splits one way only."""
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
