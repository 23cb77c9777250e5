"""Health and diagnostics of the Stripe connection (``advisoros-hub check``, /admin, bug
reports).

Health checks: key present, key accepted (one cheap authenticated call, skipped when a sync
proved it lately), live or test mode, webhook secrets configured, time since the last
verified webhook, past-due subscriptions and open disputes (counted up to
:data:`COUNT_LIMIT`). An ``AuthenticationError`` is raised for the hub to mark the connection
disconnected; no webhook secret makes the report a ``warning`` (events would be refused).
The counts are asked only for streams that are synced.
"""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING, Any

from hub.errors import AuthenticationError, error_class_of
from hub.model import HealthCheck, HealthReport, HealthStatus

from .client import StripeApi, client_for
from .settings import NAME
from .sync import BY_STREAM

if TYPE_CHECKING:
    from hub.api import HubAPI
    from hub.model import Connection

    from .settings import StripeSettings

COUNT_LIMIT = 1000
"""Past-due subscriptions and open disputes are counted up to this many."""
OPEN_DISPUTES = frozenset(
    {"warning_needs_response", "needs_response", "under_review", "warning_under_review"}
)


async def count(
    api: StripeApi, hub: HubAPI, stream: str, params: dict[str, Any], statuses: frozenset[str]
) -> int | None:
    """Objects of a stream whose ``status`` is in ``statuses``, up to COUNT_LIMIT, asked
    of Stripe; None when the stream is not synced (its objects are not the hub's concern)."""
    if stream not in hub.streams_for(NAME):
        return None
    path = BY_STREAM[stream].path
    seen = 0
    async with contextlib.aclosing(api.pages(path, params)) as pages:
        async for page in pages:
            seen += sum(1 for item in page if item.get("status") in statuses)
            if seen >= COUNT_LIMIT:
                return COUNT_LIMIT
    return seen


async def last_webhook(hub: HubAPI, connection: Connection) -> dict[str, Any] | None:
    """The last verified webhook processed for ``connection``: id, type, age in seconds."""
    row = await hub.tables(__name__).get("webhooks_seen", connection.id)
    if row is None:
        return None
    age = round(time.time() - float(row["seen_at"]), 1)
    return {"event": row["event_id"], "type": row["event_type"], "age_s": age}


async def facts(
    api: StripeApi, settings: StripeSettings, hub: HubAPI, connection: Connection
) -> dict[str, Any]:
    """What health and diagnostics report besides the key check."""
    past_due = await count(
        api, hub, "subscriptions", {"status": "past_due"}, frozenset({"past_due"})
    )
    return {
        "mode": "live" if settings.livemode else "test",
        "key_type": "restricted" if settings.restricted else "secret",
        "webhook_signers": len(settings.webhook_secrets),
        "last_webhook": await last_webhook(hub, connection),
        "past_due_subscriptions": past_due,
        "open_disputes": await count(api, hub, "disputes", {}, OPEN_DISPUTES),
    }


def _counted(value: int | None) -> str:
    return "not synced" if value is None else str(value)


async def diagnose(connection: Connection, settings: StripeSettings, hub: HubAPI) -> HealthReport:
    """The connection's health report (see the module docstring)."""
    if not connection.credentials.get("secret_key"):
        raise AuthenticationError("no Stripe secret key is stored for this connection")
    api = client_for(hub, connection, settings)
    state = hub.connection_state(connection.id)
    if state.proven_by_sync:
        key_check = HealthCheck("key valid", True, "a sync succeeded moments ago")
    else:
        await api.get("/v1/customers", limit=1)  # an AuthenticationError propagates
        key_check = HealthCheck("key valid", True, "an authenticated call succeeded")
    found = await facts(api, settings, hub, connection)
    webhook = found["last_webhook"]
    checks = [
        HealthCheck("key present", True, found["key_type"]),
        key_check,
        HealthCheck("mode", True, found["mode"]),
        HealthCheck(
            "webhook secrets configured",
            found["webhook_signers"] > 0,
            f"{found['webhook_signers']} secret(s)",
        ),
        HealthCheck(
            "last verified webhook",
            True,
            "none yet" if webhook is None else f"{webhook['age_s']:.0f} s ago ({webhook['type']})",
        ),
        HealthCheck("past-due subscriptions", True, _counted(found["past_due_subscriptions"])),
        HealthCheck("open disputes", True, _counted(found["open_disputes"])),
    ]
    if not found["webhook_signers"]:
        return HealthReport(
            HealthStatus.WARNING, "no webhook_secrets: Stripe's webhooks are refused", checks
        )
    return HealthReport(HealthStatus.HEALTHY, f"Stripe {found['mode']} mode", checks)


async def dump(connection: Connection, settings: StripeSettings, hub: HubAPI) -> dict[str, Any]:
    """The troubleshooting facts of the connection, for the hub's (redacted) diagnostics."""
    api = client_for(hub, connection, settings)
    out: dict[str, Any] = {
        "key_stored": bool(connection.credentials.get("secret_key")),
        "api_base_url": settings.api_base_url,
        "api_version": settings.api_version or "the SDK's pinned version",
        "events_acted_on": sorted(settings.acted_on),
    }
    try:
        out |= await facts(api, settings, hub, connection)
        out["api"] = {"reachable": True}
    except Exception as exc:
        out["api"] = {"reachable": False, "error": f"{error_class_of(exc)}: {exc}"[:300]}
    error = hub.connection_state(connection.id).last_error
    out["last_error"] = (
        None
        if error is None
        else {"class": error.error_class, "message": error.message, "advice": error.advice}
    )
    return out
