"""Health and diagnostics of one Ledger connection: token present, token accepted, API
reachable (``GET /v1/me``), and the connection's rate-limit budget.

An ``AuthenticationError`` (a missing or rejected token) is raised, never turned into a
report: the hub marks the connection ``disconnected``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hub.errors import AuthenticationError, ProviderError, error_class_of
from hub.model import HealthCheck, HealthReport, HealthStatus

from . import tables
from .client import client_for
from .settings import LedgerSettings

if TYPE_CHECKING:
    from hub.api import HubAPI
    from hub.model import Connection


async def check(connection: Connection, settings: LedgerSettings, hub: HubAPI) -> HealthReport:
    """The connection's health report.

    :raise AuthenticationError: no token, or the API rejected it.
    """
    checks = [HealthCheck("token present", bool(connection.credentials.get("api_token")))]
    try:
        me = await client_for(connection, settings, hub).me()
    except AuthenticationError:
        raise
    except ProviderError as exc:
        checks.append(HealthCheck("API reachable", False, f"{exc.error_class}: {exc}"[:200]))
        return HealthReport(HealthStatus.ERROR, "the Ledger API is not reachable", checks)
    checks += [HealthCheck("token valid", True), HealthCheck("API reachable", True)]
    await tables.remember_account(hub, connection, str(me.get("name", "?")))
    return HealthReport(HealthStatus.HEALTHY, f"account {me.get('name', '?')}", checks)


async def dump(connection: Connection, settings: LedgerSettings, hub: HubAPI) -> dict[str, Any]:
    """The troubleshooting facts of the connection, for the hub's diagnostics dump."""
    out: dict[str, Any] = {
        "api_token_stored": bool(connection.credentials.get("api_token")),
        "token_expires_at": None,  # Ledger tokens do not expire
        "base_url": settings.base_url,
    }
    try:
        me = await client_for(connection, settings, hub).me()
        out["api"] = {"reachable": True, "token_valid": True, "account": me.get("name")}
    except Exception as exc:
        valid = not isinstance(exc, AuthenticationError)
        out["api"] = {
            "reachable": isinstance(exc, AuthenticationError),
            "token_valid": valid,
            "error": f"{error_class_of(exc)}: {exc}"[:200],
        }
    error = hub.connection_state(connection.id).last_error
    out["last_error"] = (
        None
        if error is None
        else {"class": error.error_class, "message": error.message, "at": error.at}
    )
    out["rate_limit"] = hub.http.limit_state(connection.id)
    return out
