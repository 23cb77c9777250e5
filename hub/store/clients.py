"""The clients registry: the firm's clients, each linked to the records that stand for it.

A client (a business the firm serves) is linked to its ids at providers: a QuickBooks customer
per company (realm), a Stripe customer, later a documents folder. Records of a stream that
declares :class:`~hub.model.ClientFields` are matched as they are stored
(:mod:`hub.client_matching`, by the rules of :mod:`hub.store.client_match`); ambiguous ones
wait in ``client_reviews`` until a person settles them with :meth:`Clients.link`. A client's
tax ids are in ``client_tax_ids`` (several per client: a company may have a VAT number and an
EIN). Links stay when their record is tombstoned: what belonged to the client still does, and
a record that comes back is matched by its link again.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson
import sqlite_utils

from hub.store.client_match import Candidate, MatchReport, chunked, match_candidates
from hub.store.clock import utcnow
from hub.store.database import Database


class UnknownConnection(LookupError):
    """A link names a connection the hub does not have (or of another integration)."""


class Clients:
    """The clients registry: deterministic matching of provider records, links, listings."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def match(
        self, integration: str, connection_id: str, candidates: Iterable[Candidate]
    ) -> MatchReport:
        """Settle each candidate as matched, created or ambiguous, in one transaction (the
        rules: :mod:`hub.store.client_match`).

        Idempotent: matching the same candidates again reports them matched by ``link``. A
        candidate listed twice counts once (the last one wins).
        """
        wanted = list(candidates)
        if not wanted:
            return MatchReport()
        return await self._db.write(match_candidates, integration, connection_id, wanted)

    async def link(
        self,
        client_id: int,
        integration: str,
        connection_id: str,
        provider_id: str,
        matched_by: str = "manual",
    ) -> None:
        """Link a provider record to a client by hand (replacing its previous link, if any).

        :raise UnknownConnection: no connection ``connection_id`` of ``integration`` (a link
            to it would dangle).
        :raise LookupError: no client ``client_id``.
        """

        def write(db: sqlite_utils.Database) -> None:
            found = db.conn.execute("SELECT 1 FROM clients WHERE id = ?", [client_id]).fetchone()
            if found is None:
                raise LookupError(f"no such client: {client_id}")
            connection = db.conn.execute(
                "SELECT 1 FROM connections WHERE id = ? AND integration = ?",
                [connection_id, integration],
            ).fetchone()
            if connection is None:
                raise UnknownConnection(f"no {integration} connection {connection_id!r}")
            db.conn.execute(
                "INSERT INTO client_links (client_id, integration, connection_id, provider_id, "
                "matched_by, created_at) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (integration, connection_id, provider_id) DO UPDATE SET "
                "client_id = excluded.client_id, matched_by = excluded.matched_by, "
                "created_at = excluded.created_at",
                [client_id, integration, connection_id, provider_id, matched_by, utcnow()],
            )
            db.conn.execute(
                "DELETE FROM client_reviews WHERE integration = ? AND connection_id = ? "
                "AND provider_id = ?",
                [integration, connection_id, provider_id],
            )

        await self._db.write(write)

    async def reviews(self, limit: int = -1) -> list[dict[str, Any]]:
        """Candidates matching left ambiguous, each with the clients it could belong to
        (``candidates``: id and name), oldest first; at most ``limit`` (-1: all)."""

        def read(db: sqlite_utils.Database) -> list[dict[str, Any]]:
            rows = list(
                db.query(
                    "SELECT integration, connection_id, provider_id, name, email, tax_ids, "
                    "reason, candidates, seen_at FROM client_reviews ORDER BY seen_at, provider_id "
                    "LIMIT ?",
                    [limit],
                )
            )
            wanted = {cid for row in rows for cid in orjson.loads(row["candidates"])}
            names = dict(
                chunked(db, "SELECT id, name FROM clients WHERE id IN ({marks})", (), wanted)
            )
            for row in rows:
                row["tax_ids"] = orjson.loads(row["tax_ids"] or "[]")
                row["candidates"] = [
                    {"id": cid, "name": names.get(cid)} for cid in orjson.loads(row["candidates"])
                ]
            return rows

        return await self._db.read(read)

    async def review_count(self) -> int:
        """How many candidates wait for a person to settle them."""
        row = await self._db.read(
            lambda db: db.execute("SELECT count(*) FROM client_reviews").fetchone()
        )
        return int(row[0])

    async def list(self) -> list[dict[str, Any]]:
        """Every client with its tax ids (``tax_ids``) and links (``links``: integration,
        connection, provider id, how)."""

        def read(db: sqlite_utils.Database) -> list[dict[str, Any]]:
            clients = {
                row["id"]: {**row, "tax_ids": [], "links": []}
                for row in db.query("SELECT id, name, email, created_at FROM clients ORDER BY id")
            }
            for client_id, tax_id in db.execute(
                "SELECT client_id, tax_id FROM client_tax_ids ORDER BY client_id, tax_id"
            ).fetchall():
                clients[client_id]["tax_ids"].append(tax_id)
            for link in db.query(
                "SELECT client_id, integration, connection_id, provider_id, matched_by "
                "FROM client_links ORDER BY integration, connection_id, provider_id"
            ):
                clients[link.pop("client_id")]["links"].append(link)
            return list(clients.values())

        return await self._db.read(read)

    async def client_of(self, integration: str, connection_id: str, provider_id: str) -> int | None:
        """The id of the client a provider record is linked to, or None (not linked)."""
        row = await self._db.read(
            lambda db: db.execute(
                "SELECT client_id FROM client_links WHERE integration = ? AND connection_id = ? "
                "AND provider_id = ?",
                [integration, connection_id, provider_id],
            ).fetchone()
        )
        return None if row is None else int(row[0])
