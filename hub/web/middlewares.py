"""Middlewares: admin auth on ``/api`` and ``/admin``, metrics, JSON errors without tracebacks."""

from __future__ import annotations

import time

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler

from hub.web.keys import AUTH, HUB

log = structlog.get_logger("hub.web")
PROTECTED_PREFIXES = ("/api/", "/admin")
PUBLIC_PATHS = frozenset({"/admin/login"})


def _route_label(request: web.Request) -> str:
    info = request.match_info.route.resource
    return info.canonical if info is not None else "unmatched"


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count and time every request by route template and status."""
    metrics = request.app[HUB].metrics
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        route = _route_label(request)
        metrics.http_requests.labels(request.method, route, str(status)).inc()
        metrics.http_duration.labels(route).observe(time.perf_counter() - started)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer errors as JSON ``{"error": …}``; an unexpected exception is a logged 500."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400 or exc.content_type == "application/json":
            raise
        reason = exc.text if exc.text and not exc.text.startswith(f"{exc.status}:") else exc.reason
        return web.json_response({"error": reason}, status=exc.status, headers=_keep(exc))
    except Exception:
        log.exception("request failed", method=request.method, path=request.path)
        return web.json_response({"error": "internal error (see the hub's log)"}, status=500)


def _keep(exc: web.HTTPException) -> dict[str, str]:
    return {k: v for k, v in exc.headers.items() if k in {"Allow", "Location", "WWW-Authenticate"}}


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Require the admin token (or session cookie) on ``/api/*`` and ``/admin``."""
    path = request.path
    protected = path.startswith(PROTECTED_PREFIXES) and path not in PUBLIC_PATHS
    if protected and not request.app[AUTH].authorized(request):
        if path.startswith("/admin") and request.method == "GET":
            raise web.HTTPFound("/admin/login")
        return web.json_response(
            {"error": "admin token required (Authorization: Bearer <token>)"},
            status=401,
            headers={"WWW-Authenticate": 'Bearer realm="advisoros-hub"'},
        )
    return await handler(request)
