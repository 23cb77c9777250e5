"""Turning Ledger pages into hub batches: one batch per page, cursor = position after it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

from hub.model import Batch, Stream

from .client import LedgerClient

STREAMS = (
    Stream(
        "accounts",
        key="id",
        columns={
            "name": "name",
            "type": "type",
            "currency": "currency",
            "updated_at": "updated_at",
        },
        description="Chart of accounts",
    ),
    Stream(
        "transactions",
        key="id",
        columns={
            "account_id": "account_id",
            "date": "date",
            "amount": "amount",
            "currency": "currency",
            "updated_at": "updated_at",
        },
        description="Posted transactions (amounts as decimal text)",
    ),
)


async def sync_streams(
    client: LedgerClient, streams: Sequence[str], cursors: dict[str, Any], page_size: int
) -> AsyncIterator[Batch]:
    """Yield a batch per page of each stream, resuming after each stream's cursor."""
    for stream in streams:
        after = (cursors.get(stream) or {}).get("after")
        async for records, next_after in client.pages(f"/v1/{stream}", after, page_size):
            live = [r for r in records if not r.get("deleted")]
            gone = [str(r["id"]) for r in records if r.get("deleted")]
            yield Batch(stream, live, cursor={"after": next_after}, deleted=gone)
