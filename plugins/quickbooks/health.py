"""Health and diagnostics of one connected company (``advisoros-hub check``, /admin, bug
reports).

Health checks: token present, token valid, refresh token expiry (rolling, and the five-year
limit as Intuit states it, else estimated from the connection's age), API reachable
(CompanyInfo), last successful sync age (the CDC catch-up), last sync error. The hub
runs ``authenticate`` first, so a dead refresh token already reads ``disconnected``; an
``AuthenticationError`` from the API is raised for the hub to mark it so too. Sync times and
errors come from the connection's state (``hub.connection_state``); when a sync proved the API
reachable within the health interval, CompanyInfo is not fetched again.

The diagnostics dump reports the same facts as data (expiry times, the rate-limit budget);
the hub redacts it.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from hub.errors import AuthenticationError, ProviderError, error_class_of
from hub.model import ConnectionStatus, HealthCheck, HealthReport, HealthStatus

from .oauth import client_for, hard_deadline, refresh_deadline

if TYPE_CHECKING:
    from hub.api import HubAPI
    from hub.model import Connection

    from .settings import QuickBooksSettings


def _hours_since(stamp: str | None) -> float | None:
    if not stamp:
        return None
    return (time.time() - datetime.fromisoformat(stamp).timestamp()) / 3600


def _iso(epoch: Any) -> str | None:
    return datetime.fromtimestamp(float(epoch), UTC).isoformat() if epoch else None


async def _api_check(hub: HubAPI, connection: Connection, status: ConnectionStatus) -> HealthCheck:
    """``API reachable``: from the state when a recent sync proved it, else from CompanyInfo.

    :raise AuthenticationError: the API refused the (just refreshed) token.
    """
    if status.proven_by_sync:
        return HealthCheck("API reachable", True, f"synced at {status.last_success_at}")
    try:
        info, _ = await client_for(hub, connection).company_info()
    except AuthenticationError:
        raise
    except ProviderError as exc:
        return HealthCheck("API reachable", False, f"{exc.error_class}: {exc}"[:300])
    return HealthCheck("API reachable", True, f"CompanyInfo: {info.get('CompanyName')}")


async def diagnose(
    connection: Connection, settings: QuickBooksSettings, hub: HubAPI
) -> HealthReport:
    """The connection's health report.

    :raise AuthenticationError: the API refused the (just refreshed) token.
    """
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
    status = hub.connection_state(connection.id)
    api = await _api_check(hub, connection, status)
    checks.append(api)
    if not api.ok:
        return HealthReport(HealthStatus.ERROR, "the QuickBooks API is not reachable", checks)
    age = _hours_since(status.last_success_at)
    fresh = age is not None and age <= settings.cdc_catchup_hours
    shown = "never" if age is None else f"{age:.1f} h ago"
    checks.append(HealthCheck("last successful sync", fresh, shown))
    if age is not None and not fresh:
        warnings.append(f"no successful sync for {age:.0f} h (CDC catch-up overdue)")
    error = status.last_error
    detail = f"{error.error_class}: {error.message}"[:300] if error else "none"
    checks.append(HealthCheck("last error", error is None, detail))
    if error is not None:
        warnings.append(f"the last sync failed ({error.error_class})")
    if warnings:
        return HealthReport(HealthStatus.WARNING, "; ".join(warnings), checks)
    return HealthReport(HealthStatus.HEALTHY, f"{connection.title} reachable", checks)


async def dump(connection: Connection, hub: HubAPI) -> dict[str, Any]:
    """The troubleshooting facts of the connection, for the hub's diagnostics dump."""
    credentials = connection.credentials
    deadline, why = refresh_deadline(credentials)
    hard, stated = hard_deadline(credentials)
    expires_at = float(credentials.get("expires_at") or 0)
    out: dict[str, Any] = {
        "tokens_stored": [n for n in ("access_token", "refresh_token") if credentials.get(n)],
        "realm_id": credentials.get("realm_id"),
        "access_token_valid": expires_at > time.time(),
        "access_token_expires_at": _iso(expires_at),
        "refresh_token_expires_at": _iso(deadline),
        "refresh_token_limit": why,
        "refresh_token_hard_expires_at": _iso(hard),
        "refresh_token_hard_expiry": "stated by Intuit" if stated else "estimated",
        "refresh_refused_at": _iso(credentials.get("invalid_grant_at")),
        "refreshed_at": _iso(credentials.get("refreshed_at")),
        "rate_limit": hub.http.limit_state(connection.id),
    }
    try:
        info, server_time = await client_for(hub, connection).company_info()
        out["api"] = {"reachable": True, "company": info.get("CompanyName"), "at": server_time}
    except Exception as exc:
        out["api"] = {"reachable": False, "error": f"{error_class_of(exc)}: {exc}"[:300]}
    error = hub.connection_state(connection.id).last_error
    out["last_error"] = (
        None
        if error is None
        else {"class": error.error_class, "message": error.message, "at": error.at}
    )
    return out
