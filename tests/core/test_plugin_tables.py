"""Plugin tables: namespaces, migrations at start, failures, the writer thread, the CLI."""

from __future__ import annotations

import os
import sys
import threading
import types
from collections.abc import Sequence

import pytest

from hub import hookimpl
from hub.cli import main
from hub.errors import PluginTableError
from hub.model import Migration
from hub.store.plugin_tables import TableSession
from hub.testing import build_hub
from tests.conftest import ledger_config

NOTES_V1 = Migration(1, "notes", "CREATE TABLE {notes} (id TEXT PRIMARY KEY, body TEXT)")
WRITER = "hub-store-writer"


def table_plugin(name: str, *migrations: Migration) -> types.ModuleType:
    """A plugin module called ``name`` whose ``migrations`` hook returns ``migrations``."""
    module = types.ModuleType(name)

    def declare() -> Sequence[Migration]:
        return migrations

    module.migrations = hookimpl(declare)  # type: ignore[attr-defined]
    return module


async def test_two_plugins_with_same_named_tables_do_not_collide(make_hub):
    hub = await make_hub(plugins=[table_plugin("alpha", NOTES_V1), table_plugin("beta", NOTES_V1)])
    alpha, beta = hub.tables("alpha"), hub.tables("beta")
    await alpha.upsert("notes", [{"id": "1", "body": "alpha's"}])
    await beta.upsert("notes", [{"id": "1", "body": "beta's"}, {"id": "2", "body": "more"}])

    assert await alpha.get("notes", "1") == {"id": "1", "body": "alpha's"}
    assert await beta.get("notes", "1") == {"id": "1", "body": "beta's"}
    assert len(await alpha.query("notes")) == 1
    assert [r["id"] for r in await beta.query("notes", "body = ?", ["more"])] == ["2"]
    names = await hub.store.db.read(lambda db: db.table_names())
    assert {"plugin_alpha__notes", "plugin_beta__notes"} <= set(names)
    assert await beta.delete("notes", ["1", "missing"]) == 1
    assert await alpha.get("notes", "1") is not None


async def test_a_submodule_name_finds_its_plugin_and_a_stranger_is_refused(make_hub):
    hub = await make_hub(plugins=[table_plugin("alpha", NOTES_V1)])
    assert hub.tables("alpha.tables").namespace == hub.tables("alpha").namespace
    with pytest.raises(LookupError):
        hub.tables("alphabet")


async def test_an_upgrade_across_two_versions_applies_both_in_order_and_keeps_data(hub_config):
    order: list[int] = []

    def tag_old_rows(tx: TableSession) -> None:
        order.append(3)
        tx.execute("UPDATE {notes} SET tag = ?", ["from v1"])

    v2 = Migration(2, "a tag per note", "ALTER TABLE {notes} ADD COLUMN tag TEXT")
    v3 = Migration(3, "tag the notes of v1", tag_old_rows)

    hub = build_hub(hub_config(), [table_plugin("alpha", NOTES_V1)])
    await hub.start()
    await hub.tables("alpha").upsert("notes", [{"id": "1", "body": "kept"}])
    await hub.stop()

    hub = build_hub(hub_config(), [table_plugin("alpha", NOTES_V1, v2, v3)])
    await hub.start()
    try:
        assert await hub.tables("alpha").get("notes", "1") == {
            "id": "1",
            "body": "kept",
            "tag": "from v1",
        }
        rows = await hub.store.db.read(
            lambda db: db.execute(
                "SELECT version, applied_at IS NOT NULL FROM _plugin_migrations "
                "WHERE plugin = 'alpha' ORDER BY applied_at, version"
            ).fetchall()
        )
        assert [tuple(r) for r in rows] == [(1, 1), (2, 1), (3, 1)]
        assert order == [3]
    finally:
        await hub.stop()

    hub = build_hub(hub_config(), [table_plugin("alpha", NOTES_V1, v2, v3)])
    await hub.start()  # nothing is applied twice
    await hub.stop()
    assert order == [3]


