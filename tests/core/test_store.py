"""The store: opening, encryption at rest, migrations, record tables, and the sync engine's
guarantees (atomic batches + cursor, resume after failure or cancellation, concurrency)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import stat
import threading
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import sqlite_utils
from cryptography.fernet import Fernet
from structlog.testing import capture_logs

from hub import hookimpl, sync_pass
from hub.cli import main
from hub.errors import ServerError, StoreError, SyncBusyError
from hub.model import Batch, Connection, Integration, Stream, SyncMode
from hub.store import Store
from hub.store.content import content_hash
from hub.store.crypto import key_file_for
from hub.store.database import Database, connect
from hub.store.inbox import NewEvent, WebhookDelivery, insert_webhooks
from hub.store.records import RecordTable
from hub.store.schema import MIGRATIONS, apply_migrations
from hub.testing import stored_records

SECRET = "sk-very-secret-credential-4242424242"


@pytest.fixture
def no_hub_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("HUB_")]:
        monkeypatch.delenv(name)


@pytest.fixture
def store(tmp_path: Path):
    opened = Store(tmp_path / "hub.db")
    yield opened
    opened.close()


# --------------------------------------------------------------------------- opening


def test_a_file_that_is_not_sqlite_is_a_store_error(tmp_path: Path):
    path = tmp_path / "notes.db"
    path.write_text("these are my notes, not a database\n" * 10)
    with pytest.raises(StoreError) as exc:
        Store(path)
    (line,) = str(exc.value).splitlines()
    assert line.startswith(f"{path}: not an SQLite database")
    assert path.read_text().startswith("these are my notes")  # left untouched


def test_a_directory_as_store_path_is_a_store_error(tmp_path: Path):
    with pytest.raises(StoreError) as exc:
        Store(tmp_path)
    (line,) = str(exc.value).splitlines()
    assert line.startswith(f"{tmp_path}: ")


def test_a_store_path_under_a_file_is_a_store_error(tmp_path: Path):
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    with pytest.raises(StoreError) as exc:
        Store(blocker / "hub.db")
    (line,) = str(exc.value).splitlines()
    assert str(blocker) in line


def test_check_prints_a_store_error_without_traceback(
    tmp_path: Path, capsys, restore_logging, no_hub_env
):
    path = tmp_path / "notes.db"
    path.write_bytes(b"\x00\x01not sqlite at all" * 50)
    config = tmp_path / "hub.toml"
    config.write_text(f'[store]\npath = "{path}"\n[admin]\ntoken = "{"t" * 32}"\n')
    assert main(["check", "--config", str(config)]) == 1
    out, err = capsys.readouterr()
    errors = [line for line in err.splitlines() if line.startswith("advisoros-hub: error: ")]
    assert errors == [f"advisoros-hub: error: {path}: " + _not_sqlite_reason(path)]
    assert "Traceback" not in out + err


def _not_sqlite_reason(path: Path) -> str:
    with pytest.raises(StoreError) as exc:
        connect(path)
    return str(exc.value).split(": ", 1)[1]


# --------------------------------------------------------------------------- secrets at rest


async def test_credentials_are_encrypted_at_rest(store: Store, tmp_path: Path):
    row = await store.connections.upsert(
        "ledger", "acct", "Ledger acct", {"api_token": SECRET, "n": 1}, origin="config"
    )
    assert row.credentials == {"api_token": SECRET, "n": 1}
    db, wal = tmp_path / "hub.db", tmp_path / "hub.db-wal"
    raw = db.read_bytes() + (wal.read_bytes() if wal.exists() else b"")
    assert b"Ledger acct" in raw  # the title is stored in clear: the bytes were searched
    assert SECRET.encode() not in raw
    assert (await store.connections.get("ledger:acct")).credentials["api_token"] == SECRET

    await store.connections.save_credentials("ledger:acct", {"api_token": SECRET + "-rotated"})
    store.close()  # checkpoints the WAL into the main file
    assert SECRET.encode() not in db.read_bytes()


async def test_key_file_is_0600_and_reused(tmp_path: Path):
    path = tmp_path / "hub.db"
    first = Store(path)
    try:
        await first.connections.upsert("ledger", "a", "A", {"api_token": SECRET}, "config")
    finally:
        first.close()
    key_file = key_file_for(path)
    assert key_file == tmp_path / "hub.db.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = key_file.read_bytes()

    second = Store(path)
    try:
        assert key_file.read_bytes() == key
        assert (await second.connections.get("ledger:a")).credentials == {"api_token": SECRET}
    finally:
        second.close()


def test_a_damaged_key_file_is_a_store_error(tmp_path: Path):
    path = tmp_path / "hub.db"
    key_file_for(path).write_text("not a key\n")
    key_file_for(path).chmod(0o600)
    with pytest.raises(StoreError, match=r"hub\.db\.key: not a Fernet key"):
        Store(path)


async def test_hub_secret_key_is_used_instead_of_a_key_file(
    make_hub, hub_config, tmp_path: Path, monkeypatch
):
    key = Fernet.generate_key().decode()
    monkeypatch.setenv("HUB_SECRET_KEY", key)
    assert hub_config().secret_key.get_secret_value() == key
    hub = await make_hub(plugins=[ScriptedPlugin()])
    await hub.add_connection("scripted", "a", "A", {"api_token": SECRET}, origin="test")
    assert not key_file_for(tmp_path / "hub.db").exists()

    same = Store(tmp_path / "hub.db", key)
    try:
        assert (await same.connections.get("scripted:a")).credentials == {"api_token": SECRET}
    finally:
        same.close()

    wrong = Store(tmp_path / "hub.db", Fernet.generate_key().decode())
    try:
        with capture_logs() as logs:
            found = await wrong.connections.get("scripted:a")
        # the hub keeps running: the connection just has no usable credentials any more
        assert found is not None and found.credentials == {}
        (entry,) = [e for e in logs if e["event"] == "connection credentials unreadable"]
        assert "cannot be decrypted" in entry["error"] and "HUB_SECRET_KEY" in entry["error"]
    finally:
        wrong.close()


def test_an_invalid_hub_secret_key_is_a_store_error(tmp_path: Path):
    with pytest.raises(StoreError, match="HUB_SECRET_KEY: not a Fernet key"):
        Store(tmp_path / "hub.db", "too-short")


# --------------------------------------------------------------------------- migrations


def test_migrations_are_recorded_and_not_reapplied(tmp_path: Path):
    names = [name for name, _ in MIGRATIONS]
    db = Database(tmp_path / "hub.db")
    try:
        assert db.applied_migrations == names
        recorded = [r[0] for r in db.read_sync(lambda d: d.execute("SELECT name FROM _migrations"))]
        assert recorded == names
    finally:
        db.close()
    again = Database(tmp_path / "hub.db")
    try:
        assert again.applied_migrations == []
    finally:
        again.close()


async def test_a_database_at_009_gets_content_hashes_so_old_events_stay_deduplicated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    path = tmp_path / "hub.db"
    old = connect(path)
    with monkeypatch.context() as patch:
        patch.setattr("hub.store.schema.MIGRATIONS", MIGRATIONS[:9])
        assert apply_migrations(old)[-1] == "009_client_tax_ids"
    with old.atomic():  # an event as the previous release stored it
        old.execute(
            "INSERT INTO events (source, event_id, type, data, request_id, created_at) "
            "VALUES ('src', 'e1', 'src.thing', '{\"b\":[1,2],\"a\":\"x\"}', 1, 'then')"
        )
    old.close()

    db = Database(path)
    try:
        assert db.applied_migrations == ["010_event_content_hash"]
        (stored,) = db.read_sync(lambda d: d.execute("SELECT content_hash FROM events").fetchall())
        assert stored == (content_hash({"a": "x", "b": [1, 2]}),)

        def resend(data: dict[str, Any]) -> WebhookDelivery:
            return WebhookDelivery.build("src", {}, b"", [NewEvent("src", "e1", "t", data, None)])

        # its redelivery after the upgrade is still a duplicate; other content is a new event
        (same,) = await db.write(insert_webhooks, [resend({"a": "x", "b": [1, 2]})])
        assert (same.created, same.duplicates) == (0, 1)
        (other,) = await db.write(insert_webhooks, [resend({"a": "y"})])
        assert (other.created, other.conflicts) == (
            1,
            (("e1", "e1#" + content_hash({"a": "y"})[:32]),),
        )
    finally:
        db.close()


# --------------------------------------------------------------------------- record tables


ITEMS = Stream("items", key="id", columns={"name": "name", "amount": "money.amount"})


@pytest.fixture
def records_db(tmp_path: Path):
    db = connect(tmp_path / "records.db")
    apply_migrations(db)
    table = RecordTable("ledger", ITEMS)
    with db.atomic():
        table.create(db, "items", "ledger")
    yield db, table
    db.close()


def upsert(db: sqlite_utils.Database, table: RecordTable, records: list[dict[str, Any]], gen=None):
    with db.atomic():
        return table.upsert(db, "c1", table.rows(records), "now", gen)


def item(i: int, name: str = "n", amount: Any = "1.00") -> dict[str, Any]:
    return {"id": i, "name": f"{name}{i}", "money": {"amount": amount}}


def test_upsert_counts_created_and_really_updated(records_db):
    db, table = records_db
    counts = upsert(db, table, [item(1), item(2), item(3)])
    assert (counts.created, counts.updated) == (3, 0)

    counts = upsert(db, table, [item(1), item(2, name="changed"), item(4)])
    assert (counts.created, counts.updated) == (1, 1)  # item 1 unchanged: not counted

    counts = upsert(db, table, [item(1), item(2, name="changed")])
    assert (counts.created, counts.updated) == (0, 0)
    assert table.count(db, "c1") == 4
    rows = dict(db.execute("SELECT id, name FROM records_ledger_items").fetchall())
    assert rows == {"1": "n1", "2": "changed2", "3": "n3", "4": "n4"}


def test_columns_keep_money_out_of_binary_floats(records_db):
    db, table = records_db
    upsert(db, table, [item(1, amount=12.5), item(2, amount=1250)])
    rows = db.execute(
        "SELECT id, amount, typeof(amount) FROM records_ledger_items ORDER BY id"
    ).fetchall()
    assert rows == [("1", "12.5", "text"), ("2", 1250, "integer")]


def test_a_batch_over_many_statements_counts_every_row(records_db):
    db, table = records_db
    upsert(db, table, [item(i) for i in range(250)])
    with db.atomic():
        assert table.tombstone(db, "c1", ["7", "180"], "now") == 2
    # rows 0-249 exist (two tombstoned), 250-349 are new; every 3rd changes, 240 twice
    batch = [item(i, name="x" if i % 3 == 0 else "n") for i in range(350)]
    batch.append(item(240, name="last"))
    counts = upsert(db, table, batch)
    changed = {i for i in range(250) if i % 3 == 0} | {7, 180}  # + the resurrected
    assert (counts.created, counts.updated) == (100, len(changed))
    assert db.execute(
        "SELECT name, deleted_at FROM records_ledger_items WHERE id IN ('7', '240') ORDER BY id"
    ).fetchall() == [("last240", None), ("n7", None)]
    assert table.count(db, "c1") == 350


def test_statements_fit_sqlite_variable_limit(records_db):
    db, table = records_db
    db.conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 40)  # 9 rows of 4 values + 3
    counts = upsert(db, table, [item(i) for i in range(25)])
    assert (counts.created, table.count(db, "c1")) == (25, 25)
    counts = upsert(db, table, [item(i, name="m") for i in range(25)])
    assert counts.updated == 25


def test_records_are_per_connection(records_db):
    db, table = records_db
    upsert(db, table, [item(1)])
    with db.atomic():
        counts = table.upsert(db, "c2", table.rows([item(1)]), "now", None)
    assert counts.created == 1
    assert (table.count(db, "c1"), table.count(db, "c2")) == (1, 1)


def test_record_without_id_is_rejected(records_db):
    _, table = records_db
    with pytest.raises(ValueError, match="has no id"):
        table.rows([{"name": "x"}])


def test_tombstone_and_resurrect(records_db):
    db, table = records_db
    upsert(db, table, [item(1), item(2), item(3)])
    with db.atomic():
        assert table.tombstone(db, "c1", ["1", "2", "404"], "later") == 2
    with db.atomic():
        assert table.tombstone(db, "c1", ["1"], "later") == 0  # already tombstoned
    assert table.count(db, "c1") == 1
    deleted = db.execute(
        "SELECT id FROM records_ledger_items WHERE deleted_at IS NOT NULL ORDER BY id"
    ).fetchall()
    assert deleted == [("1",), ("2",)]

    counts = upsert(db, table, [item(1)])  # seen again: live again
    assert (counts.created, counts.updated) == (0, 1)
    assert table.count(db, "c1") == 2


def test_sweep_tombstones_what_a_full_sync_did_not_see(records_db):
    db, table = records_db
    upsert(db, table, [item(1), item(2), item(3), item(4)], gen=1)
    counts = upsert(db, table, [item(1), item(3)], gen=2)  # generation change is not an update
    assert (counts.created, counts.updated) == (0, 0)
    with db.atomic():
        assert table.sweep(db, "c1", 2, "later") == 2
    live = db.execute(
        "SELECT id FROM records_ledger_items WHERE deleted_at IS NULL ORDER BY id"
    ).fetchall()
    assert live == [("1",), ("3",)]


# --------------------------------------------------------------------------- the sync engine


class ScriptedPlugin:
    """An integration whose sync yields ``pages`` batches, resuming from its cursor, and can be
    told to fail after a page, or to wait at a page until released."""

    def __init__(
        self,
        pages: int = 3,
        fail_after: int | None = None,
        error: Exception | None = None,
        wait_at: int | None = None,
        delay: float = 0.0,
    ) -> None:
        self.pages = pages
        self.fail_after = fail_after
        self.error = error or ServerError("provider fault", status=500)
        self.wait_at = wait_at
        self.delay = delay
        self.received: list[dict[str, Any]] = []
        self.modes: list[SyncMode] = []
        self.reached = asyncio.Event()
        self.release = asyncio.Event()
        self.active = 0
        self.max_active = 0
        self.yielded = 0

    @hookimpl
    def register(self) -> Integration:
        return Integration(
            name="scripted", title="Scripted", streams=(ITEMS,), default_sync_interval=None
        )

    @hookimpl
    async def sync(
        self, connection: Connection, streams: Sequence[str], cursors: dict[str, Any], mode
    ) -> AsyncIterator[Batch]:
        self.received.append(dict(cursors))
        self.modes.append(mode)
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            start = (cursors.get("items") or {}).get("page", 0)
            for page in range(start + 1, self.pages + 1):
                if self.fail_after is not None and page > self.fail_after:
                    raise self.error
                if self.wait_at == page:
                    self.reached.set()
                    await self.release.wait()
                if self.delay:
                    await asyncio.sleep(self.delay)
                records = [item(page * 100 + i) for i in range(5)]
                self.yielded += 1
                yield Batch("items", records, cursor={"page": page})
        finally:
            self.active -= 1


async def scripted_hub(make_hub, plugin: ScriptedPlugin, keys=("a",), config=None):
    hub = await make_hub(plugins=[plugin], config=config)
    for key in keys:
        await hub.add_connection("scripted", key, key.upper(), {"api_token": "t"}, origin="test")
    return hub


async def live_ids(hub, connection: str = "scripted:a") -> set[str]:
    return set((await stored_records(hub, "scripted", connection))["items"])


async def test_failed_sync_keeps_committed_batches_and_resumes(make_hub):
    plugin = ScriptedPlugin(pages=4, fail_after=3)
    hub = await scripted_hub(make_hub, plugin)

    result = await hub.engine.run("scripted:a", trigger="test")
    assert (result.state, result.error_class, result.created) == ("failed", "server", 15)
    assert "provider fault" in result.error
    run = await hub.store.runs.get(result.run_id)
    assert (run["state"], run["error_class"], run["created"]) == ("failed", "server", 15)
    assert len(await live_ids(hub)) == 15  # three committed batches stay
    assert (await hub.store.runs.cursors("scripted:a"))["items"].cursor == {"page": 3}

    plugin.fail_after = None
    result = await hub.engine.run("scripted:a", trigger="test")
    assert result.state == "succeeded", result.error
    assert plugin.received == [{}, {"items": {"page": 3}}]
    assert result.created == 5
    assert len(await live_ids(hub)) == 20
    # the interrupted first (full) sync was completed, nothing swept that it had seen
    assert (await hub.store.runs.cursors("scripted:a"))["items"].full_generation is None
    assert result.deleted == 0


async def test_a_plain_exception_is_classified_by_type(make_hub):
    plugin = ScriptedPlugin(pages=2, fail_after=1, error=KeyError("Id"))
    hub = await scripted_hub(make_hub, plugin)
    result = await hub.engine.run("scripted:a", trigger="test")
    assert (result.state, result.error_class) == ("failed", "KeyError")


async def test_cancelled_sync_is_recorded_and_its_cursor_stays_valid(make_hub):
    plugin = ScriptedPlugin(pages=4, wait_at=3)
    hub = await scripted_hub(make_hub, plugin)
    task = asyncio.create_task(hub.engine.run("scripted:a", trigger="test"))
    await asyncio.wait_for(plugin.reached.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    (run,) = await hub.store.runs.recent("scripted:a")
    assert (run["state"], run["error_class"]) == ("cancelled", "cancelled")
    assert (await hub.store.runs.cursors("scripted:a"))["items"].cursor == {"page": 2}
    assert len(await live_ids(hub)) == 10
    assert hub.connection_state("scripted:a").running is None

    plugin.wait_at = None
    result = await hub.engine.run("scripted:a", trigger="test")
    assert result.state == "succeeded", result.error
    assert plugin.received[-1] == {"items": {"page": 2}}
    assert len(await live_ids(hub)) == 20


async def until(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.001)


async def assert_cancelled_after_two_pages(hub, task: asyncio.Task[Any]) -> None:
    """The run ended cancelled, and what it recorded is what was committed: two pages."""
    with pytest.raises(asyncio.CancelledError):
        await task
    (run,) = await hub.store.runs.recent("scripted:a")
    assert (run["state"], run["created"]) == ("cancelled", 10)
    assert (await hub.store.runs.cursors("scripted:a"))["items"].cursor == {"page": 2}
    assert len(await live_ids(hub)) == 10


async def test_a_sync_cancelled_with_batches_queued_counts_them_when_they_commit(
    make_hub, monkeypatch: pytest.MonkeyPatch
):
    """Cancelled while its batches wait behind other writes: the run waits for them, and
    what it records is what was committed."""
    monkeypatch.setattr(sync_pass, "GROUP_BYTES", 0)  # each batch its own transaction
    plugin = ScriptedPlugin(pages=4, wait_at=1)
    hub = await scripted_hub(make_hub, plugin)
    task = asyncio.create_task(hub.engine.run("scripted:a", trigger="test"))
    await asyncio.wait_for(plugin.reached.wait(), 5)
    gate = threading.Event()
    hub.store.db.submit(lambda db: gate.wait(10))  # holds the writer
    plugin.release.set()
    await until(lambda: plugin.yielded == 2)  # both handed to the writer, neither committed
    task.cancel()
    await asyncio.sleep(0.05)
    assert not task.done()  # waits for the queued commits
    gate.set()
    await assert_cancelled_after_two_pages(hub, task)


async def test_a_sync_cancelled_while_a_batch_commits_records_every_commit(
    make_hub, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(sync_pass, "GROUP_BYTES", 0)  # each batch its own transaction
    plugin = ScriptedPlugin(pages=4)
    hub = await scripted_hub(make_hub, plugin)
    started, gate = threading.Event(), threading.Event()
    write_batch = sync_pass._write_batch

    def held_write(*args: Any) -> Any:
        if not started.is_set():
            started.set()
            gate.wait(10)
        return write_batch(*args)

    monkeypatch.setattr(sync_pass, "_write_batch", held_write)
    task = asyncio.create_task(hub.engine.run("scripted:a", trigger="test"))
    assert await asyncio.to_thread(started.wait, 5)
    await until(lambda: plugin.yielded == 2)
    task.cancel()
    gate.set()
    await assert_cancelled_after_two_pages(hub, task)


async def test_one_sync_at_a_time_per_connection(make_hub):
    plugin = ScriptedPlugin(pages=2, wait_at=1)
    hub = await scripted_hub(make_hub, plugin)
    first = asyncio.create_task(hub.engine.run("scripted:a", trigger="test"))
    await asyncio.wait_for(plugin.reached.wait(), 5)
    try:
        with pytest.raises(SyncBusyError) as exc:
            await hub.engine.run("scripted:a", trigger="test")
        assert exc.value.connection_id == "scripted:a"
        assert exc.value.run_id == (await hub.store.runs.recent("scripted:a"))[0]["id"]
        with pytest.raises(SyncBusyError):
            await hub.engine.start("scripted:a", trigger="api")
        assert hub.connection_state("scripted:a").running is not None
    finally:
        plugin.release.set()
    assert (await first).state == "succeeded"
    assert len(await hub.store.runs.recent("scripted:a")) == 1  # the refused ones left no run


async def test_a_sync_running_in_another_process_blocks(make_hub):
    hub = await scripted_hub(make_hub, ScriptedPlugin())
    run_id = await insert_running_run(hub, os.getppid(), None)  # recorded before owners
    with pytest.raises(SyncBusyError) as exc:
        await hub.engine.run("scripted:a", trigger="test")
    assert exc.value.run_id == run_id


async def test_global_limit_serialises_runs(make_hub):
    plugin = ScriptedPlugin(pages=3, delay=0.02)
    hub = await scripted_hub(
        make_hub, plugin, keys=("a", "b"), config={"sync": {"max_concurrent": 1}}
    )
    results = await asyncio.gather(
        hub.engine.run("scripted:a", trigger="test"), hub.engine.run("scripted:b", trigger="test")
    )
    assert [r.state for r in results] == ["succeeded", "succeeded"]
    assert plugin.max_active == 1
    runs = sorted(await hub.store.runs.recent(), key=lambda r: r["started_at"])
    assert runs[0]["finished_at"] <= runs[1]["started_at"]  # started = got its slot


async def test_without_the_limit_runs_overlap(make_hub):
    plugin = ScriptedPlugin(pages=3, delay=0.02)
    hub = await scripted_hub(
        make_hub, plugin, keys=("a", "b"), config={"sync": {"max_concurrent": 2}}
    )
    results = await asyncio.gather(
        hub.engine.run("scripted:a", trigger="test"), hub.engine.run("scripted:b", trigger="test")
    )
    assert [r.state for r in results] == ["succeeded", "succeeded"]
    assert plugin.max_active == 2


async def test_unknown_connection_or_stream(make_hub):
    hub = await scripted_hub(make_hub, ScriptedPlugin())
    with pytest.raises(LookupError):
        await hub.engine.run("scripted:nope", trigger="test")
    with pytest.raises(LookupError, match="no stream"):
        await hub.engine.run("scripted:a", trigger="test", streams=["bogus"])
    assert await hub.store.runs.recent() == []


async def test_two_simultaneous_runs_of_one_connection_cannot_both_start(make_hub):
    plugin = ScriptedPlugin(pages=3, delay=0.02)
    hub = await scripted_hub(make_hub, plugin)
    outcomes = await asyncio.gather(
        hub.engine.run("scripted:a", full=True, trigger="test"),
        hub.engine.run("scripted:a", full=True, trigger="test"),
        return_exceptions=True,
    )
    assert sorted(type(o).__name__ for o in outcomes) == ["SyncBusyError", "SyncResult"]
    assert plugin.max_active == 1
    assert len(await live_ids(hub)) == 15  # three pages of five, nothing tombstoned


class BadRecordPlugin(ScriptedPlugin):
    """Page 2 holds a record without an id: its batch cannot commit."""

    @hookimpl
    async def sync(self, connection, streams, cursors, mode) -> AsyncIterator[Batch]:
        for page in range(1, 5):
            records = [{"id": f"item-{page}"}] if page != 2 else [{"name": "no id"}]
            yield Batch("items", records, cursor={"page": page})


async def test_no_cursor_is_committed_past_a_batch_that_failed(make_hub):
    hub = await scripted_hub(make_hub, BadRecordPlugin())
    result = await hub.engine.run("scripted:a", trigger="test")
    assert result.state == "failed"
    cursors = await hub.store.runs.cursors("scripted:a")
    assert cursors["items"].cursor == {"page": 1}  # not 3: page 2 was never stored
    assert await live_ids(hub) == {"item-1"}


async def test_start_answers_at_once_while_every_slot_is_busy(make_hub):
    plugin = ScriptedPlugin(pages=2, wait_at=1)
    hub = await scripted_hub(
        make_hub, plugin, keys=("a", "b"), config={"sync": {"max_concurrent": 1}}
    )
    first = await hub.engine.start("scripted:a", trigger="test")
    await asyncio.wait_for(plugin.reached.wait(), 5)
    second = await asyncio.wait_for(hub.engine.start("scripted:b", trigger="test"), 1)
    assert (await hub.store.runs.get(second))["state"] == "queued"
    plugin.release.set()
    for _ in range(200):
        states = [(await hub.store.runs.get(r))["state"] for r in (first, second)]
        if states == ["succeeded", "succeeded"]:
            break
        await asyncio.sleep(0.02)
    assert states == ["succeeded", "succeeded"]


@pytest.mark.parametrize("mode, expected", [("normal", 1), ("full", 2)])
def test_store_synchronous_setting_reaches_the_writer(tmp_path: Path, mode, expected):
    store = Store(tmp_path / "hub.db", synchronous=mode)
    try:
        value = store.db.submit(lambda db: db.execute("PRAGMA synchronous").fetchone()[0])
        assert value.result() == expected
    finally:
        store.close()


class ReusingPlugin:
    """Yields one list and one cursor dict, cleared and updated for every page."""

    @hookimpl
    def register(self) -> Integration:
        return Integration(
            name="reuse", title="Reuse", streams=(Stream("items"),), default_sync_interval=None
        )

    @hookimpl
    async def sync(self, streams: Sequence[str], cursors: dict[str, Any]) -> Any:
        cursor = {"page": (cursors.get("items") or {}).get("page", 0)}
        buffer: list[dict[str, Any]] = []
        for page in range(cursor["page"] + 1, 6):
            await asyncio.sleep(0)  # an HTTP call
            buffer += [{"id": f"{page}-{i}"} for i in range(500)]
            cursor["page"] = page
            yield Batch("items", buffer, cursor=cursor)
            buffer.clear()


async def test_a_plugin_reusing_its_buffer_and_cursor_loses_nothing(make_hub):
    hub = await make_hub(plugins=[ReusingPlugin()])
    await hub.add_connection("reuse", "a", "A", {}, origin="test")
    # another connection holds the write lock a moment, so batches queue behind it
    blocker = await asyncio.to_thread(_hold_write_lock, hub.settings.store.path, 0.3)
    result = await hub.engine.run("reuse:a", trigger="test")
    blocker.join()
    assert result.state == "succeeded" and result.created == 2500
    live = (await stored_records(hub, "reuse", "reuse:a"))["items"]
    assert len(live) == 2500


def _hold_write_lock(path: str, seconds: float) -> Any:
    import sqlite3
    import threading

    locked = threading.Event()

    def hold() -> None:
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        locked.set()
        time.sleep(seconds)
        conn.execute("COMMIT")
        conn.close()

    thread = threading.Thread(target=hold)
    thread.start()
    locked.wait()
    return thread


async def insert_running_run(hub, pid: int, owner: str | None) -> int:
    return await hub.store.db.write(
        lambda db: (
            db.execute(
                "INSERT INTO sync_runs (connection_id, integration, mode, trigger, state, "
                "streams, started_at, pid, owner) VALUES ('scripted:a', 'scripted', "
                "'incremental', 'cli', 'running', '[\"items\"]', '2026-01-01T00:00:00+00:00', "
                "?, ?)",
                [pid, owner],
            ).lastrowid
        )
    )


async def test_a_reused_pid_does_not_block_the_connection(make_hub):
    """After a crash or a reboot the dead run's pid may belong to another process: its start
    time differs, so the run is interrupted and the connection syncs."""
    hub = await scripted_hub(make_hub, ScriptedPlugin())
    other = os.getppid()  # alive, but it did not start at the recorded time
    stale = await insert_running_run(hub, other, f"{other}:1")
    result = await hub.engine.run("scripted:a", trigger="test")
    assert result.state == "succeeded"
    assert (await hub.store.runs.get(stale))["state"] == "interrupted"


async def test_a_run_of_this_process_that_failed_to_finish_does_not_block(make_hub):
    from hub.store.runs import PROCESS_OWNER

    hub = await scripted_hub(make_hub, ScriptedPlugin())
    stale = await insert_running_run(hub, os.getpid(), PROCESS_OWNER)  # e.g. finish() failed
    assert (await hub.engine.run("scripted:a", trigger="test")).state == "succeeded"
    assert (await hub.store.runs.get(stale))["state"] == "interrupted"


async def test_the_sweep_interrupts_runs_of_a_process_that_is_gone(make_hub):
    import subprocess

    hub = await scripted_hub(make_hub, ScriptedPlugin())
    gone = subprocess.Popen(["true"])
    gone.wait()  # a CLI sync killed with kill -9
    owned = await insert_running_run(hub, gone.pid, f"{gone.pid}:123")
    other = os.getppid()
    from hub.store.runs import _start_time

    alive = await insert_running_run(hub, other, f"{other}:{_start_time(other)}")
    assert await hub.store.runs.mark_interrupted() == 1
    assert (await hub.store.runs.get(owned))["state"] == "interrupted"
    assert (await hub.store.runs.get(alive))["state"] == "running"


def test_a_newly_declared_column_is_filled_for_the_records_already_stored(tmp_path):
    from hub.store.schema import apply_migrations

    db = connect(tmp_path / "records.db")
    apply_migrations(db)
    first = RecordTable("x", Stream("items", columns={"name": "name"}))
    first.create(db, "items", "x")
    record = {"id": 1, "name": "n", "amount": {"total": "9.50"}}
    first.write(db, "x:a", first.rows([record]), [], "t1", None)
    # the plugin's next release indexes a new column; the record itself does not change
    second = RecordTable("x", Stream("items", columns={"name": "name", "total": "amount.total"}))
    second.create(db, "items", "x")
    assert db.execute("SELECT total FROM records_x_items").fetchone() == ("9.50",)
    db.close()


def test_index_names_of_different_streams_never_collide(tmp_path):
    from hub.store.schema import apply_migrations

    db = connect(tmp_path / "records.db")
    apply_migrations(db)
    RecordTable("x", Stream("b", columns={"c_d": "c_d"})).create(db, "b", "x")
    RecordTable("x", Stream("b_c", columns={"d": "d"})).create(db, "b_c", "x")
    tables = {
        name: table
        for name, table in db.execute(
            "SELECT name, tbl_name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
        )
    }
    assert tables["records_x_b.c_d"] == "records_x_b"
    assert tables["records_x_b_c.d"] == "records_x_b_c"
    db.close()


def test_indexes_under_the_old_names_are_replaced(tmp_path):
    from hub.store.schema import apply_migrations

    db = connect(tmp_path / "records.db")
    apply_migrations(db)
    table = RecordTable("x", Stream("items", columns={"total": "total"}))
    table.create(db, "items", "x")
    db.execute("DROP INDEX [records_x_items.total]")
    db.execute("CREATE INDEX [records_x_items_total] ON records_x_items (connection_id, total)")
    table.create(db, "items", "x")  # as at the next sync after the upgrade
    names = {row[1] for row in db.execute("PRAGMA index_list(records_x_items)")}
    assert "records_x_items_total" not in names and "records_x_items.total" in names
    db.close()


async def test_stopping_cancels_queued_runs_instead_of_starting_them(make_hub):
    plugin = ScriptedPlugin(pages=2, wait_at=1)
    hub = await scripted_hub(
        make_hub, plugin, keys=("a", "b"), config={"sync": {"max_concurrent": 1}}
    )
    running = asyncio.create_task(hub.engine.run("scripted:a", trigger="test"))
    await asyncio.wait_for(plugin.reached.wait(), 5)
    queued = asyncio.create_task(hub.engine.run("scripted:b", trigger="test"))
    await asyncio.sleep(0.1)  # b is recorded and waits for the only slot
    stopping = asyncio.create_task(hub.engine.stop(timeout=5))
    await asyncio.sleep(0.1)
    plugin.release.set()
    await stopping
    assert (await running).state == "succeeded"
    with pytest.raises(asyncio.CancelledError):
        await queued
    runs = {r["connection_id"]: r for r in await hub.store.runs.recent()}
    assert runs["scripted:b"]["state"] == "cancelled"
    assert len(plugin.received) == 1  # b never started its sync


def test_processes_creating_the_key_file_together_agree_on_one_key(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from hub.store.crypto import load_or_create_key

    database = tmp_path / "hub.db"
    with ThreadPoolExecutor(8) as pool:
        keys = set(pool.map(lambda _: load_or_create_key(None, database), range(16)))
    assert len(keys) == 1
    assert key_file_for(database).read_bytes().strip() in keys
    assert stat.S_IMODE(key_file_for(database).stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hub.db.key"]  # no leftovers


def test_ids_are_unique_and_increasing_in_the_same_microsecond(monkeypatch):
    """The writer makes many ids per microsecond under load: ties are bumped, never repeated,
    and an id never goes back when the clock does."""
    from hub.store import clock

    monkeypatch.setattr(clock, "_last_id", 0)
    now = [1_795_000_000_123_456_789]
    monkeypatch.setattr(clock.time, "time_ns", lambda: now[0])
    ids = [clock.next_id() for _ in range(500)]
    now[0] -= 10_000_000  # the clock steps back 10 ms
    ids += [clock.next_id() for _ in range(10)]
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)
    assert ids[0] == 1_795_000_000_123_456


def fast_checkpoints(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Checkpoint every 20 ms, start the WAL over past 256 KB (the writer copying what is
    left past 2 MB); the list gets the time of each checkpoint the writer thread finishes."""
    from hub.store import database

    finished: list[float] = []
    real = Database._finish_wal

    def recording(self: Database, conn: sqlite3.Connection) -> None:
        finished.append(time.monotonic())
        real(self, conn)

    monkeypatch.setattr(Database, "_finish_wal", recording)
    monkeypatch.setattr(database, "CHECKPOINT_INTERVAL_S", 0.02)
    monkeypatch.setattr(database, "WAL_RESET_BYTES", 256 * 1024)
    monkeypatch.setattr(database, "WAL_SIZE_LIMIT", 2 * 1024 * 1024)
    return finished


