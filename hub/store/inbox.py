"""The durable inbox: webhook requests, events (webhook and hub), and per-handler deliveries.

Storing an event records the event only (``routed = 0``); the dispatcher routes it when it
delivers, resolving its handlers then (:meth:`Inbox.route`), so handlers and subscriptions
added or removed in between are honoured. An event's state: ``pending`` while unrouted or any
delivery is pending, ``dead`` when any was dead-lettered, else ``done``.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import sqlite_utils

from hub.store.bulk import insert_rows
from hub.store.clock import next_id, utcnow
from hub.store.content import conflict_id, content_hash
from hub.store.database import Database

EVENT_STATES = ("pending", "dead", "done")


@dataclass(slots=True)
class NewEvent:
    """An event to store; its handlers are resolved when it is routed."""

    source: str
    event_id: str
    type: str
    data: Any
    connection_key: str | None


def event_row(event: NewEvent, request_id: int | None, created_at: str) -> tuple[Any, ...]:
    """The ``events`` row of ``event``, in :data:`EVENTS_SQL`'s column order."""
    return (
        event.source,
        event.event_id,
        event.type,
        event.connection_key,
        orjson.dumps(event.data).decode(),
        request_id,
        content_hash(event.data),
        created_at,
    )


@dataclass(slots=True)
class PreparedEvents:
    """Events turned into row tuples before the commit, so the transaction only runs SQL.

    ``batch`` is the webhook request the events came with; it also marks the rows this insert
    creates (a duplicate keeps its first batch), which is how new events are counted.
    """

    batch: int
    event_rows: list[tuple[Any, ...]]

    @classmethod
    def build(cls, events: Sequence[NewEvent]) -> PreparedEvents:
        """Serialise ``events`` under a new request id."""
        batch, now = next_id(), utcnow()
        return cls(batch, [event_row(e, batch, now) for e in events])


@dataclass(slots=True)
class WebhookDelivery:
    """One accepted webhook request ready to store: its raw body, kept headers and events."""

    request_row: tuple[Any, ...]
    events: PreparedEvents

    @classmethod
    def build(
        cls, source: str, headers: dict[str, str], body: bytes, events: Sequence[NewEvent]
    ) -> WebhookDelivery:
        """Prepare a request and its parsed events for :func:`insert_webhooks`."""
        prepared = PreparedEvents.build(events)
        received_at = prepared.event_rows[0][-1] if prepared.event_rows else utcnow()
        row = (prepared.batch, source, received_at, orjson.dumps(headers).decode(), body)
        return cls(row, prepared)


@dataclass(slots=True)
class Stored:
    """What storing a request or event did: rows created and duplicates ignored."""

    created: int
    duplicates: int
    conflicts: tuple[tuple[str, str], ...] = ()
    """(event id, id stored as) of the created events whose id was known with other content."""


@dataclass(frozen=True)
class Unrouted:
    """A stored event waiting for its handlers to be resolved."""

    event: int
    source: str
    type: str
    webhook: bool
    """It came with a webhook request (its source's ``process`` handles it), not ``emit``."""


@dataclass(frozen=True)
class Due:
    """A delivery whose time has come."""

    event: int
    handler: str
    attempts: int
    source: str
    event_id: str
    type: str
    connection_key: str | None
    data: Any
    created_at: str


# new events are unrouted (the column's default)
EVENTS_COLUMNS = (
    "source, event_id, type, connection_key, data, request_id, content_hash, created_at"
)
EVENTS_SQL = f"INSERT OR IGNORE INTO events ({EVENTS_COLUMNS}) VALUES {{values}}"
# rows of EVENTS_SQL plus their conflict id (column9): those whose id is stored with another
# content hash become new events under the conflict id (ignored if that one is stored too)
CONFLICTS_SQL = (
    f"INSERT OR IGNORE INTO events ({EVENTS_COLUMNS}) "
    "SELECT v.column1, v.column9, v.column3, v.column4, v.column5, v.column6, v.column7, "
    "v.column8 FROM (VALUES {values}) v WHERE NOT EXISTS (SELECT 1 FROM events e "
    "WHERE e.source = v.column1 AND e.event_id = v.column2 AND e.content_hash = v.column7)"
)
REQUESTS_SQL = (
    "INSERT INTO webhook_requests (id, source, received_at, headers, body) VALUES {values}"
)
DELIVERIES_SQL = (
    "INSERT OR IGNORE INTO deliveries (event, handler, state, next_at, updated_at) VALUES {values}"
)
# NOT IN over one scan of events, not a lookup per request: events have no index on
# request_id (the webhook path writes them too often to keep one).
PRUNE_REQUESTS_SQL = (
    "DELETE FROM webhook_requests WHERE received_at < ? AND id NOT IN "
    "(SELECT request_id FROM events WHERE request_id IS NOT NULL)"
)
EVENT_LIST_SQL = (
    "SELECT e.id, e.source, e.event_id, e.type, e.connection_key, e.created_at, e.data, "
    "e.routed FROM events e {where} ORDER BY e.id DESC LIMIT ?"
)
EVENT_FILTERS = {
    None: "",
    # from the deliveries' state index to the events, not a scan of every event
    "pending": "WHERE e.routed = 0 OR e.id IN "
    "(SELECT d.event FROM deliveries d WHERE d.state = 'pending')",
    "dead": "WHERE e.id IN (SELECT d.event FROM deliveries d WHERE d.state = 'dead')",
    "done": "WHERE e.routed = 1 AND NOT EXISTS (SELECT 1 FROM deliveries d "
    "WHERE d.event = e.id AND d.state != 'done')",
}


