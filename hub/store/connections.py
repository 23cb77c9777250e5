"""Connections: one authenticated account of an integration, credentials encrypted."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlite_utils
import structlog

from hub.errors import StoreError
from hub.store.clock import utcnow
from hub.store.crypto import Vault
from hub.store.database import Database

log = structlog.get_logger("hub.store")


@dataclass(frozen=True)
class ConnectionRow:
    """A stored connection with its credentials decrypted."""

    id: str
    integration: str
    key: str
    title: str
    credentials: dict[str, Any]
    origin: str
    status: str
    status_message: str
    created_at: str
    updated_at: str


def connection_id(integration: str, key: str) -> str:
    """The stable id of a connection: ``<integration>:<provider account key>``."""
    return f"{integration}:{key}"


class Connections:
    """Create, read, update and delete connections."""

    def __init__(self, db: Database, vault: Vault) -> None:
        self._db = db
        self._vault = vault

    def _row(self, row: dict[str, Any]) -> ConnectionRow:
        try:
            credentials = self._vault.open(row["credentials"])
        except StoreError as exc:
            # one unreadable row must not stop the hub: the connection shows as needing
            # re-authentication (its plugin finds no credentials) and a reconnect replaces it
            log.error("connection credentials unreadable", connection=row["id"], error=str(exc))
            credentials = {}
        return ConnectionRow(
            id=row["id"],
            integration=row["integration"],
            key=row["key"],
            title=row["title"],
            credentials=credentials,
            origin=row["origin"],
            status=row["status"],
            status_message=row["status_message"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
        )

    async def upsert(
        self, integration: str, key: str, title: str, credentials: dict[str, Any], origin: str
    ) -> ConnectionRow:
        """Create the connection for (integration, key), or update its title and credentials."""
        sealed = self._vault.seal(credentials)
        cid = connection_id(integration, key)

        def write(db: sqlite_utils.Database) -> None:
            now = utcnow()
            db.execute(
                "INSERT INTO connections (id, integration, key, title, credentials, origin, "
                "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET title = excluded.title, "
                "credentials = excluded.credentials, origin = excluded.origin, "
                "updated_at = excluded.updated_at",
                [cid, integration, key, title, sealed, origin, now, now],
            )

        await self._db.write(write)
        found = await self.get(cid)
        assert found is not None
        return found

    async def save_credentials(self, cid: str, credentials: dict[str, Any]) -> None:
        """Replace a connection's credentials (a refreshed or rotated token)."""
        sealed = self._vault.seal(credentials)
        await self._db.write(
            lambda db: db.execute(
                "UPDATE connections SET credentials = ?, updated_at = ? WHERE id = ?",
                [sealed, utcnow(), cid],
            )
        )

    async def get(self, cid: str) -> ConnectionRow | None:
        """One connection by id, or None."""
        rows = await self._db.read(
            lambda db: list(db.query("SELECT * FROM connections WHERE id = ?", [cid]))
        )
        return self._row(rows[0]) if rows else None

    async def list(self, integration: str | None = None) -> list[ConnectionRow]:
        """Every connection (of one integration), ordered by id."""
        if integration is None:
            sql, params = "SELECT * FROM connections ORDER BY id", []
        else:
            sql, params = (
                "SELECT * FROM connections WHERE integration = ? ORDER BY id",
                [integration],
            )
        rows = await self._db.read(lambda db: list(db.query(sql, params)))
        return [self._row(row) for row in rows]

    async def delete(self, cid: str) -> bool:
        """Delete a connection and its cursors and resolve its open alerts (its records stay);
        True if it existed."""

        def write(db: sqlite_utils.Database) -> bool:
            db.execute("DELETE FROM cursors WHERE connection_id = ?", [cid])
            db.execute(
                "UPDATE alerts SET resolved_at = ? WHERE connection_id = ? AND resolved_at IS NULL",
                [utcnow(), cid],
            )
            return bool(db.execute("DELETE FROM connections WHERE id = ?", [cid]).rowcount)

        return await self._db.write(write)
