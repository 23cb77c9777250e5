"""The application factory: ``create_app(settings)`` builds the hub and its aiohttp app.

Resources open in ``cleanup_ctx`` in dependency order (hub and store, admin auth, scheduler)
and close in reverse after the app stops, so SIGTERM drains the scheduler, finishes or
cancels syncs and closes the database cleanly.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Callable, Iterable

import structlog
from aiohttp import web

from hub.config import HubSettings
from hub.core import Hub
from hub.plugins import DEFAULT_PLUGINS
from hub.schedule import Scheduler
from hub.web import admin, api, clients_api, inbox_api
from hub.web.auth import AdminAuth
from hub.web.body import client_max_size
from hub.web.keys import AUTH, HUB, SCHEDULER
from hub.web.policy import UNMATCHED_ROUTE, guard_routes, guarded, unmatched
from hub.webhooks import inbound

log = structlog.get_logger("hub.web")


def create_app(
    settings: HubSettings,
    *,
    builtins: Iterable[str] = DEFAULT_PLUGINS,
    schedule: bool = True,
    hub: Hub | None = None,
    announce: Callable[[str], None] | None = None,
) -> web.Application:
    """Build the hub (plugins loaded, settings validated) and its aiohttp app.

    :param schedule: start the scheduler (tests turn it off and trigger syncs themselves).
    :param hub: a hub built by the caller (tests register extra plugins on it first).
    :param announce: where a newly generated admin token is shown once (default: stdout).
    :raise ConfigError: invalid configuration, naming the key.
    """
    hub = hub or Hub(settings, builtins)
    hub.load_plugins()
    app = web.Application(
        client_max_size=client_max_size(settings.webhooks.max_body_bytes),
        # bodies are decoded within that limit by hub.web.body, never inflated unbounded
        handler_args={"auto_decompress": False},
    )
    app[HUB] = hub
    app[SCHEDULER] = Scheduler(hub) if schedule else None
    app.add_routes(guard_routes(inbound.routes))  # first: the hottest routes resolve fastest
    for core_routes in (api.routes, admin.routes, inbox_api.routes, clients_api.routes):
        app.add_routes(guard_routes(core_routes))
    for plugin, extra in hub.plugins.broadcast_sync("routes"):
        try:
            app.add_routes(guard_routes(extra or []))
        except (TypeError, ValueError, RuntimeError):
            log.exception("plugin routes rejected", plugin=plugin)
    app.router.add_route("*", UNMATCHED_ROUTE, guarded(unmatched, "unmatched"))  # last
    app.cleanup_ctx.append(_hub_ctx)
    app.cleanup_ctx.append(_auth_ctx(announce or _print_token))
    app.cleanup_ctx.append(_scheduler_ctx)
    return app


async def _hub_ctx(app: web.Application) -> AsyncIterator[None]:
    hub = app[HUB]
    await hub.start()
    yield
    await hub.stop()


def _auth_ctx(
    announce: Callable[[str], None],
) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        hub = app[HUB]
        auth, generated = await AdminAuth.setup(hub.settings, hub.store)
        app[AUTH] = auth
        if generated:
            announce(generated)
        yield

    return ctx


async def _scheduler_ctx(app: web.Application) -> AsyncIterator[None]:
    scheduler = app[SCHEDULER]
    if scheduler is not None:
        await scheduler.start()
        app[HUB].scheduler = scheduler  # connections added from now on are scheduled
    yield
    if scheduler is not None:
        app[HUB].scheduler = None
        scheduler.shutdown()


def _print_token(token: str) -> None:
    print(
        "\nNo admin token was configured, so the hub generated one. It is shown only now;\n"
        "keep it (it is stored hashed). Use it as 'Authorization: Bearer <token>' or on /admin:\n\n"
        f"    {token}\n",
        file=sys.stdout,
        flush=True,
    )