def insert_event_groups(
    db: sqlite_utils.Database, groups: Sequence[PreparedEvents]
) -> list[Stored]:
    """Insert each group's events, unrouted, ignoring a known (source, event id) with the same
    content; what each group created and ignored, in order.

    An event whose id is stored with other content is a new event, stored under its
    :func:`~hub.store.content.conflict_id`. That check runs only when the plain insert
    ignored some rows, so a group of new events costs what it did before.
    """
    conn = db.conn
    rows = [row for group in groups for row in group.event_rows]
    created_total = insert_rows(conn, EVENTS_SQL, rows)  # not total_changes: it wraps at 2**31
    if created_total == len(rows):
        return [Stored(len(group.event_rows), 0) for group in groups]
    # each row + the id it gets if its (source, event_id) is stored with another content_hash
    candidates = [(*row, conflict_id(row[1], row[6])) for row in rows]
    conflicts_created = insert_rows(conn, CONFLICTS_SQL, candidates)
    created_total += conflicts_created
    # count the new rows (the highest row ids) per request
    counts = dict(
        conn.execute(
            "SELECT request_id, count(*) FROM events WHERE id > last_insert_rowid() - ? "
            "GROUP BY request_id",
            [created_total],
        ).fetchall()
        if created_total
        else []
    )
    conflicts: dict[int, list[tuple[str, str]]] = {}
    if conflicts_created:  # the conflict rows are the newest of all
        originals = {row[8]: row[1] for row in candidates}
        for request_id, stored_as in conn.execute(
            "SELECT request_id, event_id FROM events WHERE id > last_insert_rowid() - ? "
            "ORDER BY id",
            [conflicts_created],
        ):
            conflicts.setdefault(request_id, []).append((originals[stored_as], stored_as))
    return [
        Stored(
            counts.get(group.batch, 0),
            len(group.event_rows) - counts.get(group.batch, 0),
            tuple(conflicts.get(group.batch, ())),
        )
        for group in groups
    ]


def insert_webhooks(db: sqlite_utils.Database, requests: Sequence[WebhookDelivery]) -> list[Stored]:
    """Store many requests in the caller's one transaction (group commit)."""
    insert_rows(db.conn, REQUESTS_SQL, [request.request_row for request in requests])
    return insert_event_groups(db, [request.events for request in requests])