async def write_burst(db: Database, transactions: int, pages: int = 16) -> None:
    """Queue ``transactions`` writes of ``pages`` pages' worth of random rows into table
    ``t`` at once (the writer runs them back to back, never pausing), and wait for them."""
    blob = os.urandom(4096)

    def insert(conn: sqlite_utils.Database) -> None:
        conn.conn.executemany("INSERT INTO t VALUES (?)", [(blob,)] * pages)

    await asyncio.wait_for(
        asyncio.gather(*(asyncio.wrap_future(db.submit(insert)) for _ in range(transactions))),
        30,
    )


def wal_size(path: Path) -> int:
    """The size of the WAL file of the database at ``path``."""
    return path.with_name(path.name + "-wal").stat().st_size


def wal_restarts(path: Path) -> int:
    """How many times the WAL of the database at ``path`` was started over (the checkpoint
    sequence number of its header, which SQLite raises at every restart)."""
    header = path.with_name(path.name + "-wal").read_bytes()[:16]
    return int.from_bytes(header[12:16], "big")


@contextlib.asynccontextmanager
async def blob_store(path: Path) -> AsyncIterator[Database]:
    """A database at ``path`` with an empty table ``t (v BLOB)``, closed afterwards."""
    db = Database(path)
    try:
        await db.write(lambda conn: conn.execute("CREATE TABLE t (v BLOB)"))
        yield db
    finally:
        db.close()


