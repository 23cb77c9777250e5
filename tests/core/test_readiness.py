"""Readiness of the store: the writer's failures, the probe, the integrity check."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from hub.store import writable
from hub.store.database import Database
from hub.store.integrity import quick_check
from hub.testing import generic_signature, hub_of
from tests.damage import damaged_copy

SECRET = "readiness-secret"
CONFIG = {"webhooks": {"generic": {"zap": {"secret": SECRET}}}}
BIG = b'{"pad": "' + b"x" * 200_000 + b'"}'
FULL = "database: cannot be written: database or disk is full"


async def reasons(client) -> tuple[int, list[str]]:
    response = await client.get("/readyz")
    return response.status, (await response.json()).get("reasons", [])


async def post(client, body: bytes) -> int:
    headers = {"X-Signature": generic_signature(SECRET, body)}
    response = await client.post("/webhooks/generic/zap", data=body, headers=headers)
    return int(response.status)


async def set_max_pages(db: Database, pages: int | None) -> None:
    """``PRAGMA max_page_count`` on the writer: None, the database's size (full)."""

    def apply(conn) -> None:
        count = pages or conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count = {count}")

    await db.write(apply)


async def test_a_full_disk_stays_unready_until_a_write_of_the_hub_succeeds(hub_client, monkeypatch):
    client = await hub_client(config=CONFIG, authorized=False)
    db = hub_of(client).store.db
    await set_max_pages(db, None)
    assert await post(client, BIG) == 503
    assert await reasons(client) == (503, [FULL])

    await db.write(lambda conn: conn.execute("SELECT 1").fetchall())
    assert await reasons(client) == (503, [FULL])  # a commit that wrote nothing proves nothing
    monkeypatch.setattr(writable, "PROBE_AFTER_S", 0.0)  # probe at every /readyz
    assert await reasons(client) == (503, [FULL])  # the probe's small row fits: no proof
    probed = await db.read(
        lambda conn: conn.execute(
            "SELECT 1 FROM meta WHERE key = ?", [writable.PROBE_KEY]
        ).fetchall()
    )
    assert probed == [(1,)]

    await set_max_pages(db, 4294967294)
    assert await post(client, BIG) == 200
    assert await reasons(client) == (200, [])


async def test_a_probe_finds_a_database_that_turned_read_only_while_idle(hub_client, monkeypatch):
    client = await hub_client(authorized=False)
    db = hub_of(client).store.db
    await db.write(lambda conn: conn.execute("PRAGMA query_only = 1"))  # as a read-only mount
    assert await reasons(client) == (200, [])  # the last writes (at start) succeeded

    monkeypatch.setattr(writable, "PROBE_AFTER_S", 0.0)  # as if nothing was written lately
    status, found = await reasons(client)
    assert status == 503
    assert found == ["database: cannot be written: attempt to write a readonly database"]


async def test_no_probe_while_the_hub_writes(hub_client):
    client = await hub_client(authorized=False)
    for _ in range(5):
        assert await reasons(client) == (200, [])
    probes = await hub_of(client).store.db.read(
        lambda conn: conn.execute(
            "SELECT 1 FROM meta WHERE key = ?", [writable.PROBE_KEY]
        ).fetchall()
    )
    assert probes == []  # the start-up writes were recent: nothing to find out


def failure(code: int, message: str) -> sqlite3.OperationalError:
    exc = sqlite3.OperationalError(message)
    exc.sqlite_errorcode = code
    return exc


@pytest.mark.parametrize(
    ("code", "unwritable"),
    [
        (sqlite3.SQLITE_CANTOPEN, True),
        (sqlite3.SQLITE_READONLY, True),
        (sqlite3.SQLITE_IOERR | (3 << 8), True),  # SQLITE_IOERR_WRITE: an extended code
        (sqlite3.SQLITE_CORRUPT, True),
        (sqlite3.SQLITE_BUSY, False),  # another process holds the lock: it passes
        (sqlite3.SQLITE_CONSTRAINT, False),  # the write's own mistake
    ],
)
def test_which_errors_mark_the_store_unwritable(code, unwritable):
    state = writable.Writability()
    state.failed(failure(code, "it failed"))
    assert state.failure == ("it failed" if unwritable else None)
    state.wrote(writable.write_probe)
    assert state.failure is None  # a probe that wrote clears all but a full disk


def test_only_a_write_of_the_hub_clears_a_full_disk():
    state = writable.Writability()
    state.failed(failure(sqlite3.SQLITE_FULL, "database or disk is full"))
    state.wrote(writable.write_probe)
    assert state.failure == "database or disk is full"
    state.wrote(lambda db: None)
    assert state.failure is None


def test_quick_check_reports_damage_on_one_line(tmp_path: Path):
    conn = sqlite3.connect(damaged_copy(tmp_path))
    result = quick_check(conn, None)
    conn.close()
    assert result.ok is False
    assert "btreeInitPage() returns error code 11" in result.detail
    assert "\n" not in result.detail and "*** in database" not in result.detail


class EndlessCheck:
    """A connection whose check goes on until it is interrupted, as SQLite's stops then."""

    def __init__(self) -> None:
        self.interrupted = threading.Event()

    def interrupt(self) -> None:
        self.interrupted.set()

    def execute(self, sql: str) -> None:
        assert sql.startswith("PRAGMA quick_check")
        assert self.interrupted.wait(60), "never interrupted"
        raise failure(sqlite3.SQLITE_INTERRUPT, "interrupted")


def test_quick_check_is_stopped_when_its_budget_is_spent():
    stopped = quick_check(EndlessCheck(), 0.0)
    assert stopped.ok is None
    assert "advisoros-hub check" in stopped.detail


async def test_check_integrity_runs_the_check_again_and_keeps_its_outcome(tmp_path: Path):
    db = Database(tmp_path / "hub.db")
    try:
        assert db.integrity.ok is True
        assert (await db.check_integrity(60.0)).ok is True
        assert db.integrity.ok is True
    finally:
        db.close()


def test_a_damaged_database_opens_and_says_so(tmp_path: Path):
    db = Database(damaged_copy(tmp_path))
    try:
        assert db.integrity.ok is False
    finally:
        db.close()