async def test_a_failing_migration_disables_its_plugin_only(make_hub):
    broken = table_plugin(
        "beta",
        NOTES_V1,
        Migration(2, "a typo", "ALTER TABLE {notes} ADD COLUMN"),
    )
    hub = await make_hub(plugins=[table_plugin("alpha", NOTES_V1), broken])

    (failed,) = [info for info in hub.plugins.failed if info.name == "beta"]
    assert failed.error is not None and "\n" not in failed.error
    assert failed.error.startswith("tables: migration 2 (a typo) failed: OperationalError")
    assert hub.plugins.pm.get_plugin("beta") is None
    with pytest.raises(LookupError):
        hub.tables("beta")
    await hub.tables("alpha").upsert("notes", [{"id": "1", "body": "fine"}])
    assert await hub.tables("alpha").get("notes", "1") is not None
    versions = await hub.store.db.read(
        lambda db: db.execute(
            "SELECT version, applied_at IS NOT NULL, error IS NOT NULL FROM _plugin_migrations "
            "WHERE plugin = 'beta' ORDER BY version"
        ).fetchall()
    )
    assert [tuple(v) for v in versions] == [(1, 1, 0), (2, 0, 1)]  # v1 stays applied


async def _async_apply(tx: TableSession) -> None:
    tx.execute("CREATE TABLE {notes} (id TEXT PRIMARY KEY)")


@pytest.mark.parametrize(
    "migrations, reason",
    [
        ((Migration(0, "zero", "SELECT 1"),), "must start at 1"),
        ((NOTES_V1, NOTES_V1), "must start at 1 and increase: 1 after 1"),
        ((Migration(1, "two\nlines", "SELECT 1"),), "description must be one line"),
        ((Migration(1, None, "SELECT 1"),), "description must be one line"),
        ((Migration(1, "async", _async_apply),), "TypeError: a table function must be synchronous"),
        ((Migration(1, "outside", "CREATE TABLE evil (a)"),), "'evil' is not one of plugin"),
        ((Migration(1, "core", "DROP TABLE connections"),), "'connections' is not one of"),
        (
            (NOTES_V1, Migration(2, "rename away", "ALTER TABLE {notes} RENAME TO evil")),
            "evil would be outside its tables",
        ),
    ],
)
async def test_a_bad_migration_list_disables_the_plugin(make_hub, migrations, reason):
    hub = await make_hub(plugins=[table_plugin("alpha", *migrations)])
    (failed,) = hub.plugins.failed
    assert failed.name == "alpha" and reason in (failed.error or "")
    names = await hub.store.db.read(lambda db: db.table_names())
    assert "evil" not in names and "connections" in names


async def test_a_downgraded_plugin_is_disabled(hub_config):
    hub = build_hub(hub_config(), [table_plugin("alpha", NOTES_V1, Migration(2, "b", "SELECT 1"))])
    await hub.start()
    await hub.stop()
    hub = build_hub(hub_config(), [table_plugin("alpha", NOTES_V1)])
    await hub.start()
    try:
        (failed,) = hub.plugins.failed
        assert "at version 2 but it declares only up to 1" in (failed.error or "")
    finally:
        await hub.stop()


async def test_writes_and_migrations_run_on_the_writer_thread(make_hub):
    threads: list[str] = []

    def create(tx: TableSession) -> None:
        threads.append(threading.current_thread().name)
        tx.execute("CREATE TABLE {notes} (id TEXT PRIMARY KEY, body TEXT)")

    hub = await make_hub(plugins=[table_plugin("alpha", Migration(1, "notes", create))])
    tables = hub.tables("alpha")

    def write_two(tx: TableSession) -> int:
        threads.append(threading.current_thread().name)
        tx.upsert("notes", [{"id": "1", "body": "a"}])
        return tx.upsert("notes", [{"id": "2", "body": "b"}])

    assert await tables.transaction(write_two) == 1
    assert threads == [WRITER, WRITER]

    def half_then_fail(tx: TableSession) -> None:
        tx.upsert("notes", [{"id": "3", "body": "c"}])
        raise RuntimeError("rolled back")

    with pytest.raises(RuntimeError):
        await tables.transaction(half_then_fail)
    assert [r["id"] for r in await tables.query("notes", order_by="id")] == ["1", "2"]


