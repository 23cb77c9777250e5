"""Sync runs, cursors and per-stream statistics."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import sqlite_utils

from hub.errors import SyncBusyError
from hub.store.clock import utcnow
from hub.store.database import Database

ACTIVE_RUN_STATES = ("queued", "running")
"""States of a run that has not ended (the others: succeeded, failed, cancelled, interrupted)."""


@dataclass(frozen=True)
class StreamCursor:
    """A stream's committed cursor and the full-sync generation in progress, if any."""

    cursor: Any
    full_generation: int | None


@dataclass(frozen=True)
class SyncRecord:
    """A connection's syncs since its last success, as stored: what a restart remembers.

    :param last_success_at: the last successful run's end, or a stream's later success.
    :param failures: runs failed since then (cancelled and interrupted runs do not count).
    :param last_failure: the newest of those failed runs' row (``error_class``, ``error``,
        ``finished_at``), or None.
    """

    last_success_at: str | None
    failures: int
    last_failure: dict[str, Any] | None


class Runs:
    """Sync run records, cursors and stream statistics."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._mine: set[int] = set()
        """Runs this process started and has not finished."""

    async def start(
        self, connection_id: str, integration: str, mode: str, trigger: str, streams: list[str]
    ) -> int:
        """Record a new sync, queued until it gets a slot, and return its id.

        :raise SyncBusyError: a live process (another one, or this one) runs a sync of this
            connection; checked in the same transaction as the insert.
        """

        def write(db: sqlite_utils.Database) -> int:
            rows = db.execute(
                "SELECT id, pid, owner FROM sync_runs WHERE connection_id = ? "
                "AND state IN ('queued', 'running')",
                [connection_id],
            ).fetchall()
            dead = []
            for run_id, pid, owner in rows:
                if self._alive(run_id, pid, owner):
                    raise SyncBusyError(connection_id, run_id)
                dead.append(run_id)
            _interrupt(db, dead)  # left behind by a crash: say so now
            cursor = db.execute(
                "INSERT INTO sync_runs (connection_id, integration, mode, trigger, state, streams, "
                "started_at, pid, owner) VALUES (?, ?, ?, ?, 'queued', ?, ?, ?, ?)",
                [
                    connection_id,
                    integration,
                    mode,
                    trigger,
                    orjson.dumps(streams).decode(),
                    utcnow(),
                    os.getpid(),
                    PROCESS_OWNER,
                ],
            )
            run_id = int(cursor.lastrowid or 0)
            self._mine.add(run_id)
            return run_id

        return await self._db.write(write)

    def _alive(self, run_id: int, pid: int | None, owner: str | None) -> bool:
        """Whether the process that recorded a run still runs it."""
        if owner == PROCESS_OWNER:  # this process: alive while the engine has not finished it
            return run_id in self._mine
        if owner is not None:
            return _owner_alive(owner)
        return _alive(pid)  # recorded before owners were (migration 005)

    async def begin(self, run_id: int) -> None:
        """A queued run got its slot: it is running from now on."""
        await self._db.write(
            lambda db: db.execute(
                "UPDATE sync_runs SET state = 'running', started_at = ? WHERE id = ?",
                [utcnow(), run_id],
            )
        )

    async def finish(
        self,
        run_id: int,
        state: str,
        counts: dict[str, int],
        duration_s: float,
        error_class: str | None = None,
        error: str | None = None,
    ) -> str:
        """Record how a run ended: state, counts, duration and error class.

        :return: when it ended, as stored.
        """
        self._mine.discard(run_id)  # even if the write fails: the run no longer runs
        finished_at = utcnow()
        await self._db.write(
            lambda db: db.execute(
                "UPDATE sync_runs SET state = ?, finished_at = ?, duration_s = ?, created = ?, "
                "updated = ?, deleted = ?, error_class = ?, error = ? WHERE id = ?",
                [
                    state,
                    finished_at,
                    round(duration_s, 3),
                    counts.get("created", 0),
                    counts.get("updated", 0),
                    counts.get("deleted", 0),
                    error_class,
                    error,
                    run_id,
                ],
            )
        )
        return finished_at

    async def get(self, run_id: int) -> dict[str, Any] | None:
        """One run as a dict, or None."""
        rows = await self._db.read(
            lambda db: list(db.query("SELECT * FROM sync_runs WHERE id = ?", [run_id]))
        )
        return _run_dict(rows[0]) if rows else None

    async def recent(
        self, connection_id: str | None = None, limit: int = 20
    ) -> list[dict[str, Any]]:
        """The newest runs, newest first."""
        if connection_id is None:
            sql, params = "SELECT * FROM sync_runs ORDER BY id DESC LIMIT ?", [str(limit)]
        else:
            sql = "SELECT * FROM sync_runs WHERE connection_id = ? ORDER BY id DESC LIMIT ?"
            params = [connection_id, str(limit)]
        rows = await self._db.read(lambda db: list(db.query(sql, params)))
        return [_run_dict(row) for row in rows]

    async def mark_interrupted(self) -> int:
        """Mark runs left queued or running by a process that is gone (a crash, a killed CLI
        sync) as interrupted; return how many. Run at start and periodically."""
        rows = await self._db.read(
            lambda db: list(
                db.query(
                    "SELECT id, pid, owner FROM sync_runs WHERE state IN ('queued', 'running')"
                )
            )
        )
        dead = [r["id"] for r in rows if not self._alive(r["id"], r["pid"], r["owner"])]
        if not dead:
            return 0

        def write(db: sqlite_utils.Database) -> None:
            _interrupt(db, dead)

        await self._db.write(write)
        return len(dead)

    async def prune(self, older_than_days: int) -> int:
        """Delete runs that finished more than ``older_than_days`` ago; return how many.
        Running and queued runs stay, and so do cursors and stream statistics."""
        cutoff = (datetime.now(UTC) - timedelta(days=older_than_days)).isoformat()
        return await self._db.write(
            lambda db: (
                db.execute(
                    "DELETE FROM sync_runs WHERE finished_at IS NOT NULL AND finished_at < ?",
                    [cutoff],
                ).rowcount
            )
        )

    async def cursors(self, connection_id: str) -> dict[str, StreamCursor]:
        """Every stream's committed cursor for a connection."""
        rows = await self._db.read(
            lambda db: list(
                db.query(
                    "SELECT stream, cursor, full_generation FROM cursors WHERE connection_id = ?",
                    [connection_id],
                )
            )
        )
        return {
            row["stream"]: StreamCursor(
                cursor=orjson.loads(row["cursor"]) if row["cursor"] is not None else None,
                full_generation=row["full_generation"],
            )
            for row in rows
        }

    async def sync_records(self) -> dict[str, SyncRecord]:
        """Every connection's :class:`SyncRecord` (connections that never synced are absent)."""

        def read(db: sqlite_utils.Database) -> dict[str, SyncRecord]:
            runs = db.query(
                "SELECT r.connection_id, r.state, r.finished_at, r.error_class, r.error "
                "FROM sync_runs r WHERE r.state IN ('succeeded', 'failed') AND r.id >= "
                "coalesce((SELECT max(s.id) FROM sync_runs s WHERE s.connection_id = "
                "r.connection_id AND s.state = 'succeeded'), 0) ORDER BY r.id"
            )
            streams = db.execute(
                "SELECT connection_id, max(last_success_at) FROM stream_stats "
                "GROUP BY connection_id"
            ).fetchall()
            records = {c: SyncRecord(at, 0, None) for c, at in streams}
            for run in runs:
                known = records.get(run["connection_id"], SyncRecord(None, 0, None))
                if run["state"] == "succeeded":
                    at = max(filter(None, [known.last_success_at, run["finished_at"]]))
                    records[run["connection_id"]] = SyncRecord(at, 0, None)
                else:
                    failures = known.failures + 1
                    records[run["connection_id"]] = SyncRecord(known.last_success_at, failures, run)
            return records

        return await self._db.read(read)

    async def stream_stats(self, connection_id: str) -> list[dict[str, Any]]:
        """Per-stream last run, last success and live record count for a connection."""
        return await self._db.read(
            lambda db: list(
                db.query(
                    "SELECT stream, last_run_id, last_success_at, records FROM stream_stats "
                    "WHERE connection_id = ? ORDER BY stream",
                    [connection_id],
                )
            )
        )


