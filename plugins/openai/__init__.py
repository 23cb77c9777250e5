"""OpenAI: document analysis into validated structured data, client insights, and the month's
token usage and cost against the firm's plan.

Only hook implementations live here: the settings are in ``settings.py``, the SDK calls in
``client.py``, the answer schemas in ``schemas.py``, the document input in ``extract.py``, the
hub's checks of extracted figures in ``figures.py``, one analysis in ``analysis.py`` and its
rows in ``results.py``, the bounded analysis queue in ``sync.py``, usage and the plan's budget
in ``usage.py``, the ``document.*`` events in ``webhooks.py``, the routes in ``routes.py``,
health and diagnostics in ``health.py``, what runs per hub in ``service.py`` (kept by
``runtime.py``), the plugin's
tables in ``tables.py`` and a local fake of the OpenAI API in ``sandbox.py``. The SDK
(``openai``) and ``pypdf`` are imported when the integration is used.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any

from aiohttp import web

from hub import hookimpl
from hub.api import HubAPI
from hub.errors import AuthenticationError
from hub.model import (
    Connection,
    ConnectionSpec,
    HealthReport,
    HubEvent,
    Integration,
    IntegrationSettings,
    Migration,
)

from . import health as checks
from . import runtime, tables, webhooks
from .routes import OpenAIRoutes
from .settings import NAME, OpenAISettings

if TYPE_CHECKING:
    from .service import Runtime


def _runtime(hub: HubAPI) -> Runtime:
    running = runtime.runtime_of(hub)
    if running is None:
        raise AuthenticationError("OpenAI is not configured: set [integrations.openai]")
    return running


@hookimpl
def register() -> Integration:
    """Declare the OpenAI integration: its settings; no streams (results live in its tables)."""
    return Integration(
        name=NAME,
        title="OpenAI (document analysis)",
        settings=OpenAISettings,
        default_sync_interval=None,
        secret_fields=frozenset({"api_key"}),
        events_when_configured=True,
    )


@hookimpl
def migrations() -> Sequence[Migration]:
    """Analyses, insights, calls, monthly totals and rate limits (``tables.py``)."""
    return tables.MIGRATIONS


@hookimpl
def configure(settings: IntegrationSettings | None) -> list[ConnectionSpec]:
    """One connection: the API key at the configured server."""
    if not isinstance(settings, OpenAISettings):
        return []
    return [
        ConnectionSpec(
            key=settings.host,
            title=f"OpenAI ({settings.host}, {settings.plan} plan)",
            credentials={"api_key": settings.api_key.get_secret_value()},
        )
    ]


@hookimpl
def routes(hub: HubAPI) -> list[web.RouteDef]:
    """Analyse a document, its latest analysis, this month's usage."""
    return OpenAIRoutes(hub).routes()


@hookimpl
async def health(connection: Connection, hub: HubAPI) -> HealthReport:
    """API key valid (models list), configured models offered, plan usage."""
    return await checks.diagnose(_runtime(hub), hub)


@hookimpl
async def diagnostics(connection: Connection, hub: HubAPI) -> dict[str, Any]:
    """Server, API, models, limits, queue, usage and the last rate-limit headers."""
    return await checks.dump(_runtime(hub), hub)


@hookimpl
async def event(event: HubEvent, hub: HubAPI) -> None:
    """Analyse uploaded documents when ``analyze_on_upload`` is on."""
    running = runtime.runtime_of(hub)
    if running is not None:
        await webhooks.on_event(event, running)


@hookimpl
async def startup(hub: HubAPI) -> None:
    """Start the client, budget and queue when the integration is configured."""
    settings = hub.settings_for(NAME)
    if isinstance(settings, OpenAISettings):
        await runtime.install(hub, settings)


@hookimpl
async def shutdown(hub: HubAPI) -> None:
    """Cancel queued and running analyses (their rows say so at the next start)."""
    await runtime.uninstall(hub)


@hookimpl
async def demo(stack: AsyncExitStack) -> dict[str, dict[str, Any]]:
    """Start the local OpenAI sandbox and analyse against it."""
    from .sandbox import start_sandbox

    sandbox = await start_sandbox()
    stack.push_async_callback(sandbox.close)
    return {NAME: {"api_key": sandbox.state.config.api_key, "base_url": sandbox.base_url}}
