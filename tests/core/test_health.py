"""Health checks and alerts: status changes, failing hooks, reminders, no storms, log channel."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
import sqlite_utils
import structlog

import hub.health
from hub import hookimpl
from hub.core import Hub
from hub.errors import AuthenticationError
from hub.model import (
    Alert,
    Connection,
    HealthCheck,
    HealthReport,
    HealthStatus,
    Integration,
    Stream,
)
from hub.store.clock import parse, utcnow
from hub.web.keys import HUB
from tests.conftest import ledger_config

CONNECTION = "switch:one"
HEALTHY = HealthReport(HealthStatus.HEALTHY, "all good", [HealthCheck("API reachable", True)])
BROKEN = HealthReport(HealthStatus.ERROR, "API down", [HealthCheck("API reachable", False, "503")])


class Switch:
    """An integration whose health is whatever the test sets: a report, an exception, a hang."""

    def __init__(self) -> None:
        self.report: HealthReport = HEALTHY
        self.raises: BaseException | None = None
        self.hang = False
        self.calls = 0

    @hookimpl
    def register(self) -> Integration:
        return Integration(name="switch", title="Switch", default_sync_interval=None)

    @hookimpl
    async def health(self, connection: Connection) -> HealthReport:
        self.calls += 1
        if self.hang:
            await asyncio.sleep(30)
        if self.raises is not None:
            raise self.raises
        return self.report


class Recorder:
    """An alert channel that keeps what it receives."""

    def __init__(self) -> None:
        self.alerts: list[Alert] = []

    @hookimpl
    def alert(self, alert: Alert) -> None:
        self.alerts.append(alert)


async def switch_hub(make_hub: Any) -> tuple[Hub, Switch, Recorder]:
    switch, recorder = Switch(), Recorder()
    hub: Hub = await make_hub(plugins=[switch, recorder])
    await hub.add_connection("switch", "one", "Switch One", {}, origin="test")
    return hub, switch, recorder


async def rewind_alerts(hub: Hub, seconds: float) -> None:
    """Pretend every alert was last sent ``seconds`` earlier than recorded."""

    def write(db: sqlite_utils.Database) -> None:
        for row in list(db.query("SELECT id, last_sent_at FROM alerts")):
            earlier = parse(row["last_sent_at"]) - timedelta(seconds=seconds)
            db.execute(
                "UPDATE alerts SET last_sent_at = ? WHERE id = ?", [earlier.isoformat(), row["id"]]
            )

    await hub.store.db.write(write)


# --------------------------------------------------------------------------- status changes


async def test_alerts_only_on_change(hub_client: Any) -> None:
    switch, recorder = Switch(), Recorder()
    client = await hub_client(plugins=[switch, recorder])
    hub: Hub = client.app[HUB]
    await hub.add_connection("switch", "one", "Switch One", {}, origin="test")

    statuses = []
    for report in (HEALTHY, BROKEN, BROKEN, HEALTHY):
        switch.report = report
        statuses.append((await hub.health.check(CONNECTION)).status)
    assert statuses == ["healthy", "error", "error", "healthy"]

    assert [(a.status, a.previous, a.reminder) for a in recorder.alerts] == [
        (HealthStatus.ERROR, HealthStatus.HEALTHY, False),
        (HealthStatus.HEALTHY, HealthStatus.ERROR, False),
    ]
    down = recorder.alerts[0]
    assert (down.integration, down.connection_id, down.connection_title, down.message) == (
        "switch",
        CONNECTION,
        "Switch One",
        "API down",
    )
    assert down.id > 0

    history = await hub.store.health.history(CONNECTION)
    assert [(h["status"], h["previous"]) for h in reversed(history)] == [
        ("healthy", None),
        ("error", "healthy"),
        ("healthy", "error"),
    ]
    assert await hub.store.health.open_alerts() == []

    row = await hub.store.connections.get(CONNECTION)
    assert row is not None
    assert (row.status, row.status_message) == ("healthy", "all good")

    switch.report = BROKEN
    await hub.health.check(CONNECTION)
    response = await client.get("/api/status")
    status = await response.json()
    (integration,) = [i for i in status["integrations"] if i["name"] == "switch"]
    (connection,) = integration["connections"]
    assert (connection["status"], connection["message"]) == ("error", "API down")
    assert connection["checks"] == [{"name": "API reachable", "ok": False, "detail": "503"}]
    assert integration["status"] == "error"
    assert [(a["connection_id"], a["status"]) for a in status["alerts"]] == [(CONNECTION, "error")]
    row = await hub.store.connections.get(CONNECTION)
    assert row is not None and row.status == "error"


async def test_a_new_connection_that_starts_bad_alerts(make_hub: Any) -> None:
    hub, switch, recorder = await switch_hub(make_hub)
    switch.report = HealthReport(HealthStatus.WARNING, "slow")
    await hub.health.check(CONNECTION)
    assert [(a.status, a.previous) for a in recorder.alerts] == [(HealthStatus.WARNING, None)]


async def test_a_change_between_bad_states_alerts_and_reopens(make_hub: Any) -> None:
    hub, switch, recorder = await switch_hub(make_hub)
    switch.report = HealthReport(HealthStatus.WARNING, "slow")
    await hub.health.check(CONNECTION)
    switch.report = BROKEN
    await hub.health.check(CONNECTION)
    assert [a.status for a in recorder.alerts] == [HealthStatus.WARNING, HealthStatus.ERROR]
    open_alerts = await hub.store.health.open_alerts()
    assert [(a["status"], a["previous"]) for a in open_alerts] == [("error", "warning")]


async def test_the_status_survives_a_restart_without_a_new_alert(make_hub: Any) -> None:
    hub, switch, _ = await switch_hub(make_hub)
    switch.report = BROKEN
    await hub.health.check(CONNECTION)
    await hub.stop()
    again, recorder_again = Switch(), Recorder()
    again.report = BROKEN
    restarted: Hub = await make_hub(plugins=[again, recorder_again])
    assert restarted.connection_state(CONNECTION).health is HealthStatus.ERROR
    await restarted.health.check(CONNECTION)
    assert recorder_again.alerts == []


# --------------------------------------------------------------------------- failing hooks


async def test_a_raising_health_hook_is_an_error(make_hub: Any) -> None:
    hub, switch, recorder = await switch_hub(make_hub)
    switch.raises = RuntimeError("kaboom")
    report = await hub.health.check(CONNECTION)
    assert report.status is HealthStatus.ERROR
    assert "RuntimeError" in report.message and "kaboom" in report.message
    assert hub.connection_state(CONNECTION).health is HealthStatus.ERROR
    assert [a.status for a in recorder.alerts] == [HealthStatus.ERROR]


async def test_a_hanging_health_hook_times_out(
    make_hub: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hub.health, "HEALTH_TIMEOUT_S", 0.2)
    the_hub, switch, recorder = await switch_hub(make_hub)
    switch.hang = True
    report = await asyncio.wait_for(the_hub.health.check(CONNECTION), timeout=5)
    assert report.status is HealthStatus.ERROR
    assert "took over" in report.message
    assert [a.message for a in recorder.alerts] == [report.message]


async def test_an_authentication_error_means_disconnected(make_hub: Any) -> None:
    hub, switch, recorder = await switch_hub(make_hub)
    switch.raises = AuthenticationError("token revoked", status=401)
    report = await hub.health.check(CONNECTION)
    assert report.status is HealthStatus.DISCONNECTED
    assert "token revoked" in report.message
    assert [a.status for a in recorder.alerts] == [HealthStatus.DISCONNECTED]


async def test_a_health_hook_returning_no_report_is_an_error(make_hub: Any) -> None:
    hub, switch, _ = await switch_hub(make_hub)
    switch.report = "fine"  # type: ignore[assignment]
    report = await hub.health.check(CONNECTION)
    assert report.status is HealthStatus.ERROR
    assert "no HealthReport" in report.message


async def test_a_raising_alert_channel_does_not_stop_the_others(make_hub: Any) -> None:
    class Broken:
        @hookimpl
        def alert(self, alert: Alert) -> None:
            raise RuntimeError("smtp down")

    switch, recorder = Switch(), Recorder()
    hub: Hub = await make_hub(plugins=[Broken(), switch, recorder])
    await hub.add_connection("switch", "one", "Switch One", {}, origin="test")
    switch.report = BROKEN
    await hub.health.check(CONNECTION)
    assert [a.status for a in recorder.alerts] == [HealthStatus.ERROR]
    assert hub.connection_state(CONNECTION).health is HealthStatus.ERROR


async def test_check_all_checks_every_connection(make_hub: Any) -> None:
    hub, switch, _ = await switch_hub(make_hub)
    await hub.add_connection("switch", "two", "Switch Two", {}, origin="test")
    await hub.health.check_all()
    assert switch.calls == 2
    assert hub.connection_state("switch:two").health is HealthStatus.HEALTHY


# --------------------------------------------------------------------------- sync failures


async def test_a_sync_with_a_rejected_token_disconnects(make_hub: Any, ledger: Any) -> None:
    recorder = Recorder()
    hub: Hub = await make_hub(
        plugins=[recorder], config=ledger_config(ledger, api_token="wrong-token")
    )
    connection = "custom_accounting:default"
    result = await hub.engine.run(connection, trigger="test")
    assert (result.state, result.error_class) == ("failed", "authentication")
    (run,) = await hub.store.runs.recent(connection)
    assert (run["state"], run["error_class"]) == ("failed", "authentication")

    state = hub.connection_state(connection)
    assert state.health is HealthStatus.DISCONNECTED and state.needs_reauth
    assert state.last_error is not None and state.last_error.error_class == "authentication"
    (alert,) = recorder.alerts
    assert (alert.status, alert.connection_id, alert.integration) == (
        HealthStatus.DISCONNECTED,
        connection,
        "custom_accounting",
    )
    row = await hub.store.connections.get(connection)
    assert row is not None and row.status == "disconnected"

    await hub.engine.run(connection, trigger="test")  # still rejected: no second alert
    assert len(recorder.alerts) == 1


async def test_a_failed_sync_for_another_reason_checks_no_health(
    make_hub: Any, ledger: Any
) -> None:
    hub: Hub = await make_hub(config=ledger_config(ledger))
    ledger.state.fail_next = [404]
    result = await hub.engine.run("custom_accounting:default", trigger="test")
    assert result.state == "failed" and result.error_class != "authentication"
    assert hub.connection_state("custom_accounting:default").health is None


# --------------------------------------------------------------------------- reminders


async def test_reminders_after_the_interval_only(make_hub: Any) -> None:
    hub, switch, recorder = await switch_hub(make_hub)
    interval = hub.settings.health.reminder_interval
    await hub.health.check(CONNECTION)
    switch.report = BROKEN
    await hub.health.check(CONNECTION)
    assert len(recorder.alerts) == 1
    original = recorder.alerts[0]

    assert await hub.health.send_reminders() == 0  # just sent
    await rewind_alerts(hub, interval - 30)
    assert await hub.health.send_reminders() == 0  # not yet due
    assert len(recorder.alerts) == 1

    await rewind_alerts(hub, 31)
    assert await hub.health.send_reminders() == 1
    reminder = recorder.alerts[-1]
    assert reminder.reminder is True
    assert (reminder.id, reminder.status, reminder.previous, reminder.message) == (
        original.id,
        HealthStatus.ERROR,
        HealthStatus.HEALTHY,
        "API down",
    )
    assert (reminder.integration, reminder.connection_id) == ("switch", CONNECTION)
    assert reminder.connection_title == "Switch One"
    assert reminder.created_at

    assert await hub.health.send_reminders() == 0  # last_sent_at moved to now
    (row,) = await hub.store.health.open_alerts()
    assert row["reminders"] == 1
    assert parse(row["last_sent_at"]) > parse(utcnow()) - timedelta(seconds=5)

    switch.report = HEALTHY
    await hub.health.check(CONNECTION)
    await rewind_alerts(hub, 10 * interval)
    assert await hub.health.send_reminders() == 0  # resolved alerts are never reminded
    assert await hub.store.health.due_reminders(interval) == []
    assert [a.reminder for a in recorder.alerts] == [False, True, False]


async def test_due_reminders_marks_them_sent(make_hub: Any) -> None:
    hub, switch, _ = await switch_hub(make_hub)
    switch.report = BROKEN
    await hub.health.check(CONNECTION)
    await rewind_alerts(hub, 120)
    assert await hub.store.health.due_reminders(300) == []
    (due,) = await hub.store.health.due_reminders(60)
    assert (due["connection_id"], due["status"]) == (CONNECTION, "error")
    assert await hub.store.health.due_reminders(60) == []


async def test_no_reminders_for_a_removed_connection(make_hub: Any) -> None:
    hub, switch, recorder = await switch_hub(make_hub)
    switch.report = BROKEN
    await hub.health.check(CONNECTION)
    await hub.store.connections.delete(CONNECTION)
    assert await hub.store.health.open_alerts() == []  # deleting resolves them
    await rewind_alerts(hub, 10 * hub.settings.health.reminder_interval)
    assert await hub.health.send_reminders() == 0
    assert len(recorder.alerts) == 1


async def test_no_alert_storm(make_hub: Any) -> None:
    hub, switch, recorder = await switch_hub(make_hub)
    switch.report = BROKEN
    for _ in range(50):
        await hub.health.check(CONNECTION)
    await asyncio.gather(*(hub.health.check(CONNECTION) for _ in range(20)))
    assert switch.calls == 70
    assert len(recorder.alerts) == 1
    assert [h["status"] for h in await hub.store.health.history(CONNECTION)] == ["error"]
    assert len(await hub.store.health.open_alerts()) == 1
    assert await hub.health.send_reminders() == 0


# --------------------------------------------------------------------------- log channel


async def test_the_log_channel_logs_bad_states_as_warnings(make_hub: Any) -> None:
    hub, switch, _ = await switch_hub(make_hub)
    switch.report = BROKEN
    with structlog.testing.capture_logs() as logs:
        await hub.health.check(CONNECTION)
        switch.report = HEALTHY
        await hub.health.check(CONNECTION)
    alerts = [e for e in logs if e["event"] == "connection health changed"]
    assert [(e["log_level"], e["status"], e["previous"]) for e in alerts] == [
        ("warning", "error", None),
        ("info", "healthy", "error"),
    ]
    for entry in alerts:
        assert (entry["integration"], entry["connection"]) == ("switch", CONNECTION)
    assert alerts[0]["message"] == "API down"

    switch.report = BROKEN
    await hub.health.check(CONNECTION)
    await rewind_alerts(hub, 10 * hub.settings.health.reminder_interval)
    with structlog.testing.capture_logs() as logs:
        assert await hub.health.send_reminders() == 1
    (reminder,) = [e for e in logs if e["event"] == "connection reminder"]
    assert reminder["log_level"] == "warning"
    assert (reminder["integration"], reminder["connection"]) == ("switch", CONNECTION)


async def test_two_processes_seeing_one_change_alert_it_once(make_hub: Any) -> None:
    """The daemon and an `advisoros-hub check` beside it: each keeps its own memory of the
    status, but the change is recorded and alerted by whichever stores it first."""
    daemon, switch, daemon_alerts = await switch_hub(make_hub)
    await daemon.health.check(CONNECTION)  # healthy: known to both from here on
    cli_switch, cli_alerts = Switch(), Recorder()
    cli: Hub = await make_hub(plugins=[cli_switch, cli_alerts])
    switch.report = cli_switch.report = BROKEN
    await cli.health.check(CONNECTION)
    await daemon.health.check(CONNECTION)
    assert [a.previous for a in cli_alerts.alerts] == [HealthStatus.HEALTHY]
    assert daemon_alerts.alerts == []
    history = await daemon.store.health.history(CONNECTION)
    assert [(h["status"], h["previous"]) for h in history] == [
        ("error", "healthy"),
        ("healthy", None),
    ]


class Gate:
    """Connection ``bad`` fails its sync on authentication and the alert about it waits at the
    gate; connection ``good`` syncs nothing. Health checks are counted."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.alerting = asyncio.Event()
        self.health_calls = 0

    @hookimpl
    def register(self) -> Integration:
        return Integration(
            name="gate", title="Gate", streams=(Stream("items"),), default_sync_interval=None
        )

    @hookimpl
    async def sync(self, connection: Connection) -> AsyncIterator[Any]:
        if connection.key == "bad":
            raise AuthenticationError("token revoked")
        for _ in ():
            yield

    @hookimpl
    def health(self, connection: Connection) -> HealthReport:
        self.health_calls += 1
        return HEALTHY

    @hookimpl
    async def alert(self, alert: Alert) -> None:
        self.alerting.set()
        await self.gate.wait()


async def test_an_auth_failure_in_a_sync_disconnects_without_a_health_check(
    make_hub: Any,
) -> None:
    gate = Gate()
    hub: Hub = await make_hub(plugins=[gate], config={"sync": {"max_concurrent": 1}})
    await hub.add_connection("gate", "bad", "Bad", {}, origin="test")
    await hub.add_connection("gate", "good", "Good", {}, origin="test")
    failing = asyncio.create_task(hub.engine.run("gate:bad", trigger="test"))
    await asyncio.wait_for(gate.alerting.wait(), 10)  # its alert is under way
    other = await asyncio.wait_for(hub.engine.run("gate:good", trigger="test"), 10)
    assert other.state == "succeeded"  # the only slot was free meanwhile
    assert not failing.done()  # the run returns once its connection's health is known
    gate.gate.set()
    result = await asyncio.wait_for(failing, 10)
    assert (result.state, result.error_class) == ("failed", "authentication")
    state = hub.connection_state("gate:bad")
    assert (state.health, state.needs_reauth) == (HealthStatus.DISCONNECTED, True)
    assert "token revoked" in state.health_message
    assert gate.health_calls == 0  # the sync's refusal is the proof: no second probe