class Inbox:
    """Reads and state changes of events and deliveries."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def add_event(self, event: NewEvent) -> bool:
        """Store one hub event (from the bus, no webhook request); False if its id is known."""
        row = event_row(event, None, utcnow())
        created = await self._db.write(lambda db: insert_rows(db.conn, EVENTS_SQL, [row]))
        return created == 1

    async def unrouted(self, limit: int = 500) -> list[Unrouted]:
        """Up to ``limit`` stored events whose handlers are not resolved yet, oldest first."""
        rows = await self._db.read(
            lambda db: db.execute(
                "SELECT id, source, type, request_id IS NOT NULL FROM events "
                "WHERE routed = 0 ORDER BY id LIMIT ?",
                [limit],
            ).fetchall()
        )
        return [Unrouted(r[0], r[1], r[2], bool(r[3])) for r in rows]

    async def route(self, routes: Sequence[tuple[int, Sequence[str]]]) -> None:
        """Give each (event, handlers) its deliveries, due now, and mark the events routed.

        ``routes`` covers every unrouted event between its lowest and highest id (what
        :meth:`unrouted` returns: the oldest, in order), so one range update marks them.
        """
        if not routes:
            return
        at, now = time.time(), utcnow()
        deliveries = [(e, h, "pending", at, now) for e, handlers in routes for h in handlers]
        ids = [e for e, _ in routes]

        def write(db: sqlite_utils.Database) -> None:
            insert_rows(db.conn, DELIVERIES_SQL, deliveries)
            db.conn.execute(
                "UPDATE events SET routed = 1 WHERE routed = 0 AND id BETWEEN ? AND ?",
                [min(ids), max(ids)],
            )

        await self._db.write(write)

    async def due(
        self, limit: int = 200, skip: Collection[tuple[int, str]] = frozenset()
    ) -> list[Due]:
        """Up to ``limit`` pending deliveries whose next attempt time has passed, oldest first,
        leaving out the (event, handler) pairs in ``skip`` (those running: their data is not
        parsed, and they do not crowd out the others)."""
        rows = await self._db.read(
            lambda db: db.execute(
                "SELECT d.event, d.handler, d.attempts, e.source, e.event_id, e.type, "
                "e.connection_key, e.data, e.created_at FROM deliveries d "
                "JOIN events e ON e.id = d.event "
                "WHERE d.state = 'pending' AND d.next_at <= ? ORDER BY d.next_at LIMIT ?",
                [time.time(), limit + len(skip)],
            ).fetchall()
        )
        fresh = [r for r in rows if (r[0], r[1]) not in skip][:limit]
        return [
            Due(r[0], r[1], r[2], r[3], r[4], r[5], r[6], orjson.loads(r[7]), r[8]) for r in fresh
        ]

    async def next_due_at(self) -> float | None:
        """When the earliest pending delivery is due (unix time), or None."""
        row = await self._db.read(
            lambda db: db.execute(
                "SELECT min(next_at) FROM deliveries WHERE state = 'pending'"
            ).fetchone()
        )
        return float(row[0]) if row and row[0] is not None else None

    async def record(
        self, outcomes: Sequence[tuple[int, str, str, int, float, str | None]]
    ) -> None:
        """Write many delivery outcomes: (event, handler, state, attempts, next_at, error)."""
        now = utcnow()

        def write(db: sqlite_utils.Database) -> None:
            db.conn.executemany(
                "UPDATE deliveries SET state = ?, attempts = ?, next_at = ?, last_error = ?, "
                "updated_at = ? WHERE event = ? AND handler = ?",
                [(s, a, n, err, now, e, h) for e, h, s, a, n, err in outcomes],
            )

        await self._db.write(write)

    async def replay(self, event: int) -> int:
        """Make an event's dead deliveries pending again, due now; return how many."""

        def write(db: sqlite_utils.Database) -> int:
            return int(
                db.execute(
                    "UPDATE deliveries SET state = 'pending', attempts = 0, next_at = ?, "
                    "updated_at = ? WHERE event = ? AND state = 'dead'",
                    [time.time(), utcnow(), event],
                ).rowcount
            )

        return await self._db.write(write)

    async def events(self, state: str | None, limit: int = 100) -> list[dict[str, Any]]:
        """Events (newest first) with their deliveries, optionally only those in ``state``."""
        where = EVENT_FILTERS[state]

        def read(db: sqlite_utils.Database) -> list[dict[str, Any]]:
            events = list(db.query(EVENT_LIST_SQL.format(where=where), [limit]))
            for event in events:
                event["data"] = orjson.loads(event["data"])
                event["deliveries"] = list(
                    db.query(
                        "SELECT handler, state, attempts, last_error, updated_at "
                        "FROM deliveries WHERE event = ? ORDER BY handler",
                        [event["id"]],
                    )
                )
                states = {d["state"] for d in event["deliveries"]}
                if not event.pop("routed"):
                    states.add("pending")
                event["state"] = (
                    "dead" if "dead" in states else "pending" if "pending" in states else "done"
                )
            return events

        return await self._db.read(read)

    async def counts(self) -> dict[str, int]:
        """Delivery counts by state (for /api/status and the admin page); an event not yet
        routed counts as one pending."""
        rows = await self._db.read(
            lambda db: db.execute(
                "SELECT state, count(*) FROM deliveries GROUP BY state UNION ALL "
                "SELECT 'pending', count(*) FROM events WHERE routed = 0"
            ).fetchall()
        )
        counts = {state: 0 for state in EVENT_STATES}
        for state, count in rows:
            counts[state] = counts.get(state, 0) + int(count)
        return counts

    async def exists(self, event: int) -> bool:
        """True if an event with this row id exists."""
        row = await self._db.read(
            lambda db: db.execute("SELECT 1 FROM events WHERE id = ?", [event]).fetchone()
        )
        return row is not None

    async def prune(self, older_than_days: int) -> tuple[int, int]:
        """Delete finished events (every delivery done, or none) and the raw requests no kept
        event refers to, when older than ``older_than_days``; dead and pending ones stay.

        :return: (events deleted, requests deleted).
        """
        cutoff = (datetime.now(UTC) - timedelta(days=older_than_days)).isoformat()

        def write(db: sqlite_utils.Database) -> tuple[int, int]:
            conn = db.conn
            events = conn.execute(
                "DELETE FROM events WHERE created_at < ? AND routed = 1 AND NOT EXISTS "
                "(SELECT 1 FROM deliveries d WHERE d.event = events.id AND d.state != 'done')",
                [cutoff],
            ).rowcount
            conn.execute("DELETE FROM deliveries WHERE event NOT IN (SELECT id FROM events)")
            requests = conn.execute(PRUNE_REQUESTS_SQL, [cutoff]).rowcount
            return int(events), int(requests)

        return await self._db.write(write)
