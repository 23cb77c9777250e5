"""Applying one plugin's table migrations, and reading what every plugin's tables are at.

Each version runs once, in order, in its own transaction on the writer thread, and is recorded
in ``_plugin_migrations`` in that transaction. A failing version is rolled back and recorded
with its one-line reason (so ``advisoros-hub plugins`` can show it) until a later start
applies it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hub.errors import PluginTableError
from hub.model import Migration
from hub.store.clock import utcnow
from hub.store.plugin_namespace import Namespace
from hub.store.plugin_tables import TableSession, call_in_session, session

if TYPE_CHECKING:
    import sqlite_utils

    from hub.store.database import Database


@dataclass(frozen=True)
class SchemaState:
    """What one plugin's tables are at in the database."""

    version: int
    """The last version applied (0: none)."""
    tables: tuple[str, ...]
    """The short names of its tables."""
    error: str | None = None
    """Why a later version failed at the last start, if one did."""


def check(migrations: object) -> list[Migration]:
    """The ``migrations`` hook's result, validated.

    :raise PluginTableError: not a sequence of :class:`Migration`, a version below 1 or out of
        order, a description that is not one line, or an ``apply`` that is neither SQL nor
        callable.
    """
    if not isinstance(migrations, Sequence) or isinstance(migrations, str):
        raise PluginTableError(f"migrations must return a list, not {type(migrations).__name__}")
    previous = 0
    for migration in migrations:
        if not isinstance(migration, Migration):
            raise PluginTableError(f"not a Migration: {migration!r}")
        if not isinstance(migration.version, int) or migration.version <= previous:
            raise PluginTableError(
                f"migration versions must start at 1 and increase: {migration.version!r} "
                f"after {previous}"
            )
        description = migration.description
        if not isinstance(description, str) or not description.strip() or "\n" in description:
            raise PluginTableError(f"migration {migration.version}: description must be one line")
        if not (isinstance(migration.apply, str) or callable(migration.apply)):
            raise PluginTableError(f"migration {migration.version}: apply is not SQL or callable")
        previous = migration.version
    return list(migrations)


async def migrate(db: Database, namespace: Namespace, migrations: Sequence[Migration]) -> list[int]:
    """Apply the versions of ``migrations`` the database lacks, each in its own transaction.

    :return: the versions applied now.
    :raise PluginTableError: one line: which version failed and why (it was rolled back and
        recorded), or the database is at a version the plugin no longer declares.
    """
    applied = await db.read(_version, namespace.plugin)
    declared = migrations[-1].version if migrations else 0
    if applied > declared:
        raise PluginTableError(
            f"its tables are at version {applied} but it declares only up to {declared} "
            "(an older release of the plugin?)"
        )
    done = []
    for migration in migrations:
        if migration.version <= applied:
            continue
        try:
            if await db.write(_apply, namespace, migration):
                done.append(migration.version)
        except Exception as exc:
            reason = _one_line(
                f"migration {migration.version} ({migration.description}) failed: "
                f"{type(exc).__name__}: {exc}"
            )
            await db.write(_record, namespace.plugin, migration, None, reason)
            raise PluginTableError(reason) from exc
    return done


def _apply(db: sqlite_utils.Database, namespace: Namespace, migration: Migration) -> bool:
    if _version(db, namespace.plugin) >= migration.version:
        return False  # another process applied it meanwhile
    before = _foreign_names(db, namespace)
    with session(db, namespace, TableSession, ddl=True) as tx:
        if isinstance(migration.apply, str):
            for statement in split_statements(migration.apply):
                tx.execute(statement)
        else:
            call_in_session(migration.apply, tx)
    escaped = _foreign_names(db, namespace) - before
    if escaped:  # a rename is the one statement whose new name the authorizer is not told
        raise PluginTableError(f"{', '.join(sorted(escaped))} would be outside its tables")
    _record(db, namespace.plugin, migration, utcnow(), None)
    return True


def _record(
    db: sqlite_utils.Database,
    plugin: str,
    migration: Migration,
    applied_at: str | None,
    error: str | None,
) -> None:
    db.execute(
        "INSERT OR REPLACE INTO _plugin_migrations "
        "(plugin, version, description, applied_at, error) VALUES (?, ?, ?, ?, ?)",
        [plugin, migration.version, migration.description, applied_at, error],
    )


def _version(db: sqlite_utils.Database | sqlite3.Connection, plugin: str) -> int:
    row = db.execute(
        "SELECT max(version) FROM _plugin_migrations WHERE plugin = ? AND applied_at IS NOT NULL",
        [plugin],
    ).fetchone()
    return int(row[0] or 0)


def _foreign_names(db: sqlite_utils.Database, namespace: Namespace) -> set[str]:
    names = (row[0] for row in db.execute("SELECT name FROM sqlite_master").fetchall())
    return {name for name in names if not namespace.owns(name) and not name.startswith("sqlite_")}


def split_statements(sql: str) -> list[str]:
    """The statements of an SQL script, each complete (``;`` inside strings, comments and
    trigger bodies does not split); ``executescript`` would commit the transaction."""
    statements, pending = [], ""
    for piece in sql.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \t\r\n;"):
                statements.append(pending.strip())
            pending = ""
    if pending.strip(" \t\r\n;"):
        statements.append(pending.rstrip(";").strip())
    return statements


def schema_states(conn: sqlite3.Connection | sqlite_utils.Database) -> dict[str, SchemaState]:
    """Every plugin namespace recorded in the database: its version, tables and last failure."""
    if not conn.execute("SELECT 1 FROM sqlite_master WHERE name = '_plugin_migrations'").fetchone():
        return {}
    rows: list[Any] = conn.execute(
        "SELECT plugin, version, applied_at, error FROM _plugin_migrations ORDER BY plugin, version"
    ).fetchall()
    names = [
        str(row[0])
        for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
    ]
    states = {}
    for plugin in dict.fromkeys(str(row[0]) for row in rows):
        namespace = Namespace(plugin)
        own = [row for row in rows if row[0] == plugin]
        version = max((int(row[1]) for row in own if row[2] is not None), default=0)
        errors = [str(row[3]) for row in own if row[3] is not None and int(row[1]) > version]
        tables = tuple(n[len(namespace.prefix) :] for n in names if namespace.owns(n))
        states[plugin] = SchemaState(version, tables, errors[0] if errors else None)
    return states


def stored_states(path: Path) -> dict[str, SchemaState]:
    """:func:`schema_states` of the database at ``path``, opened read-only (none: empty)."""
    if not path.is_file():
        return {}
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error:
        return {}
    try:
        return schema_states(conn)
    except sqlite3.DatabaseError:
        return {}
    finally:
        conn.close()


def _one_line(text: str) -> str:
    return " ".join(text.split())
