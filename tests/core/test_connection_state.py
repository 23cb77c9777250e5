"""One state per connection: transitions logged once, backoff, needs-reauthentication from a
sync, a health check or a webhook's handling, what survives a restart, and /api/status."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import structlog
from aiohttp import web

from hub import hookimpl
from hub.connection_state import BACKOFF_BASE_S, BACKOFF_MAX_S, backoff_for
from hub.core import Hub
from hub.errors import AuthenticationError, ServerError
from hub.model import (
    Batch,
    Connection,
    HealthReport,
    HealthStatus,
    HubEvent,
    Integration,
    Stream,
    WebhookEvent,
)
from hub.progress import ProgressDisplay
from hub.schedule import Scheduler
from hub.testing import deliver_webhook
from hub.web.keys import HUB

CONNECTION = "flaky:one"


class Flaky:
    """An integration whose sync, health and webhook handling fail as the test says."""

    def __init__(self) -> None:
        self.sync_error: Exception | None = None
        self.health_error: Exception | None = None
        self.process_error: Exception | None = None
        self.health_calls = 0

    @hookimpl
    def register(self) -> Integration:
        return Integration(
            name="flaky", title="Flaky", streams=(Stream("items"),), default_sync_interval=60
        )

    @hookimpl
    async def sync(self, connection: Connection) -> AsyncIterator[Batch]:
        if self.sync_error is not None:
            raise self.sync_error
        yield Batch("items", [{"id": "1"}], cursor="c1")

    @hookimpl
    def health(self, connection: Connection) -> HealthReport:
        self.health_calls += 1
        if self.health_error is not None:
            raise self.health_error
        return HealthReport(HealthStatus.HEALTHY, "fine")

    @hookimpl
    def webhook(self, request: web.Request, body: bytes) -> list[WebhookEvent]:
        data = orjson.loads(body)
        return [WebhookEvent(data["id"], "item.changed", data, connection_key="one")]

    @hookimpl
    def process(self, event: HubEvent) -> None:
        if self.process_error is not None:
            raise self.process_error


async def flaky_hub(make_hub: Any, config: dict[str, Any] | None = None) -> tuple[Hub, Flaky]:
    flaky = Flaky()
    hub: Hub = await make_hub(plugins=[flaky], config=config)
    await hub.add_connection("flaky", "one", "Flaky One", {}, origin="test")
    return hub, flaky


async def sync(hub: Hub) -> str:
    return (await hub.engine.run(CONNECTION, trigger="test")).state


# --------------------------------------------------------------------------- transitions


async def test_a_failure_and_a_recovery_are_logged_once_each(make_hub: Any) -> None:
    hub, flaky = await flaky_hub(make_hub)
    with structlog.testing.capture_logs() as logs:
        assert await sync(hub) == "succeeded"
        flaky.sync_error = ServerError("provider down", advice="wait for the provider")
        assert [await sync(hub), await sync(hub)] == ["failed", "failed"]
        flaky.sync_error = None
        assert await sync(hub) == "succeeded"
    errors = [e for e in logs if e["log_level"] == "error"]
    assert [(e["event"], e["error_class"], e["advice"]) for e in errors] == [
        ("connection failing", "server", "wait for the provider")
    ]
    assert errors[0]["connection"] == CONNECTION and errors[0]["integration"] == "flaky"
    assert [e["event"] for e in logs if e["event"] == "connection recovered"] == [
        "connection recovered"
    ]
    state = hub.connection_state(CONNECTION)
    assert (state.consecutive_failures, state.last_error, state.backoff_s) == (0, None, 0.0)
    assert state.last_success_at is not None and state.proven_by_sync


async def test_the_last_error_keeps_class_message_time_and_advice(make_hub: Any) -> None:
    hub, flaky = await flaky_hub(make_hub)
    flaky.sync_error = ServerError("provider down", advice="wait for the provider")
    await sync(hub)
    state = hub.connection_state(CONNECTION)
    error = state.last_error
    assert error is not None
    assert (error.error_class, error.message, error.advice) == (
        "server",
        "provider down",
        "wait for the provider",
    )
    assert datetime.now(UTC) - datetime.fromisoformat(error.at) < timedelta(seconds=10)
    assert state.running is None and not state.needs_reauth and not state.proven_by_sync


async def test_the_running_sync_and_its_progress_are_in_the_state(make_hub: Any) -> None:
    hub, _ = await flaky_hub(make_hub)
    seen = []

    def progress(_: object) -> None:
        seen.append(hub.connection_state(CONNECTION).running)

    await hub.engine.run(CONNECTION, trigger="test", progress=progress)
    (running,) = seen
    assert running is not None
    assert (running.state, running.trigger, running.stream, running.records) == (
        "running",
        "test",
        "items",
        1,
    )
    assert hub.connection_state(CONNECTION).running is None


# --------------------------------------------------------------------------- backoff


def test_backoff_doubles_with_each_failure_up_to_the_cap() -> None:
    assert [backoff_for(n) for n in range(4)] == [0, BACKOFF_BASE_S, 2 * BACKOFF_BASE_S, 240]
    assert backoff_for(30) == backoff_for(10_000) == BACKOFF_MAX_S


async def test_backoff_grows_with_failures_and_resets_on_success(make_hub: Any) -> None:
    hub, flaky = await flaky_hub(make_hub)
    flaky.sync_error = ServerError("down")
    backoffs = []
    for _ in range(3):
        await sync(hub)
        state = hub.connection_state(CONNECTION)
        backoffs.append((state.consecutive_failures, state.backoff_s))
        assert state.retry_at is not None and state.last_error is not None
        retry_at = datetime.fromisoformat(state.retry_at)
        assert retry_at - datetime.fromisoformat(state.last_error.at) == timedelta(
            seconds=state.backoff_s
        )
    assert backoffs == [(1, 60.0), (2, 120.0), (3, 240.0)]
    flaky.sync_error = None
    await sync(hub)
    state = hub.connection_state(CONNECTION)
    assert (state.consecutive_failures, state.backoff_s, state.retry_at) == (0, 0.0, None)


async def test_scheduled_syncs_wait_out_the_backoff(make_hub: Any) -> None:
    hub, flaky = await flaky_hub(make_hub)
    scheduler = Scheduler(hub)
    await scheduler.start()
    hub.scheduler = scheduler
    try:
        scheduled = hub.connection_state(CONNECTION)
        assert scheduled.schedule == "60" and scheduled.next_run_at is not None
        flaky.sync_error = ServerError("down")
        for _ in range(3):  # 240 s of backoff: beyond the next scheduled minute
            await sync(hub)
        state = hub.connection_state(CONNECTION)
        assert state.next_run_at is not None and state.retry_at is not None
        assert state.next_run_at >= state.retry_at
        (job,) = [j for j in scheduler.jobs() if j["id"] == f"sync:{CONNECTION}"]
        assert job["next_run_at"] == state.next_run_at
        runs = len(await hub.store.runs.recent(CONNECTION))
        await scheduler._sync(CONNECTION)  # the job fires inside the backoff: skipped
        assert len(await hub.store.runs.recent(CONNECTION)) == runs
        flaky.sync_error = None
        await sync(hub)  # a manual sync runs at once, and its success ends the backoff
        await scheduler._sync(CONNECTION)
        assert len(await hub.store.runs.recent(CONNECTION)) == runs + 2
    finally:
        hub.scheduler = None
        scheduler.shutdown()


# --------------------------------------------------------------------------- needs-reauth


async def test_an_auth_failure_in_a_sync_needs_reauthentication(make_hub: Any) -> None:
    hub, flaky = await flaky_hub(make_hub)
    flaky.sync_error = AuthenticationError("token revoked", status=401)
    await sync(hub)
    state = hub.connection_state(CONNECTION)
    assert (state.needs_reauth, state.health) == (True, HealthStatus.DISCONNECTED)
    assert state.last_error is not None and "reconnect" in state.last_error.advice
    assert flaky.health_calls == 0
    flaky.sync_error = None
    await sync(hub)
    assert not hub.connection_state(CONNECTION).needs_reauth


async def test_reconnecting_clears_needs_reauthentication_and_its_backoff(make_hub: Any) -> None:
    """A person completed the connect flow again: the admin page stops asking for it, and
    the refused credentials' backoff does not hold the next scheduled sync back."""
    hub, flaky = await flaky_hub(make_hub)
    flaky.sync_error = AuthenticationError("token revoked", status=401)
    await sync(hub)
    await sync(hub)
    refused = hub.connection_state(CONNECTION)
    assert refused.needs_reauth and refused.consecutive_failures == 2 and refused.retry_at
    await hub.add_connection("flaky", "one", "Flaky One", {"token": "new"}, origin="oauth")
    state = hub.connection_state(CONNECTION)
    assert not state.needs_reauth
    assert (state.consecutive_failures, state.retry_at, state.last_error) == (0, None, None)
    assert not hub.states.get(CONNECTION).in_backoff()


