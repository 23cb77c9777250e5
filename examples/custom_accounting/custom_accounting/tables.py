"""The plugin's own table: the Ledger account each connection last reported, and when.

``migrations`` declares it (append a new :class:`~hub.model.Migration` to change it, never
edit a released one); ``hub.tables(__name__)`` reads and writes it, in this plugin's namespace.
"""

from __future__ import annotations

from datetime import UTC, datetime

from hub.api import HubAPI
from hub.model import Connection, Migration

MIGRATIONS = (
    Migration(
        1,
        "the account each connection last reported",
        """
        CREATE TABLE {accounts_seen} (
            connection_id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            seen_at TEXT NOT NULL
        )
        """,
    ),
)


async def remember_account(hub: HubAPI, connection: Connection, name: str) -> None:
    """Record the account name ``GET /v1/me`` gave for ``connection``."""
    row = {"connection_id": connection.id, "name": name, "seen_at": datetime.now(UTC).isoformat()}
    await hub.tables(__name__).upsert("accounts_seen", [row])