async def test_writes_that_never_pause_still_start_the_wal_over(tmp_path, monkeypatch):
    """Beside a writer that never pauses, a checkpoint never copies the whole WAL by itself:
    the writer finishes it between two transactions, so the WAL starts over instead of
    growing by everything written (19 MB here)."""
    finished = fast_checkpoints(monkeypatch)
    path = tmp_path / "hub.db"
    async with blob_store(path) as db:
        await write_burst(db, 300)
        assert finished
        assert wal_restarts(path) >= 1
        assert wal_size(path) < 300 * 16 * 4096 * 3 // 4
        count = await db.read(lambda conn: conn.execute("SELECT count(*) FROM t").fetchone()[0])
        assert count == 300 * 16


async def test_a_small_wal_is_left_to_the_checkpointer(tmp_path, monkeypatch):
    """Below the reset size the writer never checkpoints: the checkpointer copies the WAL
    into the database file on its own."""
    finished = fast_checkpoints(monkeypatch)
    path = tmp_path / "hub.db"
    async with blob_store(path) as db:
        await write_burst(db, 2)
        deadline = time.monotonic() + 5
        while path.stat().st_size < 32 * 4096 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert path.stat().st_size >= 32 * 4096  # the rows are in the database file
        assert finished == []


async def test_a_reader_on_an_old_snapshot_holds_the_wal_up_but_never_the_writers(
    tmp_path, monkeypatch
):
    """A reader on an old snapshot keeps the WAL from starting over (SQLite must keep what it
    reads): writers get through meanwhile, and once it is done the WAL starts over."""
    fast_checkpoints(monkeypatch)
    path = tmp_path / "hub.db"
    async with blob_store(path) as db:
        reader = sqlite3.connect(path, isolation_level=None)
        try:
            reader.execute("BEGIN")
            reader.execute("SELECT count(*) FROM t").fetchone()  # holds this snapshot
            restarts = wal_restarts(path)
            await write_burst(db, 100)  # the writers are not kept waiting (or this times out)
            assert wal_restarts(path) == restarts
            assert wal_size(path) >= 100 * 16 * 4096  # nothing could be written over
            reader.execute("COMMIT")
            await write_burst(db, 300)
            assert wal_restarts(path) > restarts
        finally:
            reader.close()