@pytest.mark.parametrize(
    "call",
    [
        lambda t: t.get("../notes", "1"),
        lambda t: t.get("Notes", "1"),
        lambda t: t.get("notes__x", "1"),
        lambda t: t.query("notes", "id IN (SELECT id FROM connections)"),
        lambda t: t.query("notes", "1 = 1 UNION SELECT key, title FROM connections"),
        lambda t: t.query("notes", order_by="(SELECT count(*) FROM plugin_beta__notes)"),
        lambda t: t.upsert("notes", [{'id"; DROP TABLE connections; --': "x"}]),
        lambda t: t.transaction(lambda tx: tx.execute("SELECT * FROM connections")),
        lambda t: t.transaction(lambda tx: tx.execute("DELETE FROM plugin_beta__notes")),
        lambda t: t.transaction(lambda tx: tx.execute("CREATE TABLE {later} (a)")),
        lambda t: t.transaction(lambda tx: tx.execute("ATTACH ':memory:' AS other")),
        lambda t: t.transaction(lambda tx: tx.execute("PRAGMA writable_schema = 1")),
        lambda t: t.transaction(lambda tx: tx.execute("COMMIT")),
    ],
)
async def test_identifiers_and_sql_that_leave_the_namespace_are_refused(make_hub, call):
    hub = await make_hub(plugins=[table_plugin("alpha", NOTES_V1), table_plugin("beta", NOTES_V1)])
    await hub.tables("beta").upsert("notes", [{"id": "1", "body": "beta's"}])
    with pytest.raises(PluginTableError):
        await call(hub.tables("alpha"))
    assert await hub.tables("beta").get("notes", "1") == {"id": "1", "body": "beta's"}
    assert "connections" in await hub.store.db.read(lambda db: db.table_names())


PLUGIN_FILE = """
from hub import hookimpl
from hub.model import Migration


@hookimpl
def migrations():
    return [
        Migration(1, "notes", "CREATE TABLE {{notes}} (id TEXT PRIMARY KEY)"),
        Migration(2, "tags", "CREATE TABLE {{tags}} (id TEXT PRIMARY KEY)"),
        Migration(3, "last", "{last}"),
    ]
"""


def test_plugins_and_check_list_tables_versions_and_a_failed_migration(
    tmp_path, capsys, monkeypatch, restore_logging
):
    for name in [n for n in os.environ if n.startswith("HUB_")]:
        monkeypatch.delenv(name)
    monkeypatch.setattr(sys, "dont_write_bytecode", True)  # the plugin file is rewritten
    folder = tmp_path / "plugins"
    folder.mkdir()
    config = tmp_path / "hub.toml"
    config.write_text(f'[plugins]\ndir = "{folder}"\n[store]\npath = "{tmp_path / "hub.db"}"\n')

    def run(command: str, last_sql: str) -> tuple[int, str]:
        (folder / "noted.py").write_text(PLUGIN_FILE.format(last=last_sql))
        code = main([command, "--config", str(config)])
        out = capsys.readouterr().out
        (row,) = [line for line in out.splitlines() if line.startswith("noted ")]
        return code, row

    reason = "FAILED: tables: migration 3 (last) failed: OperationalError: no such table"
    code, row = run("check", "DROP TABLE {missing}")
    assert code == 1 and reason in row
    code, row = run("plugins", "DROP TABLE {missing}")  # the reason is kept until fixed
    assert code == 1 and reason in row and "v2: notes, tags" in row

    assert run("check", "CREATE TABLE {last} (id TEXT PRIMARY KEY)")[0] == 0
    code, row = run("plugins", "CREATE TABLE {last} (id TEXT PRIMARY KEY)")
    assert code == 0 and "v3: last, notes, tags" in row and "FAILED" not in row


async def test_the_example_plugin_keeps_the_account_it_saw_in_its_table(make_hub, ledger):
    hub = await make_hub(config=ledger_config(ledger))
    (connection,) = await hub.connections("custom_accounting")
    await hub.health.check(connection.id)
    row = await hub.tables("custom_accounting").get("accounts_seen", connection.id)
    assert row is not None and row["name"]
    names = await hub.store.db.read(lambda db: db.table_names())
    assert "plugin_custom_accounting__accounts_seen" in names
