"""The ``analyses`` table: one row per analysis, from queued to analysed or failed.

A row is written ``queued`` when the analysis is accepted, ``running`` when it starts, and
``analyzed`` (with its figures, summary, confidence, recommendations and flags) or ``failed``
(with the reason and its class) when it ends. Only a validated answer is ever stored as data.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any

import orjson

from hub.api import HubAPI, Row, TableSession

ACTIVE = ("queued", "running")
JSON_COLUMNS = ("recommendations", "flags", "data")
INTERRUPTED = "the hub stopped before the analysis finished: ask for it again"


def now() -> str:
    """The time now, as the rows record it."""
    return datetime.now(UTC).isoformat()


def new_id() -> str:
    """A fresh analysis id."""
    return "ana_" + secrets.token_hex(12)


def _encoded(changes: dict[str, Any]) -> Row:
    return {
        name: orjson.dumps(value).decode() if name in JSON_COLUMNS and value is not None else value
        for name, value in changes.items()
    }


async def save(hub: HubAPI, row: Row) -> None:
    """Insert a new analysis row (every required column; JSON columns given as values)."""
    await hub.tables(__name__).upsert("analyses", [_encoded(row)])


async def update(hub: HubAPI, analysis_id: str, changes: Row) -> None:
    """Change some columns of an analysis row (JSON columns given as values)."""
    encoded = _encoded(changes)
    assignments = ", ".join(f'"{name}" = ?' for name in encoded)
    params = [*encoded.values(), analysis_id]

    def write(tx: TableSession) -> None:
        tx.execute(f"UPDATE {{analyses}} SET {assignments} WHERE id = ?", params)  # noqa: S608

    await hub.tables(__name__).transaction(write)


async def latest(hub: HubAPI, document_id: str) -> Row | None:
    """The document's newest analysis, or None."""
    rows = await hub.tables(__name__).query(
        "analyses", "document_id = ?", [document_id], order_by="started_at DESC", limit=1
    )
    return rows[0] if rows else None


async def has_upload_analysis(hub: HubAPI, document_id: str) -> bool:
    """True if the document's upload already started an analysis (a redelivered event)."""
    rows = await hub.tables(__name__).query(
        "analyses", "document_id = ? AND trigger = 'upload'", [document_id], limit=1
    )
    return bool(rows)


def public(row: Row) -> dict[str, Any]:
    """An analysis row as the API answers it."""
    out = {name: row[name] for name in row}
    for name in JSON_COLUMNS:
        out[name] = orjson.loads(row[name]) if row[name] is not None else None
    out["type"] = out.pop("document_type")
    return out


async def recover(hub: HubAPI) -> int:
    """Mark analyses a stop left queued or running as failed; how many."""
    placeholders = ", ".join("?" for _ in ACTIVE)

    def write(tx: TableSession) -> int:
        rows = tx.execute(
            f"UPDATE {{analyses}} SET state = 'failed', error = ?, error_class = 'interrupted',"  # noqa: S608
            f" finished_at = ? WHERE state IN ({placeholders}) RETURNING id",
            [INTERRUPTED, now(), *ACTIVE],
        )
        return len(rows)

    return await hub.tables(__name__).transaction(write)