async def test_a_sweep_in_parts_tombstones_exactly_what_one_sweep_would(make_hub, monkeypatch):
    """The sweep runs a few thousand rows per transaction (webhook commits go between): the
    outcome is the same as one whole sweep, and writes made meanwhile are not swept."""
    from hub import sync_pass

    monkeypatch.setattr(sync_pass, "SWEEP_ROWS", 4)
    plugin = ScriptedPlugin(pages=4)
    hub = await scripted_hub(make_hub, plugin)
    assert (await hub.engine.run("scripted:a", full=True, trigger="test")).state == "succeeded"
    assert len(await live_ids(hub)) == 20
    plugin.pages = 2  # the provider now has only the first ten items
    parts: list[tuple[int, int]] = []
    real = sync_pass._sweep_part

    def counted(db, table, clients, connection_id, generation, now, rows):
        parts.append(rows)
        return real(db, table, clients, connection_id, generation, now, rows)

    monkeypatch.setattr(sync_pass, "_sweep_part", counted)
    result = await hub.engine.run("scripted:a", full=True, trigger="test")
    assert (result.state, result.deleted) == ("succeeded", 10)
    assert len(await live_ids(hub)) == 10
    assert parts == [(low, low + 4) for low in range(0, 20, 4)]  # five parts of four rows


