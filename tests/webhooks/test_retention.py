"""Inbox retention: finished events and their raw requests go after retention_days; dead and
pending ones stay whatever their age."""

from __future__ import annotations

import sqlite3

from hub.hookspecs import hookimpl
from hub.model import HubEvent
from hub.testing import deliver_webhook, generic_signature
from hub.web.keys import HUB

CONFIG = {"webhooks": {"generic": {"tool": {"secret": "s"}}, "max_attempts": 1}}


class Picky:
    """Fails events whose body says so (so they are dead-lettered after one attempt)."""

    __name__ = "picky"

    @hookimpl
    def event(self, event: HubEvent) -> None:
        if event.data.get("fail"):
            raise RuntimeError("refused")


async def test_prune_keeps_dead_letters_and_recent_events(hub_client):
    client = await hub_client(plugins=[Picky()], config=CONFIG, authorized=False)
    hub = client.app[HUB]
    for number, body in enumerate([b'{"n": 1}', b'{"n": 2}', b'{"fail": true}']):
        headers = {"X-Signature": generic_signature("s", body), "webhook-id": f"e{number}"}
        assert (await deliver_webhook(client, "/webhooks/generic/tool", body, headers))[0] == 200

    conn = sqlite3.connect(hub.settings.store.path)
    with conn:  # age the first and the dead-lettered event past the retention
        conn.execute(
            "UPDATE events SET created_at = '2000-01-01' WHERE event_id IN ('tool:e0', 'tool:e2')"
        )
        conn.execute("UPDATE webhook_requests SET received_at = '2000-01-01'")
    conn.close()

    events, requests = await hub.store.inbox.prune(older_than_days=30)
    assert (events, requests) == (1, 1)
    conn = sqlite3.connect(hub.settings.store.path)
    left = {row[0] for row in conn.execute("SELECT event_id FROM events WHERE source = 'generic'")}
    orphans = conn.execute(
        "SELECT count(*) FROM deliveries WHERE event NOT IN (SELECT id FROM events)"
    ).fetchone()[0]
    conn.close()
    assert left == {"tool:e1", "tool:e2"}  # recent, and dead (kept for replay)
    assert orphans == 0
    assert await hub.store.inbox.prune(older_than_days=30) == (0, 0)


def test_pruning_requests_scans_events_once_not_once_per_request(tmp_path):
    """A correlated lookup per request (events have no index on request_id) would make
    pruning quadratic in the inbox's size; the plan must read events once."""
    from hub.store.database import Database
    from hub.store.inbox import PRUNE_REQUESTS_SQL

    db = Database(tmp_path / "hub.db")
    try:
        plan = db.read_sync(
            lambda conn: conn.execute(f"EXPLAIN QUERY PLAN {PRUNE_REQUESTS_SQL}", ["x"]).fetchall()
        )
    finally:
        db.close()
    details = " | ".join(row[-1] for row in plan)
    assert "CORRELATED" not in details, details
    assert "LIST SUBQUERY" in details, details


def test_listing_dead_or_pending_events_reads_only_those_events(tmp_path):
    """Dead letters are found through the deliveries' state index, not by scanning every
    event of a large inbox."""
    from hub.store.database import Database
    from hub.store.inbox import EVENT_FILTERS, EVENT_LIST_SQL

    db = Database(tmp_path / "hub.db")
    sql = f"EXPLAIN QUERY PLAN {EVENT_LIST_SQL.format(where=EVENT_FILTERS['dead'])}"
    try:
        plan = db.read_sync(lambda conn: conn.execute(sql, [100]).fetchall())
    finally:
        db.close()
    details = " | ".join(row[-1] for row in plan)
    assert "SCAN e" not in details and "USING INDEX deliveries_due" in details, details
