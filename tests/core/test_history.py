"""History retention: finished runs, health changes and resolved alerts older than
``store.history_days`` are deleted; what is still running, open or latest stays."""

from __future__ import annotations

import sqlite3
from typing import Any

from hub.schedule import Scheduler

OLD = "2000-01-01T00:00:00.000000+00:00"


def age(hub: Any, sql: str) -> None:
    conn = sqlite3.connect(hub.settings.store.path)
    with conn:
        conn.execute(sql, [OLD])
    conn.close()


async def test_old_history_goes_and_what_matters_stays(make_hub):
    hub = await make_hub()
    runs, health = hub.store.runs, hub.store.health
    old_run = await runs.start("x:a", "x", "full", "cli", ["s"])
    await runs.finish(old_run, "succeeded", {}, 1.0)
    recent_run = await runs.start("x:a", "x", "incremental", "cli", ["s"])
    await runs.finish(recent_run, "failed", {}, 1.0, "network", "boom")
    running = await runs.start("x:b", "x", "full", "cli", ["s"])
    age(hub, "UPDATE sync_runs SET started_at = ?")  # every run started long ago
    age(hub, f"UPDATE sync_runs SET finished_at = ? WHERE id = {old_run}")

    for status in ("error", "healthy", "error"):  # a: three changes, the last one open
        await health.record_change("x:a", "x", status, status, [])
    await health.record_change("x:b", "x", "error", "down", [])  # b: one change, still open
    age(hub, "UPDATE health_history SET at = ?")
    age(hub, "UPDATE alerts SET created_at = ?")
    age(hub, "UPDATE alerts SET resolved_at = ? WHERE resolved_at IS NOT NULL")

    assert await runs.prune(older_than_days=30) == 1
    assert await runs.get(old_run) is None
    assert (await runs.get(recent_run))["state"] == "failed"
    assert (await runs.get(running))["state"] == "queued"  # never deleted while active

    changes, alerts = await health.prune(older_than_days=30)
    assert (changes, alerts) == (2, 2)  # a's first two changes and their resolved alerts
    assert [h["status"] for h in await health.history("x:a")] == ["error"]  # the latest stays
    assert [h["status"] for h in await health.history("x:b")] == ["error"]
    assert {a["connection_id"] for a in await health.open_alerts()} == {"x:a", "x:b"}
    assert await runs.prune(older_than_days=30) == 0
    assert await health.prune(older_than_days=30) == (0, 0)


async def test_the_scheduler_prunes_history_every_six_hours(make_hub):
    hub = await make_hub(config={"store": {"history_days": 7}})
    scheduler = Scheduler(hub)
    await scheduler.start()
    try:
        job = scheduler.scheduler.get_job("history-prune")
        assert job is not None and job.trigger.interval.total_seconds() == 6 * 3600
        run = await hub.store.runs.start("x:a", "x", "full", "cli", ["s"])
        await hub.store.runs.finish(run, "succeeded", {}, 1.0)
        age(hub, "UPDATE sync_runs SET finished_at = ?")
        await job.func()
        assert await hub.store.runs.get(run) is None
    finally:
        scheduler.shutdown()
