"""Health: run ``health`` hooks, record state changes, deliver alerts without storms.

Like Home Assistant's coordinator, the monitor remembers each connection's last status, last
successful sync and last error; only a *change* of status opens an alert (every ``alert`` hook
gets it), and a connection that stays bad is reminded on ``health.reminder_interval``.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any

import structlog

from hub.errors import AuthenticationError, error_class_of
from hub.logs import redact_text
from hub.model import Alert, Connection, HealthCheck, HealthReport, HealthStatus
from hub.store.clock import utcnow

if TYPE_CHECKING:
    from hub.core import Hub
    from hub.sync import SyncResult

log = structlog.get_logger("hub.health")
HEALTH_TIMEOUT_S = 30.0


@dataclass
class ConnectionState:
    """What the monitor remembers about one connection."""

    status: HealthStatus | None = None
    message: str = ""
    checks: tuple[HealthCheck, ...] = ()
    last_success_at: str | None = None
    last_error: str | None = None
    last_error_class: str | None = None


class HealthMonitor:
    """Per-connection health state, checks, and alert delivery."""

    def __init__(self, hub: Hub) -> None:
        self._hub = hub
        self.states: dict[str, ConnectionState] = {}

    async def load(self) -> None:
        """Restore the last known status of every connection from the store."""
        for row in await self._hub.store.connections.list():
            self.states[row.id] = ConnectionState(
                status=HealthStatus(row.status) if row.status else None,
                message=row.status_message,
            )

    def state(self, connection_id: str) -> ConnectionState:
        """The remembered state of a connection (empty if never checked)."""
        return self.states.setdefault(connection_id, ConnectionState())

    def sync_finished(self, connection: Connection, result: SyncResult) -> None:
        """Remember a sync's outcome (health checks and the admin page read it)."""
        state = self.state(connection.id)
        if result.state == "succeeded":
            state.last_success_at = utcnow()
            state.last_error = state.last_error_class = None
        elif result.state == "failed":
            state.last_error, state.last_error_class = result.error, result.error_class

    async def check(self, connection_id: str) -> HealthReport:
        """Run the owner's ``health`` hook for one connection and apply the result."""
        hub = self._hub
        connection = await hub.connection(connection_id)
        with structlog.contextvars.bound_contextvars(
            integration=connection.integration, connection=connection.id
        ):
            report = await self._diagnose(connection)
            await self.apply(connection, report)
        return report

    async def _diagnose(self, connection: Connection) -> HealthReport:
        hub = self._hub
        if not hub.plugins.has_owner_hook(connection.integration, "health"):
            return HealthReport(HealthStatus.HEALTHY, "no health check (plugin has none)")
        try:
            async with asyncio.timeout(HEALTH_TIMEOUT_S):
                connection = await hub.authenticate(connection)
                report = await hub.plugins.call_owner(
                    connection.integration, "health", connection=connection
                )
        except AuthenticationError as exc:
            return HealthReport(HealthStatus.DISCONNECTED, f"needs re-authentication: {exc}")
        except TimeoutError:
            return HealthReport(HealthStatus.ERROR, f"health check took over {HEALTH_TIMEOUT_S}s")
        except Exception as exc:
            log.exception("health hook raised")
            return HealthReport(HealthStatus.ERROR, f"{error_class_of(exc)}: {exc}")
        if not isinstance(report, HealthReport):
            return HealthReport(HealthStatus.ERROR, "health hook returned no HealthReport")
        return report

    async def apply(self, connection: Connection, report: HealthReport) -> None:
        """Record ``report``; on a status change, store it and deliver an alert."""
        # messages quote exceptions and provider answers: redact before storing or alerting
        report = replace(report, message=redact_text(report.message))
        state = self.state(connection.id)
        previous = state.status
        state.message, state.checks = report.message, tuple(report.checks)
        self._hub.metrics.connection_health.labels(connection.integration, connection.id).set(
            1 if report.status is HealthStatus.HEALTHY else 0
        )
        if previous is report.status:
            return
        state.status = report.status
        change = await self._hub.store.health.record_change(
            connection.id,
            connection.integration,
            report.status.value,
            report.message,
            [asdict(check) for check in report.checks],
        )
        if change is None:
            return  # another process (a `check` command, say) already recorded and alerted it
        alert_id, stored_previous = change
        previous = _status(stored_previous)
        log.info(
            "health changed",
            status=report.status.value,
            previous=previous.value if previous else None,
            message=report.message,
        )
        await self._hub.emit(
            "health.changed",
            {
                "integration": connection.integration,
                "connection": connection.id,
                "status": report.status.value,
                "previous": previous.value if previous else None,
                "message": report.message,
            },
        )
        if previous is None and report.status is HealthStatus.HEALTHY:
            return  # a new connection that works is not news
        await self.deliver(
            Alert(
                id=alert_id,
                integration=connection.integration,
                connection_id=connection.id,
                connection_title=connection.title,
                status=report.status,
                previous=previous,
                message=report.message,
            )
        )

    async def deliver(self, alert: Alert) -> None:
        """Hand ``alert`` (its message redacted) to every ``alert`` hook implementation (each
        isolated)."""
        alert = replace(alert, message=redact_text(alert.message))
        await self._hub.plugins.broadcast("alert", alert=alert)

    async def check_all(self) -> None:
        """Check every connection (the health schedule's job)."""
        for connection in await self._hub.connections():
            if self._hub.disabled(connection.integration):
                continue
            try:
                await self.check(connection.id)
            except LookupError:
                continue

    async def send_reminders(self) -> int:
        """Re-deliver open alerts older than the reminder interval; return how many."""
        due = await self._hub.store.health.due_reminders(
            self._hub.settings.health.reminder_interval
        )
        for row in due:
            await self.deliver(_reminder(row))
        return len(due)


def _reminder(row: dict[str, Any]) -> Alert:
    return Alert(
        id=row["id"],
        integration=row["integration"],
        connection_id=row["connection_id"],
        connection_title=row["connection_title"],
        status=HealthStatus(row["status"]),
        previous=HealthStatus(row["previous"]) if row["previous"] else None,
        message=row["message"],
        reminder=True,
        created_at=row["created_at"],
    )


def _status(value: str | None) -> HealthStatus | None:
    """A stored status as a :class:`HealthStatus` (None if absent or not one)."""
    try:
        return HealthStatus(value) if value else None
    except ValueError:
        return None