async def test_an_auth_failure_in_a_health_check_needs_reauthentication(make_hub: Any) -> None:
    hub, flaky = await flaky_hub(make_hub)
    flaky.health_error = AuthenticationError("token revoked", status=401, advice="log in again")
    await hub.health.check(CONNECTION)
    state = hub.connection_state(CONNECTION)
    assert (state.needs_reauth, state.health) == (True, HealthStatus.DISCONNECTED)
    assert state.last_error is not None and state.last_error.advice == "log in again"
    assert state.consecutive_failures == 0  # no sync failed
    flaky.health_error = None
    await hub.health.check(CONNECTION)
    assert not hub.connection_state(CONNECTION).needs_reauth


async def test_a_health_check_that_times_out_keeps_needs_reauthentication(
    make_hub: Any,
) -> None:
    """A timeout or a provider fault says nothing of the credentials: the admin page keeps
    asking for a reconnect until a check or a sync shows they work."""
    hub, flaky = await flaky_hub(make_hub)
    flaky.health_error = AuthenticationError("token revoked", status=401)
    await hub.health.check(CONNECTION)
    flaky.health_error = ServerError("provider timed out", status=504)
    await hub.health.check(CONNECTION)
    state = hub.connection_state(CONNECTION)
    assert (state.needs_reauth, state.health) == (True, HealthStatus.ERROR)
    flaky.health_error = None
    await hub.health.check(CONNECTION)
    assert not hub.connection_state(CONNECTION).needs_reauth


