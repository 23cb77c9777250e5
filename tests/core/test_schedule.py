"""The scheduler: triggers, the jobs it keeps, scheduled syncs, busy skips and shutdown."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import structlog
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from custom_accounting.sandbox import RunningSandbox, SandboxConfig, start_sandbox

from hub.core import Hub
from hub.errors import ConfigError
from hub.schedule import Scheduler, trigger_for
from hub.testing import ADMIN_TOKEN, SettingsFactory, build_hub
from hub.web.app import create_app
from hub.web.keys import HUB, SCHEDULER
from tests.conftest import ledger_config

CONNECTION = "custom_accounting:default"
SYNC_JOB = f"sync:{CONNECTION}"


@pytest.fixture
def scheduled_client(
    hub_config: SettingsFactory, aiohttp_client: Any
) -> Callable[..., Awaitable[Any]]:
    """Like ``hub_client``, but the app runs its scheduler."""

    async def make(config: dict[str, Any] | None = None) -> Any:
        settings = hub_config(config)
        app = create_app(settings, hub=build_hub(settings), schedule=True)
        return await aiohttp_client(app, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})

    return make


async def status_of(client: Any) -> dict[str, Any]:
    response = await client.get("/api/status")
    assert response.status == 200
    result: dict[str, Any] = await response.json()
    return result


def ledger_connection(status: dict[str, Any]) -> dict[str, Any]:
    (integration,) = [i for i in status["integrations"] if i["name"] == "custom_accounting"]
    (connection,) = integration["connections"]
    result: dict[str, Any] = connection
    return result


def seconds_until(iso: str) -> float:
    return (datetime.fromisoformat(iso) - datetime.now(UTC)).total_seconds()


# --------------------------------------------------------------------------- trigger_for


@pytest.mark.parametrize("interval", [3600, "3600", " 3600 "])
def test_seconds_make_an_interval_trigger(interval: int | str) -> None:
    trigger = trigger_for(interval)
    assert isinstance(trigger, IntervalTrigger)
    assert trigger.interval == timedelta(seconds=3600)


def test_a_cron_expression_makes_a_cron_trigger() -> None:
    trigger = trigger_for("*/5 * * * *")
    assert isinstance(trigger, CronTrigger)
    start = datetime(2025, 1, 1, 12, 1, 30, tzinfo=UTC)
    assert trigger.get_next_fire_time(None, start) == datetime(2025, 1, 1, 12, 5, tzinfo=UTC)


@pytest.mark.parametrize(
    ("interval", "hint"),
    [
        ("0", "must be positive"),
        (0, "must be positive"),
        ("-5", "must be positive"),
        (-5, "must be positive"),
        ("every day", "is not seconds or cron"),
        ("61 * * * *", "is not seconds or cron"),
        ("", "is not seconds or cron"),
        ("²", "is not seconds or cron"),
        (10**30, "too large"),
    ],
)
def test_bad_intervals_are_config_errors(interval: int | str, hint: str) -> None:
    with pytest.raises(ConfigError) as caught:
        trigger_for(interval)
    message = str(caught.value)
    assert hint in message
    assert repr(interval) in message
    assert "\n" not in message


@pytest.mark.parametrize("interval", ["every day", "0", "61 * * * *"])
def test_an_invalid_sync_interval_is_rejected_at_load(
    hub_config: SettingsFactory, ledger: RunningSandbox, interval: str
) -> None:
    hub = Hub(hub_config(ledger_config(ledger, sync_interval=interval)))
    with pytest.raises(ConfigError) as caught:
        hub.load_plugins()
    assert "integrations.custom_accounting.sync_interval" in str(caught.value)
    assert repr(interval) in str(caught.value)
    assert not hub.loaded


def test_a_valid_sync_interval_loads(hub_config: SettingsFactory, ledger: RunningSandbox) -> None:
    hub = Hub(hub_config(ledger_config(ledger, sync_interval="*/15 * * * *")))
    hub.load_plugins()
    assert hub.loaded


# --------------------------------------------------------------------------- the running app


async def test_jobs_of_a_running_app(scheduled_client: Any, ledger: RunningSandbox) -> None:
    client = await scheduled_client(
        {**ledger_config(ledger, sync_interval=1), "sync": {"misfire_grace_time": 42}}
    )
    scheduler: Scheduler = client.app[SCHEDULER]
    assert scheduler.running and scheduler.scheduler.running
    jobs = {job.id: job for job in scheduler.scheduler.get_jobs()}
    assert {SYNC_JOB, "health", "alert-reminders", "runs-sweep"} <= set(jobs)
    for job in jobs.values():
        assert job.coalesce is True
        assert job.max_instances == 1
        assert job.misfire_grace_time == 42
    assert jobs[SYNC_JOB].trigger.interval == timedelta(seconds=1)

    status = await status_of(client)
    listed = {job["id"]: job for job in status["jobs"]}
    assert set(listed) == set(jobs)
    for job in listed.values():
        assert job["name"]
        assert datetime.fromisoformat(job["next_run_at"]).tzinfo is not None
    next_sync = ledger_connection(status)["next_sync_at"]
    assert next_sync is not None
    assert -1 < seconds_until(next_sync) <= 1.5


async def test_the_scheduler_runs_a_sync_by_itself(
    scheduled_client: Any, ledger: RunningSandbox
) -> None:
    client = await scheduled_client(ledger_config(ledger, sync_interval=1))
    hub: Hub = client.app[HUB]
    scheduled: list[dict[str, Any]] = []
    for _ in range(100):  # at most 5 s
        runs = await hub.store.runs.recent(CONNECTION)
        scheduled = [r for r in runs if r["trigger"] == "schedule" and r["state"] == "succeeded"]
        if scheduled:
            break
        await asyncio.sleep(0.05)
    assert scheduled, f"no scheduled sync succeeded: {runs}"
    assert scheduled[-1]["created"] == 2530
    status = await status_of(client)
    connection = ledger_connection(status)
    assert connection["last_success_at"] is not None
    assert {s["stream"]: s["records"] for s in connection["streams"]} == {
        "accounts": 30,
        "transactions": 2500,
    }


@pytest.mark.parametrize(
    ("extra", "expected_s"),
    [({}, 900), ({"sync_interval": 120}, 120), ({"sync_interval": "7200"}, 7200)],
    ids=["plugin-default", "config-seconds", "config-seconds-text"],
)
async def test_interval_from_plugin_default_or_config(
    scheduled_client: Any, ledger: RunningSandbox, extra: dict[str, Any], expected_s: int
) -> None:
    client = await scheduled_client(ledger_config(ledger, **extra))
    job = client.app[SCHEDULER].scheduler.get_job(SYNC_JOB)
    assert job.trigger.interval == timedelta(seconds=expected_s)
    next_sync = ledger_connection(await status_of(client))["next_sync_at"]
    assert expected_s - 5 < seconds_until(next_sync) <= expected_s


async def test_a_cron_sync_interval(scheduled_client: Any, ledger: RunningSandbox) -> None:
    client = await scheduled_client(ledger_config(ledger, sync_interval="*/5 * * * *"))
    job = client.app[SCHEDULER].scheduler.get_job(SYNC_JOB)
    assert isinstance(job.trigger, CronTrigger)
    next_sync = ledger_connection(await status_of(client))["next_sync_at"]
    when = datetime.fromisoformat(next_sync)
    assert when.minute % 5 == 0 and when.second == 0
    assert 0 < seconds_until(next_sync) <= 300


async def test_the_scheduler_shuts_down_with_the_app(
    scheduled_client: Any, ledger: RunningSandbox
) -> None:
    client = await scheduled_client(ledger_config(ledger))
    scheduler: Scheduler = client.app[SCHEDULER]
    assert scheduler.running and scheduler.scheduler.running
    await client.close()
    assert not scheduler.running
    assert not scheduler.scheduler.running
    scheduler.shutdown()  # a second shutdown is a no-op


async def test_no_scheduler_when_schedule_is_off(hub_client: Any) -> None:
    client = await hub_client()
    assert client.app[SCHEDULER] is None
    assert (await status_of(client))["jobs"] == []


# --------------------------------------------------------------------------- busy connections


@pytest.fixture
async def slow_ledger() -> AsyncIterator[RunningSandbox]:
    """A sandbox whose listings each take 0.3 s."""
    sandbox = await start_sandbox(SandboxConfig(accounts=5, transactions=50, delay=0.3))
    yield sandbox
    await sandbox.close()


async def test_a_scheduled_run_during_a_running_sync_is_skipped(
    make_hub: Any, slow_ledger: RunningSandbox
) -> None:
    hub: Hub = await make_hub(config=ledger_config(slow_ledger))
    scheduler = Scheduler(hub)  # not started: the job's function is called directly
    run_id = await hub.engine.start(CONNECTION, trigger="test")
    assert hub.connection_state(CONNECTION).running is not None
    with structlog.testing.capture_logs() as logs:
        await scheduler._sync(CONNECTION)
    (skipped,) = [e for e in logs if e["event"] == "scheduled sync skipped"]
    assert skipped["connection"] == CONNECTION
    assert f"run {run_id}" in skipped["reason"]
    assert hub.connection_state(CONNECTION).running is not None  # the first run goes on untouched

    for _ in range(100):
        if hub.connection_state(CONNECTION).running is None:
            break
        await asyncio.sleep(0.05)
    runs = await hub.store.runs.recent(CONNECTION)
    assert [(r["id"], r["trigger"], r["state"]) for r in runs] == [(run_id, "test", "succeeded")]


async def test_a_scheduled_run_of_a_removed_connection_is_skipped(make_hub: Any) -> None:
    hub: Hub = await make_hub()
    scheduler = Scheduler(hub)
    with structlog.testing.capture_logs() as logs:
        await scheduler._sync("custom_accounting:gone")
    assert [e["event"] for e in logs] == ["scheduled sync skipped"]
    assert await hub.store.runs.recent() == []


async def test_add_and_remove_a_sync_job(make_hub: Any, ledger: RunningSandbox) -> None:
    hub: Hub = await make_hub(config=ledger_config(ledger, sync_interval=600))
    scheduler = Scheduler(hub)
    await scheduler.start()

    def sync_jobs() -> list[str]:
        return [job.id for job in scheduler.scheduler.get_jobs() if job.id.startswith("sync:")]

    try:
        assert sync_jobs() == [SYNC_JOB]
        scheduler.add_sync_job(CONNECTION, "custom_accounting")  # replaces, no duplicate
        assert sync_jobs() == [SYNC_JOB]
        scheduler.remove_sync_job(CONNECTION)
        scheduler.remove_sync_job(CONNECTION)  # no-op
        assert sync_jobs() == []
        scheduler.add_sync_job("generic:x", "generic")  # no default interval: no job
        assert sync_jobs() == []
    finally:
        scheduler.shutdown()
    assert not scheduler.running


async def test_connections_added_or_removed_while_running_are_scheduled_or_not(
    scheduled_client: Any, ledger: RunningSandbox
) -> None:
    client = await scheduled_client(ledger_config(ledger))
    hub = client.app[HUB]
    scheduler: Scheduler = client.app[SCHEDULER]
    assert hub.scheduler is scheduler
    added = await hub.add_connection(
        "custom_accounting", "second", "Ledger second", {"api_token": "t"}, origin="oauth"
    )
    assert scheduler.scheduler.get_job(f"sync:{added.id}") is not None
    assert await hub.remove_connection(added.id)
    assert scheduler.scheduler.get_job(f"sync:{added.id}") is None
    assert [c.id for c in await hub.connections("custom_accounting")] == [
        "custom_accounting:default"
    ]
    assert not await hub.remove_connection(added.id)
    await client.close()
    assert hub.scheduler is None


async def test_a_job_cancelled_by_shutdown_ends_quietly() -> None:
    """A job running when the daemon stops is cancelled: no traceback, no "raised an
    exception" from the scheduler, and the cancellation does not escape the job."""
    from hub.schedule import _until_shutdown

    started = asyncio.Event()

    async def health_checks() -> None:
        started.set()
        await asyncio.sleep(60)

    task = asyncio.create_task(_until_shutdown(health_checks)())
    await started.wait()
    task.cancel()
    await asyncio.wait_for(task, 5)  # it ended, not raised
    assert not task.cancelled()
    assert _until_shutdown(health_checks).__name__ == "health_checks"  # the job keeps its name
