"""The plugin's own tables: one row per stored document, and the last repair pass.

``migrations`` declares them (append a new :class:`~hub.model.Migration` to change them);
``hub.tables(__name__)`` reads and writes them through the store's writer.
"""

from __future__ import annotations

from typing import Any

from hub.api import HubAPI, Row, TableSession
from hub.model import Migration

MIGRATIONS = (
    Migration(
        1,
        "stored documents and repair reports",
        """
        CREATE TABLE {documents} (
            id TEXT PRIMARY KEY,
            connection_id TEXT NOT NULL,
            client TEXT NOT NULL,
            name TEXT NOT NULL,
            container TEXT NOT NULL,
            blob_name TEXT NOT NULL,
            content_type TEXT NOT NULL,
            size INTEGER NOT NULL,
            sha256 TEXT NOT NULL,
            etag TEXT NOT NULL,
            uploaded_at TEXT NOT NULL,
            uploaded_by TEXT,
            state TEXT NOT NULL DEFAULT 'ok',
            problem TEXT,
            checked_at TEXT,
            analysis_state TEXT NOT NULL DEFAULT 'pending'
        );
        CREATE INDEX {documents_by_client} ON {documents} (connection_id, client, uploaded_at);
        CREATE TABLE {repairs} (
            connection_id TEXT PRIMARY KEY,
            started_at TEXT NOT NULL,
            finished_at TEXT,
            report TEXT NOT NULL
        )
        """,
    ),
)
PUBLIC_FIELDS = (
    "id",
    "client",
    "name",
    "container",
    "blob_name",
    "content_type",
    "size",
    "sha256",
    "etag",
    "uploaded_at",
    "uploaded_by",
    "state",
    "problem",
    "checked_at",
    "analysis_state",
)
"""What the API shows of a document."""


def public(row: Row) -> dict[str, Any]:
    """A document row as the API answers it."""
    return {name: row[name] for name in PUBLIC_FIELDS}


async def get(hub: HubAPI, connection_id: str, document_id: str) -> Row | None:
    """The document ``document_id`` of the connection, or None."""
    row = await hub.tables(__name__).get("documents", document_id)
    return row if row is not None and row["connection_id"] == connection_id else None


async def list_documents(
    hub: HubAPI, connection_id: str, client: str | None, limit: int
) -> list[Row]:
    """The connection's documents (of one client, if given), newest first."""
    where, params = "connection_id = ?", [connection_id]
    if client is not None:
        where, params = where + " AND client = ?", [*params, client]
    return await hub.tables(__name__).query(
        "documents", where, params, order_by="uploaded_at DESC, id", limit=limit
    )


async def save(hub: HubAPI, row: Row) -> None:
    """Insert a document row (every column)."""
    await hub.tables(__name__).upsert("documents", [row])


async def update(hub: HubAPI, document_id: str, changes: Row) -> None:
    """Change some columns of a recorded document (none if it was deleted meanwhile)."""
    columns = [name for name in changes if name in PUBLIC_FIELDS and name != "id"]
    assignments = ", ".join(f'"{name}" = ?' for name in columns)
    params = [changes[name] for name in columns] + [document_id]

    def write(tx: TableSession) -> None:
        tx.execute(f"UPDATE {{documents}} SET {assignments} WHERE id = ?", params)  # noqa: S608

    await hub.tables(__name__).transaction(write)


async def delete(hub: HubAPI, document_id: str) -> None:
    """Forget a document."""
    await hub.tables(__name__).delete("documents", [document_id])
