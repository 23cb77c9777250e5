"""Health: run ``health`` hooks, record status changes, deliver alerts without storms.

A connection's status lives in its state (:mod:`hub.connection_state`); only a *change* of
status opens an alert (every ``alert`` hook gets it), and a connection that stays bad is
reminded on ``health.reminder_interval``. Credentials refused anywhere (a health check, a
sync, a webhook's handling) make the connection ``disconnected``; a refusal seen by a sync or
a webhook is applied as it is, without asking the provider again.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict, replace
from typing import TYPE_CHECKING, Any

import structlog

from hub.errors import AuthenticationError, error_class_of
from hub.logs import redact_text
from hub.model import Alert, Connection, ErrorInfo, HealthReport, HealthStatus
from hub.store.clock import utcnow

if TYPE_CHECKING:
    from hub.core import Hub

log = structlog.get_logger("hub.health")
HEALTH_TIMEOUT_S = 30.0


class HealthMonitor:
    """Health checks, status changes and alert delivery; the status is kept in each
    connection's state (``hub.states``)."""

    def __init__(self, hub: Hub) -> None:
        self._hub = hub

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
            message = redact_text(str(exc))
            self._hub.states.get(connection.id).credentials_refused(
                ErrorInfo(exc.error_class, message, utcnow(), exc.advice)
            )
            return HealthReport(HealthStatus.DISCONNECTED, f"needs re-authentication: {message}")
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
        state = self._hub.states.get(connection.id)
        previous = state.health
        state.health_checked(report)
        self._hub.metrics.connection_health.labels(connection.integration, connection.id).set(
            1 if report.status is HealthStatus.HEALTHY else 0
        )
        if previous is report.status:
            return
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

    async def disconnected(self, connection: Connection, message: str) -> None:
        """The provider refused ``connection``'s credentials in a sync: apply ``disconnected``
        (the refusal is the proof; the provider is not asked again)."""
        report = HealthReport(HealthStatus.DISCONNECTED, f"needs re-authentication: {message}")
        with structlog.contextvars.bound_contextvars(
            integration=connection.integration, connection=connection.id
        ):
            await self.apply(connection, report)

    async def credentials_refused(
        self, integration: str, key: str | None, exc: AuthenticationError
    ) -> None:
        """A webhook's handling for account ``key`` of ``integration`` was refused: mark that
        connection (the integration's only one when ``key`` is None) disconnected."""
        connections = await self._hub.find_connections(integration, key)
        if len(connections) != 1:
            return  # no account named, and several could be meant: none is marked
        (connection,) = connections
        message = redact_text(str(exc))
        self._hub.states.get(connection.id).credentials_refused(
            ErrorInfo(exc.error_class, message, utcnow(), exc.advice)
        )
        await self.disconnected(connection, message)

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
