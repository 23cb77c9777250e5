"""Health history and alerts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import sqlite_utils

from hub.store.clock import parse, utcnow
from hub.store.database import Database


class HealthLog:
    """Health state changes per connection and the alerts they open and resolve."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def record_change(
        self,
        connection_id: str,
        integration: str,
        status: str,
        message: str,
        checks: list[dict[str, Any]],
    ) -> tuple[int, str | None] | None:
        """Store a connection's status; if it differs from the stored one, record the change
        and its alert and resolve the connection's older alerts (all in one transaction, so
        two processes checking the same connection record and alert a change once).

        The alert of a change to healthy (a recovery) is stored already resolved.

        :return: the new alert's id and the previous stored status, or None if the stored
            status already was ``status`` (another process recorded the change).
        """

        def write(db: sqlite_utils.Database) -> tuple[int, str | None] | None:
            row = db.execute(
                "SELECT status FROM connections WHERE id = ?", [connection_id]
            ).fetchone()
            previous = row[0] if row else None
            db.execute(
                "UPDATE connections SET status = ?, status_message = ? WHERE id = ?",
                [status, message, connection_id],
            )
            if previous == status:
                return None
            now = utcnow()
            db.execute(
                "INSERT INTO health_history (connection_id, integration, status, previous, "
                "message, checks, at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    connection_id,
                    integration,
                    status,
                    previous,
                    message,
                    orjson.dumps(checks).decode(),
                    now,
                ],
            )
            db.execute(
                "UPDATE alerts SET resolved_at = ? WHERE connection_id = ? AND resolved_at IS NULL",
                [now, connection_id],
            )
            cursor = db.execute(
                "INSERT INTO alerts (connection_id, integration, status, previous, message, "
                "created_at, last_sent_at, resolved_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    connection_id,
                    integration,
                    status,
                    previous,
                    message,
                    now,
                    now,
                    now if status == "healthy" else None,
                ],
            )
            return int(cursor.lastrowid or 0), previous

        return await self._db.write(write)

    async def prune(self, older_than_days: int) -> tuple[int, int]:
        """Delete health changes and resolved alerts older than ``older_than_days``; each
        connection keeps its latest change, and open alerts stay.

        :return: (changes deleted, alerts deleted).
        """
        cutoff = (datetime.now(UTC) - timedelta(days=older_than_days)).isoformat()

        def write(db: sqlite_utils.Database) -> tuple[int, int]:
            changes = db.execute(
                "DELETE FROM health_history WHERE at < ? AND id NOT IN "
                "(SELECT max(id) FROM health_history GROUP BY connection_id)",
                [cutoff],
            ).rowcount
            alerts = db.execute(
                "DELETE FROM alerts WHERE resolved_at IS NOT NULL AND resolved_at < ?", [cutoff]
            ).rowcount
            return changes, alerts

        return await self._db.write(write)

    async def history(self, connection_id: str, limit: int = 50) -> list[dict[str, Any]]:
        """A connection's newest health changes, newest first."""
        return await self._db.read(
            lambda db: list(
                db.query(
                    "SELECT status, previous, message, at FROM health_history "
                    "WHERE connection_id = ? ORDER BY id DESC LIMIT ?",
                    [connection_id, limit],
                )
            )
        )

    async def open_alerts(self) -> list[dict[str, Any]]:
        """Alerts not yet resolved (connections still unhealthy), oldest first."""
        return await self._db.read(
            lambda db: list(db.query("SELECT * FROM alerts WHERE resolved_at IS NULL ORDER BY id"))
        )

    async def due_reminders(self, interval_s: int) -> list[dict[str, Any]]:
        """Open alerts whose last delivery is older than ``interval_s``; marks them sent now.

        Each row carries its connection's ``connection_title``. Open alerts of connections
        that no longer exist are resolved instead of reminded.
        """

        def write(db: sqlite_utils.Database) -> list[dict[str, Any]]:
            now = utcnow()
            db.execute(
                "UPDATE alerts SET resolved_at = ? WHERE resolved_at IS NULL "
                "AND connection_id NOT IN (SELECT id FROM connections)",
                [now],
            )
            cutoff = parse(now) - timedelta(seconds=interval_s)
            due = [
                row
                for row in db.query(
                    "SELECT a.*, c.title AS connection_title FROM alerts a "
                    "JOIN connections c ON c.id = a.connection_id "
                    "WHERE a.resolved_at IS NULL ORDER BY a.id"
                )
                if parse(row["last_sent_at"]) <= cutoff
            ]
            for row in due:
                db.execute(
                    "UPDATE alerts SET last_sent_at = ?, reminders = reminders + 1 WHERE id = ?",
                    [now, row["id"]],
                )
            return due

        return await self._db.write(write)
