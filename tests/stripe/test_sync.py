"""Sync: planning per stream (events, full reads, resumption, retention, reconciliation)."""

from __future__ import annotations

from plugins.stripe.sync import EVENT_RETENTION_S, oldest_cursor, plan_run

NOW = 1_800_000_000.0
DAY = 86400


def test_each_stream_gets_events_a_full_read_or_its_resumption():
    fresh = {"event": "evt_9", "event_created": NOW - 60, "full_at": NOW - 3600}
    cursors = {
        "customers": fresh,
        "products": {"full": {"after": "prod_5", "event": "evt_1", "event_created": 1}},
        "prices": {**fresh, "event_created": NOW - EVENT_RETENTION_S},
        "invoices": {**fresh, "full_at": NOW - 2 * DAY},
        "charges": {"event": None, "event_created": 0, "full_at": NOW - 60},
    }
    streams = [*cursors, "refunds"]
    plan = plan_run(streams, cursors, NOW, NOW, reconcile_s=DAY)
    assert set(plan.events) == {"customers", "charges"}
    assert plan.full == [
        ("products", cursors["products"]["full"], False),  # resumed, as the pass it was
        ("prices", None, True),  # beyond the 30 days of events: re-read
        ("invoices", None, True),  # last full read over a day ago: reconciled
        ("refunds", None, False),  # never read
    ]


def test_the_oldest_cursor_decides_where_events_are_read_from():
    cursors = [
        {"event": "evt_b", "event_created": 200},
        {"event": "evt_a", "event_created": 100},
    ]
    assert oldest_cursor(cursors) == "evt_a"
    assert oldest_cursor([*cursors, {"event": None, "event_created": 0}]) is None