async def test_an_auth_failure_in_a_webhooks_handling_needs_reauthentication(
    hub_client: Any,
) -> None:
    flaky = Flaky()
    client = await hub_client(plugins=[flaky])
    hub: Hub = client.app[HUB]
    await hub.add_connection("flaky", "one", "Flaky One", {}, origin="test")
    flaky.process_error = AuthenticationError("token revoked", status=401)
    status, _ = await deliver_webhook(client, "/webhooks/flaky", b'{"id": "e1"}')
    assert status in (200, 202)
    state = hub.connection_state(CONNECTION)
    assert (state.needs_reauth, state.health) == (True, HealthStatus.DISCONNECTED)
    assert state.last_error is not None and state.last_error.message == "token revoked"
    (event,) = [e for e in await hub.store.inbox.events(None) if e["source"] == "flaky"]
    (delivery,) = [d for d in event["deliveries"] if d["handler"] == "process"]
    assert delivery["state"] == "pending"  # still retried like any failure


# --------------------------------------------------------------------------- health reads it


async def test_health_reports_the_state_to_the_plugin(make_hub: Any) -> None:
    seen = []

    class Reader:
        @hookimpl
        def register(self) -> Integration:
            return Flaky().register()

        @hookimpl
        async def sync(self, connection: Connection) -> AsyncIterator[Batch]:
            yield Batch("items", [])

        @hookimpl
        def health(self, connection: Connection, hub: Hub) -> HealthReport:
            seen.append(hub.connection_state(connection.id).proven_by_sync)
            return HealthReport(HealthStatus.HEALTHY, "fine")

    hub: Hub = await make_hub(plugins=[Reader()], config={"health": {"interval": 60}})
    await hub.add_connection("flaky", "one", "Flaky One", {}, origin="test")
    await hub.health.check(CONNECTION)
    await sync(hub)
    await hub.health.check(CONNECTION)
    assert seen == [False, True]


