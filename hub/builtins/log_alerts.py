"""The built-in alert channel: every alert becomes a structured log line."""

from __future__ import annotations

import structlog

from hub.hookspecs import hookimpl
from hub.model import Alert, HealthStatus

log = structlog.get_logger("hub.alerts")


@hookimpl(trylast=True)
def alert(alert: Alert) -> None:
    """Log the alert: warning level for a bad state, info for a recovery."""
    method = log.info if alert.status is HealthStatus.HEALTHY else log.warning
    method(
        "connection reminder" if alert.reminder else "connection health changed",
        integration=alert.integration,
        connection=alert.connection_id,
        status=alert.status.value,
        previous=alert.previous.value if alert.previous else None,
        message=alert.message,
    )