def write_cursor(
    db: sqlite_utils.Database,
    connection_id: str,
    stream: str,
    cursor: Any,
    full_generation: int | None,
) -> None:
    """Store a stream's cursor (call inside the batch's transaction)."""
    db.conn.execute(
        "INSERT INTO cursors (connection_id, stream, cursor, full_generation, updated_at) "
        "VALUES (?, ?, ?, ?, ?) ON CONFLICT (connection_id, stream) DO UPDATE SET "
        "cursor = excluded.cursor, full_generation = excluded.full_generation, "
        "updated_at = excluded.updated_at",
        [
            connection_id,
            stream,
            orjson.dumps(cursor).decode() if cursor is not None else None,
            full_generation,
            utcnow(),
        ],
    )


def full_generation(db: sqlite_utils.Database, connection_id: str, stream: str) -> int | None:
    """The generation of the full sync in progress for a stream, or None (none running)."""
    row = db.conn.execute(
        "SELECT full_generation FROM cursors WHERE connection_id = ? AND stream = ?",
        [connection_id, stream],
    ).fetchone()
    return int(row[0]) if row and row[0] is not None else None


def write_stream_stats(
    db: sqlite_utils.Database, connection_id: str, stream: str, run_id: int, live: int
) -> None:
    """Record a stream's successful sync (call inside the run's final transaction)."""
    db.conn.execute(
        "INSERT INTO stream_stats (connection_id, stream, last_run_id, last_success_at, records) "
        "VALUES (?, ?, ?, ?, ?) ON CONFLICT (connection_id, stream) DO UPDATE SET "
        "last_run_id = excluded.last_run_id, last_success_at = excluded.last_success_at, "
        "records = excluded.records",
        [connection_id, stream, run_id, utcnow(), live],
    )


def _run_dict(row: dict[str, Any]) -> dict[str, Any]:
    run = dict(row)
    run["streams"] = orjson.loads(run["streams"])
    return run


def _interrupt(db: sqlite_utils.Database, run_ids: list[int]) -> None:
    for run_id in run_ids:
        db.execute(
            "UPDATE sync_runs SET state = 'interrupted', finished_at = ?, "
            "error_class = 'interrupted', error = 'the process stopped during the sync' "
            "WHERE id = ? AND state IN ('queued', 'running')",
            [utcnow(), run_id],
        )


def _start_time(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot, from /proc), or None if unknown."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            fields = stat.read().rpartition(")")[2].split()
    except OSError:
        return None
    return fields[19] if len(fields) > 19 else None  # field 22 of the line: starttime


def _owner_alive(owner: str) -> bool:
    pid_text, _, started = owner.partition(":")
    if not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if not _alive(pid):
        return False
    now_started = _start_time(pid)
    return now_started is None or started in ("", now_started)  # no /proc: trust the pid


PROCESS_OWNER = f"{os.getpid()}:{_start_time(os.getpid()) or ''}"
"""This process, as recorded on its runs: its pid and start time, so a reused pid differs."""


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