# --------------------------------------------------------------------------- restart


async def test_the_state_survives_a_restart(make_hub: Any) -> None:
    hub, flaky = await flaky_hub(make_hub)
    await sync(hub)
    flaky.sync_error = ServerError("down")
    await sync(hub)
    flaky.sync_error = AuthenticationError("token revoked", status=401)
    await sync(hub)
    before = hub.connection_state(CONNECTION)
    await hub.stop()

    with structlog.testing.capture_logs() as logs:
        restarted: Hub = await make_hub(plugins=[Flaky()])
    after = restarted.connection_state(CONNECTION)
    assert after.last_success_at == before.last_success_at is not None
    assert (after.consecutive_failures, after.backoff_s) == (2, 120.0)
    assert after.last_error is not None and before.last_error is not None
    assert (after.last_error.error_class, after.last_error.message, after.last_error.at) == (
        "authentication",
        "token revoked",
        before.last_error.at,
    )
    assert (after.needs_reauth, after.health) == (True, HealthStatus.DISCONNECTED)
    assert not [e for e in logs if e["log_level"] == "error"]  # known, not news


# --------------------------------------------------------------------------- /api/status


async def test_api_status_shows_the_state(hub_client: Any) -> None:
    flaky = Flaky()
    client = await hub_client(plugins=[flaky])
    hub: Hub = client.app[HUB]
    await hub.add_connection("flaky", "one", "Flaky One", {}, origin="test")
    flaky.sync_error = ServerError("down", advice="wait for the provider")
    await sync(hub)
    await sync(hub)
    status = await (await client.get("/api/status")).json()
    (integration,) = [i for i in status["integrations"] if i["name"] == "flaky"]
    (connection,) = integration["connections"]
    assert {k: connection[k] for k in ("last_error", "last_error_class", "syncing")} == {
        "last_error": "down",
        "last_error_class": "server",
        "syncing": False,
    }
    assert connection["last_error_advice"] == "wait for the provider"
    assert connection["last_error_at"] and connection["retry_at"]
    assert (connection["consecutive_failures"], connection["backoff_s"]) == (2, 120.0)
    assert (connection["needs_reauth"], connection["running"]) == (False, None)
    assert connection["schedule"] is None  # the test client runs no scheduler
    for key in ("status", "message", "checks", "last_success_at", "next_sync_at", "streams"):
        assert key in connection

    page = await (await client.get("/admin")).text()
    assert "2 failures in a row" in page and "wait for the provider" in page


async def test_the_admin_page_shows_needs_reauthentication(hub_client: Any) -> None:
    flaky = Flaky()
    client = await hub_client(plugins=[flaky])
    hub: Hub = client.app[HUB]
    await hub.add_connection("flaky", "one", "Flaky One", {}, origin="test")
    page = await (await client.get("/admin")).text()
    assert ">needs re-authentication</span>" not in page
    flaky.sync_error = AuthenticationError("token revoked", status=401)
    await sync(hub)
    page = await (await client.get("/admin")).text()
    assert ">needs re-authentication</span>" in page
    assert "reconnect the account" in page  # the error's advice


async def test_the_sync_command_prints_the_errors_advice(make_hub: Any) -> None:
    hub, flaky = await flaky_hub(make_hub)
    flaky.sync_error = ServerError("down", advice="wait for the provider")
    result = await hub.engine.run(CONNECTION, trigger="cli")
    out = io.StringIO()
    ProgressDisplay(out).finish(result)
    assert "error (server): down\n  what to do: wait for the provider\n" in out.getvalue()
