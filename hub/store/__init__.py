"""The hub's SQLite store: one database, a writer thread, and a repository per concern."""

from __future__ import annotations

from pathlib import Path

from hub.store.clients import Clients
from hub.store.connections import ConnectionRow, Connections, connection_id
from hub.store.crypto import Vault, load_or_create_key
from hub.store.database import Database
from hub.store.health import HealthLog
from hub.store.inbox import Inbox
from hub.store.runs import Runs
from hub.store.subscriptions import Subscriptions

__all__ = ["ConnectionRow", "Store", "connection_id"]


class Store:
    """Opens the database (migrating it) and exposes its repositories."""

    def __init__(
        self,
        path: Path,
        secret_key: str | None = None,
        synchronous: str = "normal",
    ) -> None:
        self.path = path
        self.db = Database(path, synchronous)
        try:
            self.vault = Vault(load_or_create_key(secret_key, path))
        except BaseException:
            self.db.close()
            raise
        self.connections = Connections(self.db, self.vault)
        self.runs = Runs(self.db)
        self.health = HealthLog(self.db)
        self.inbox = Inbox(self.db)
        self.subscriptions = Subscriptions(self.db, self.vault)
        self.clients = Clients(self.db)

    async def get_meta(self, key: str) -> str | None:
        """A value from the ``meta`` table, or None."""
        rows = await self.db.read(
            lambda db: db.execute("SELECT value FROM meta WHERE key = ?", [key]).fetchall()
        )
        return str(rows[0][0]) if rows else None

    async def set_meta(self, key: str, value: str) -> None:
        """Set a value in the ``meta`` table."""
        await self.db.write(
            lambda db: db.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", [key, value]
            )
        )

    def close(self) -> None:
        """Finish pending writes and close the database."""
        self.db.close()