async def test_a_crash_between_sweep_parts_leaves_the_full_pass_open(make_hub, monkeypatch):
    from hub import sync_pass

    monkeypatch.setattr(sync_pass, "SWEEP_ROWS", 4)
    plugin = ScriptedPlugin(pages=4)
    hub = await scripted_hub(make_hub, plugin)
    await hub.engine.run("scripted:a", full=True, trigger="test")
    plugin.pages = 2
    real, calls = sync_pass._sweep_part, {"n": 0}

    def dies_in_the_third_part(*args):
        calls["n"] += 1
        if calls["n"] == 3:
            raise sqlite3.OperationalError("disk I/O error")
        return real(*args)

    monkeypatch.setattr(sync_pass, "_sweep_part", dies_in_the_third_part)
    assert (await hub.engine.run("scripted:a", full=True, trigger="test")).state == "failed"
    cursors = await hub.store.runs.cursors("scripted:a")
    assert cursors["items"].full_generation is not None  # still the same full pass
    monkeypatch.setattr(sync_pass, "_sweep_part", real)
    resumed = await hub.engine.run("scripted:a", trigger="test")  # resumes that full pass
    assert resumed.state == "succeeded"
    assert len(await live_ids(hub)) == 10
    cursors = await hub.store.runs.cursors("scripted:a")
    assert cursors["items"].full_generation is None
