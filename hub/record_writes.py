"""Records a plugin learns between syncs (a webhook's re-fetch or deletion), written through
the same upsert and client matching as a sync's batches."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import sqlite_utils

from hub.client_matching import MatchTally, stream_clients
from hub.model import Connection, Integration
from hub.store.client_match import MatchReport
from hub.store.clock import utcnow
from hub.store.database import Database
from hub.store.records import BatchCounts, RecordTable
from hub.store.runs import full_generation

Emit = Callable[[str, dict[str, Any]], Awaitable[object]]


class RecordWriter:
    """Writes plugins' records outside syncs, creating or checking each record table once
    per process (webhook handlers write per event)."""

    def __init__(self) -> None:
        self._ready: set[str] = set()

    async def write(
        self,
        db: Database,
        emit: Emit,
        integration: Integration,
        connection: Connection,
        stream: str,
        records: Sequence[dict[str, Any]],
        deleted: Sequence[str],
    ) -> BatchCounts:
        """Upsert ``records`` and tombstone ``deleted`` ids of one stream in one transaction on
        the writer thread, matched to the clients registry in it if the stream declares
        client fields (``clients.matched`` follows the commit); cursors are not touched. A
        full sync of the stream in progress counts them as seen, so its final sweep does not
        tombstone them.

        :raise KeyError: the integration declares no such stream.
        """
        declared = integration.stream(stream)
        table = RecordTable(integration.name, declared)
        clients = stream_clients(integration.name, declared)
        ready = table.name in self._ready
        rows = table.rows(records)
        candidates = clients.candidates(records) if clients else None

        def write(conn: sqlite_utils.Database) -> tuple[BatchCounts, MatchReport | None]:
            if not ready:
                table.create(conn, stream, integration.name)
            gen = full_generation(conn, connection.id, stream)
            counts = table.write(conn, connection.id, rows, deleted, utcnow(), gen)
            matched = None
            if clients is not None and candidates is not None:
                matched = clients.write(conn, connection.id, candidates, deleted)
            return counts, matched

        counts, matched = await db.write(write)
        self._ready.add(table.name)
        if matched is not None:
            await MatchTally.of(matched).announce(emit, integration.name, connection.id, stream)
        return counts
