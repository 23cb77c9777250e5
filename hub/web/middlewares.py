"""The hub's one middleware: admin auth on ``/api`` and ``/admin``, JSON errors without
tracebacks, and request metrics. One frame instead of three keeps the webhook path lean."""

from __future__ import annotations

import time

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler

from hub.web.api import json_response
from hub.web.keys import AUTH, HUB

log = structlog.get_logger("hub.web")
PROTECTED_PREFIXES = ("/api/", "/admin")
PUBLIC_PATHS = frozenset({"/admin/login"})
KEPT_ERROR_HEADERS = frozenset({"Allow", "Location", "WWW-Authenticate"})


def _route_label(request: web.Request) -> str:
    info = request.match_info.route.resource
    return info.canonical if info is not None else "unmatched"


def _unauthorized(request: web.Request) -> web.StreamResponse | None:
    """The answer for a protected path without a valid token or session, else None."""
    path = request.path
    protected = path.startswith(PROTECTED_PREFIXES) and path not in PUBLIC_PATHS
    if not protected or request.app[AUTH].authorized(request):
        return None
    if path.startswith("/admin") and request.method == "GET":
        raise web.HTTPFound("/admin/login")
    response = json_response(
        {"error": "admin token required (Authorization: Bearer <token>)"}, status=401
    )
    response.headers["WWW-Authenticate"] = 'Bearer realm="advisoros-hub"'
    return response


def _error_response(exc: web.HTTPException) -> web.Response:
    """An HTTP error as JSON ``{"error": reason}``, keeping Allow/Location/WWW-Authenticate."""
    reason = exc.text if exc.text and not exc.text.startswith(f"{exc.status}:") else exc.reason
    response = json_response({"error": reason}, status=exc.status)
    for key, value in exc.headers.items():
        if key in KEPT_ERROR_HEADERS:
            response.headers[key] = value
    return response


def _count(request: web.Request, status: int, started: float) -> None:
    request.app[HUB].metrics.request_served(
        request.method, _route_label(request), status, time.perf_counter() - started
    )


@web.middleware
async def hub_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Authorise, run the handler, turn errors into JSON, count and time the request."""
    started = time.perf_counter()
    try:
        response = _unauthorized(request) or await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400 or exc.content_type == "application/json":
            _count(request, exc.status, started)
            raise
        response = _error_response(exc)
    except Exception:
        log.exception("request failed", method=request.method, path=request.path)
        response = json_response({"error": "internal error (see the hub's log)"}, status=500)
    _count(request, response.status, started)
    return response
