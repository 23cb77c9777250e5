"""Outbound webhook subscriptions: URL, event-type patterns, encrypted signing secret."""

from __future__ import annotations

import fnmatch
import secrets
from dataclasses import dataclass
from typing import Any

import orjson
import sqlite_utils

from hub.errors import StoreError
from hub.store.clock import utcnow
from hub.store.crypto import Vault
from hub.store.database import Database


@dataclass(frozen=True)
class Subscription:
    """One subscriber endpoint."""

    id: str
    url: str
    events: tuple[str, ...]
    description: str
    secret: str
    state: str
    failures: int
    disabled_reason: str | None
    created_at: str

    def matches(self, event_type: str) -> bool:
        """True if ``event_type`` matches one of the patterns (``stripe.invoice.*``, ``*``)."""
        return self.state == "active" and any(
            fnmatch.fnmatchcase(event_type, pattern) for pattern in self.events
        )

    def public(self) -> dict[str, Any]:
        """The subscription without its secret (for listings)."""
        return {
            "id": self.id,
            "url": self.url,
            "events": list(self.events),
            "description": self.description,
            "state": self.state,
            "failures": self.failures,
            "disabled_reason": self.disabled_reason,
            "created_at": self.created_at,
        }


class Subscriptions:
    """Create, list, disable and delete subscriptions; secrets encrypted at rest."""

    def __init__(self, db: Database, vault: Vault) -> None:
        self._db = db
        self._vault = vault

    def _row(self, row: dict[str, Any]) -> Subscription:
        state, reason = row["state"], row["disabled_reason"]
        try:
            secret = self._vault.open(row["secret"])["secret"]
        except StoreError as exc:  # the secret key changed: list it, deliver nothing to it
            secret, state, reason = "", "unreadable", str(exc)
        return Subscription(
            id=row["id"],
            url=row["url"],
            events=tuple(orjson.loads(row["events"])),
            description=row["description"],
            secret=secret,
            state=state,
            failures=row["failures"],
            disabled_reason=reason,
            created_at=row["created_at"],
        )

    async def create(
        self, url: str, events: list[str], description: str, secret: str
    ) -> Subscription:
        """Store a new active subscription and return it."""
        sub_id = f"sub_{secrets.token_hex(8)}"
        sealed = self._vault.seal({"secret": secret})
        await self._db.write(
            lambda db: db.execute(
                "INSERT INTO subscriptions (id, url, events, description, secret, state, "
                "created_at) VALUES (?, ?, ?, ?, ?, 'active', ?)",
                [sub_id, url, orjson.dumps(events).decode(), description, sealed, utcnow()],
            )
        )
        found = await self.get(sub_id)
        assert found is not None
        return found

    async def get(self, sub_id: str) -> Subscription | None:
        """One subscription, or None."""
        rows = await self._db.read(
            lambda db: list(db.query("SELECT * FROM subscriptions WHERE id = ?", [sub_id]))
        )
        return self._row(rows[0]) if rows else None

    async def list(self) -> list[Subscription]:
        """Every subscription, oldest first."""
        rows = await self._db.read(
            lambda db: list(db.query("SELECT * FROM subscriptions ORDER BY created_at, id"))
        )
        return [self._row(row) for row in rows]

    async def delete(self, sub_id: str) -> bool:
        """Delete a subscription and drop its pending and dead deliveries (nothing can deliver
        them any more: they would stay in the dead letters for good); True if it existed."""

        def write(db: sqlite_utils.Database) -> bool:
            db.execute(
                "DELETE FROM deliveries WHERE handler = ? AND state IN ('pending', 'dead')",
                [f"sub:{sub_id}"],
            )
            return bool(db.execute("DELETE FROM subscriptions WHERE id = ?", [sub_id]).rowcount)

        return await self._db.write(write)

    async def delivered(self, sub_id: str, ok: bool, disable_after: int) -> bool:
        """Count a final delivery outcome; disable after ``disable_after`` dead letters in a row.

        :return: True if this call disabled the subscription.
        """

        def write(db: sqlite_utils.Database) -> bool:
            if ok:
                db.execute("UPDATE subscriptions SET failures = 0 WHERE id = ?", [sub_id])
                return False
            db.execute("UPDATE subscriptions SET failures = failures + 1 WHERE id = ?", [sub_id])
            cursor = db.execute(
                "UPDATE subscriptions SET state = 'disabled', disabled_reason = ? "
                "WHERE id = ? AND state = 'active' AND failures >= ?",
                [f"{disable_after} deliveries in a row failed", sub_id, disable_after],
            )
            if cursor.rowcount:  # its queued deliveries will not be tried: one alert, not many
                db.execute(
                    "UPDATE deliveries SET state = 'dead', updated_at = ?, "
                    "last_error = 'the subscription was disabled' "
                    "WHERE handler = ? AND state = 'pending'",
                    [utcnow(), f"sub:{sub_id}"],
                )
            return bool(cursor.rowcount)

        return await self._db.write(write)

    async def enable(self, sub_id: str) -> bool:
        """Make a disabled subscription active again with a clean failure count; False if
        there is no such subscription."""
        cursor = await self._db.write(
            lambda db: db.execute(
                "UPDATE subscriptions SET state = 'active', failures = 0, disabled_reason = NULL "
                "WHERE id = ?",
                [sub_id],
            )
        )
        return bool(cursor.rowcount)
