"""The core's HTTP views: liveness, readiness, status, sync triggers, runs, metrics."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from hub.diagnostics import connection_diagnostics
from hub.errors import SyncBusyError
from hub.readiness import unready_reasons
from hub.status import hub_status
from hub.web.keys import HUB, SCHEDULER
from hub.web.params import json_object, parse_int

routes = web.RouteTableDef()


def json_response(data: Any, status: int = 200) -> web.Response:
    """A JSON response serialised with orjson (handles dataclasses and datetimes)."""
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


@routes.get("/healthz", name="healthz")
async def healthz(request: web.Request) -> web.Response:
    """Liveness: the process answers."""
    return json_response({"status": "ok"})


@routes.get("/readyz", name="readyz")
async def readyz(request: web.Request) -> web.Response:
    """Readiness: the database answers, can be written and is not damaged, the scheduler
    runs, no plugin failed."""
    reasons = await unready_reasons(request.app[HUB], request.app[SCHEDULER])
    if reasons:
        return json_response({"status": "unavailable", "reasons": reasons}, status=503)
    return json_response({"status": "ready"})


@routes.get("/api/status", name="status")
async def status(request: web.Request) -> web.Response:
    """Everything the admin page shows, as JSON."""
    return json_response(await hub_status(request.app[HUB], request.app[SCHEDULER]))


async def _options(request: web.Request) -> dict[str, Any]:
    options: dict[str, Any] = dict(request.query)
    if request.can_read_body:
        options.update(await json_object(request))
    return options


@routes.post("/api/sync/{name}", name="sync")
async def trigger_sync(request: web.Request) -> web.Response:
    """Start a sync of an integration's connections (or one ``connection``); 202 with run ids."""
    hub = request.app[HUB]
    name = request.match_info["name"]
    if name not in hub.plugins.integrations:
        raise web.HTTPNotFound(text=f"no integration {name!r}")
    if not hub.plugins.has_owner_hook(name, "sync"):
        raise web.HTTPNotFound(text=f"{name} has nothing to sync")
    if hub.disabled(name):
        raise web.HTTPConflict(text=f"{name} is disabled in the configuration")
    options = await _options(request)
    full, wanted = options.get("full", False), options.get("connection")
    if not isinstance(full, str | bool | int):
        raise web.HTTPBadRequest(text="full must be true or false")
    if not isinstance(wanted, str | None):
        raise web.HTTPBadRequest(text="connection must be a string: a connection id or key")
    full = str(full).lower() in {"1", "true", "yes"}
    connections = await hub.find_connections(name, wanted)
    if not connections:
        raise web.HTTPNotFound(
            text=f"no connection {wanted[:200]!r} of {name}"
            if wanted
            else f"{name} has no connections"
        )
    run_ids = []
    for connection in connections:
        try:
            run_ids.append(await hub.engine.start(connection.id, full=full, trigger="api"))
        except SyncBusyError as exc:
            if len(connections) == 1:
                return json_response({"error": str(exc), "run_id": exc.run_id}, status=409)
        except LookupError as exc:  # removed meanwhile
            if len(connections) == 1:
                raise web.HTTPNotFound(text=str(exc)) from None
    return json_response({"run_id": run_ids[0] if run_ids else None, "run_ids": run_ids}, 202)


@routes.get("/api/runs/{id}", name="run")
async def run(request: web.Request) -> web.Response:
    """One sync run: state, counts, duration, error."""
    run_id = parse_int(request.match_info["id"])
    if run_id is None:
        raise web.HTTPNotFound(text="no such run")
    found = await request.app[HUB].store.runs.get(run_id)
    if found is None:
        raise web.HTTPNotFound(text="no such run")
    return json_response(found)


@routes.get("/api/connections/{id}/diagnostics", name="diagnostics")
async def diagnostics(request: web.Request) -> web.Response:
    """A connection's redacted diagnostics dump (the plugin's ``diagnostics`` hook)."""
    try:
        dump = await connection_diagnostics(request.app[HUB], request.match_info["id"])
    except LookupError:
        raise web.HTTPNotFound(text=f"no connection {request.match_info['id']!r}") from None
    return json_response(dump)


@routes.get("/api/connections/{id}/financials", name="financials")
async def financials(request: web.Request) -> web.Response:
    """A connection's financial key figures (its plugin's ``key_figures`` hook)."""
    connection_id = request.match_info["id"]
    try:
        found = await request.app[HUB].key_figures(connection_id)
    except LookupError:
        raise web.HTTPNotFound(text=f"no connection {connection_id!r}") from None
    if not found:
        raise web.HTTPNotFound(
            text=f"no key figures for {connection_id!r}: its plugin computes none, or has "
            "no reports synced yet"
        )
    return json_response(found[0].as_json())


@routes.get("/metrics", name="metrics")
async def metrics(request: web.Request) -> web.Response:
    """Prometheus text format."""
    body = request.app[HUB].metrics.render()
    return web.Response(body=body, headers={"Content-Type": "text/plain; version=0.0.4"})
