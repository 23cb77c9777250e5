"""Diagnostics of one connected company (what ``advisoros-hub check`` and /admin show).

Checks: token present, token valid, refresh token expiry (rolling and five-year), API
reachable (CompanyInfo), last successful sync age (the CDC catch-up), last sync error. The hub
runs ``authenticate`` first, so a dead refresh token already reads ``disconnected``.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import TYPE_CHECKING

from hub.errors import AuthenticationError, ProviderError
from hub.model import HealthCheck, HealthReport, HealthStatus

from .oauth import client_for, refresh_deadline, settings_of

if TYPE_CHECKING:
    from hub.core import Hub
    from hub.model import Connection


def _hours_since(stamp: str | None) -> float | None:
    if not stamp:
        return None
    return (time.time() - datetime.fromisoformat(stamp).timestamp()) / 3600


async def _last_success(hub: Hub, connection: Connection) -> str | None:
    remembered = hub.health.state(connection.id).last_success_at
    stored = [s["last_success_at"] for s in await hub.store.runs.stream_stats(connection.id)]
    return max([s for s in [remembered, *stored] if s], default=None)


async def diagnose(connection: Connection, hub: Hub) -> HealthReport:
    """The connection's health report.

    :raise AuthenticationError: the API refused the (just refreshed) token.
    """
    settings = settings_of(hub)
    credentials, now = connection.credentials, time.time()
    checks = [HealthCheck("token present", bool(credentials.get("refresh_token")))]
    minutes = (float(credentials.get("expires_at") or 0) - now) / 60
    checks.append(HealthCheck("token valid", minutes > 0, f"access token valid {minutes:.0f} min"))
    deadline, why = refresh_deadline(credentials)
    days = (deadline - now) / 86400
    refresh_ok = days > settings.refresh_warning_days
    detail = f"expires in {days:.0f} days ({why})"
    checks.append(HealthCheck("refresh token", refresh_ok, detail))
    warnings = [] if refresh_ok else [f"the refresh token {detail}: reconnect the company"]
    try:
        info, _ = await client_for(hub, connection).company_info()
    except AuthenticationError:
        raise
    except ProviderError as exc:
        checks.append(HealthCheck("API reachable", False, f"{exc.error_class}: {exc}"[:300]))
        return HealthReport(HealthStatus.ERROR, "the QuickBooks API is not reachable", checks)
    checks.append(HealthCheck("API reachable", True, f"CompanyInfo: {info.get('CompanyName')}"))
    age = _hours_since(await _last_success(hub, connection))
    fresh = age is not None and age <= settings.cdc_catchup_hours
    shown = "never" if age is None else f"{age:.1f} h ago"
    checks.append(HealthCheck("last successful sync", fresh, shown))
    if age is not None and not fresh:
        warnings.append(f"no successful sync for {age:.0f} h (CDC catch-up overdue)")
    state = hub.health.state(connection.id)
    error = f"{state.last_error_class}: {state.last_error}"[:300] if state.last_error else ""
    checks.append(HealthCheck("last error", not error, error or "none"))
    if error:
        warnings.append(f"the last sync failed ({state.last_error_class})")
    if warnings:
        return HealthReport(HealthStatus.WARNING, "; ".join(warnings), checks)
    return HealthReport(HealthStatus.HEALTHY, f"{info.get('CompanyName')} reachable", checks)
