"""Health and diagnostics of the OpenAI connection (``advisoros-hub check``, /admin, bug
reports).

Health checks: API key accepted (``GET /models``, the cheapest authenticated call; a refused
key raises ``AuthenticationError`` and the hub marks the connection disconnected), the
configured models offered by the server, this month's usage against the plan (a warning from
80 %, an error when a limit is reached: analyses are then refused), and the last analysis'
outcome. The diagnostics dump adds the settings that matter (never the key), the queue and
the last ``x-ratelimit-*`` headers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hub.errors import AuthenticationError, ProviderError
from hub.model import HealthCheck, HealthReport, HealthStatus

from . import usage

if TYPE_CHECKING:
    from hub.api import HubAPI

    from .service import Runtime

WARN_SHARE = 0.8
"""Usage at or above this share of a limit is a warning."""


def plan_check(report: dict[str, Any]) -> tuple[HealthStatus, HealthCheck]:
    """The plan's usage as a health check and the status it calls for."""
    limits, used = report["limits"], report["used"]
    detail = (
        f"{report['plan']} plan, {report['month']}: {used['tokens']} of {limits['tokens']} "
        f"tokens, ${used['cost_usd']} of ${limits['cost_usd']}"
    )
    worst = max(report["share"].values())
    if worst >= 1:
        return HealthStatus.ERROR, HealthCheck("plan usage", False, detail + ": limit reached")
    if worst >= WARN_SHARE:
        return HealthStatus.WARNING, HealthCheck("plan usage", True, detail + ": nearly used up")
    return HealthStatus.HEALTHY, HealthCheck("plan usage", True, detail)


async def diagnose(runtime: Runtime, hub: HubAPI) -> HealthReport:
    """Key valid, models offered, plan usage."""
    checks: list[HealthCheck] = []
    try:
        offered = set(await runtime.api.models())
    except AuthenticationError:
        raise
    except ProviderError as exc:
        checks.append(HealthCheck("API reachable", False, str(exc)))
        return HealthReport(HealthStatus.ERROR, f"OpenAI API: {exc}", checks)
    checks.append(HealthCheck("API key valid", True, runtime.settings.host))
    missing = sorted(set(runtime.settings.named_models().values()) - offered)
    checks.append(
        HealthCheck("models offered", not missing, ", ".join(missing) or "every configured model")
    )
    report = await usage.report(hub, runtime.settings)
    status, plan = plan_check(report)
    checks.append(plan)
    message = plan.detail
    if missing:
        status = max(status, HealthStatus.WARNING, key=list(HealthStatus).index)
        message += f"; models the server does not offer: {', '.join(missing)}"
    return HealthReport(status, message, checks)


async def dump(runtime: Runtime, hub: HubAPI) -> dict[str, Any]:
    """The settings that matter (no key), the queue, usage and the last rate-limit headers."""
    settings = runtime.settings
    return {
        "base_url": settings.api_base,
        "api": settings.api,
        "models": settings.named_models(),
        "max_output_tokens": settings.max_output_tokens,
        "timeout": settings.timeout,
        "max_retries": settings.max_retries,
        "concurrency": settings.concurrency,
        "queue": {"depth": runtime.queue.depth, "size": settings.queue_size},
        "analyze_on_upload": settings.analyze_on_upload,
        "usage": await usage.report(hub, settings),
        "last_rate_limits": runtime.api.last_rate_limits,
    }
