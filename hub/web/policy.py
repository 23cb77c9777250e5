"""The hub's request policy, applied to each route's handler as the app is built: admin auth
on ``/api`` and ``/admin``, JSON errors without tracebacks, and request metrics.

It wraps handlers instead of running as an aiohttp middleware: the middleware chain (the
app's own current-app middleware comes with it) cost the webhook path a tenth of its
throughput. A last route, :func:`unmatched`, answers what no other route matches under the
same policy: 401 (or the login page) on a protected path without the token, else a JSON 405
naming the allowed methods, or a JSON 404. A body that aiohttp cannot decode for a handler
(``request.post()``, ``.text()``, ``.json()``: an unknown charset, bytes not in it, a broken
form or JSON) is the client's mistake: 400, on plugin routes too.
"""

from __future__ import annotations

import functools
import time
import traceback
from collections.abc import Iterable

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler

from hub.web.api import json_response
from hub.web.auth import presented_credential, token_digest
from hub.web.keys import AUTH, HUB

log = structlog.get_logger("hub.web")
PROTECTED_PREFIXES = ("/api/", "/admin")
PUBLIC_PATHS = frozenset({"/admin/login"})
KEPT_ERROR_HEADERS = frozenset({"Allow", "Location", "WWW-Authenticate"})


def _protected(path: str) -> bool:
    return path.startswith(PROTECTED_PREFIXES) and path not in PUBLIC_PATHS


UNMATCHED_ROUTE = r"/{tail:[\s\S]*}"  # any path, newlines included


UNAUTHORIZED = '{"error": "admin token required (Authorization: Bearer <token>)"}'
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="advisoros-hub"'}


def _unauthorized(request: web.Request) -> web.StreamResponse | None:
    """The answer for a request without a valid token or session, else None.

    :raise web.HTTPTooManyRequests: a token from an address that failed too often lately.
    """
    if request.app[AUTH].authorized(request):
        return None
    if request.path.startswith("/admin") and request.method == "GET":
        raise web.HTTPFound("/admin/login")
    return web.Response(
        text=UNAUTHORIZED, status=401, content_type="application/json", headers=CHALLENGE
    )


def require_admin(request: web.Request) -> str:
    """The digest of the request's valid admin credential (for plugin routes outside
    ``/api`` and ``/admin``).

    :raise web.HTTPUnauthorized: no valid admin token or session (a JSON body).
    :raise web.HTTPTooManyRequests: a token from an address that failed too often lately.
    """
    if not request.app[AUTH].authorized(request):
        raise web.HTTPUnauthorized(
            text=UNAUTHORIZED, content_type="application/json", headers=CHALLENGE
        )
    return token_digest(presented_credential(request))


BODY_DECODERS = frozenset(
    method.__code__ for method in (web.BaseRequest.post, web.BaseRequest.text, web.BaseRequest.json)
)
"""aiohttp's methods that decode a request body for a handler."""


def _undecodable_body(exc: Exception) -> bool:
    """True if ``exc`` was raised while aiohttp decoded the request's body (an unknown
    charset is a LookupError, bad bytes or a broken form or JSON a ValueError)."""
    return isinstance(exc, LookupError | ValueError) and any(
        frame.f_code in BODY_DECODERS for frame, _ in traceback.walk_tb(exc.__traceback__)
    )


def _error_response(exc: web.HTTPException) -> web.Response:
    """An HTTP error as JSON ``{"error": reason}``, keeping Allow/Location/WWW-Authenticate."""
    reason = exc.text if exc.text and not exc.text.startswith(f"{exc.status}:") else exc.reason
    response = json_response({"error": reason}, status=exc.status)
    for key, value in exc.headers.items():
        if key in KEPT_ERROR_HEADERS:
            response.headers[key] = value
    return response


def guarded(handler: Handler, route: str) -> Handler:
    """``handler`` under the hub's policy: authorise, turn errors into JSON, count and time.

    :param route: the route's path pattern: whether it needs the admin token (however a
        request spells its path) and the label of its request metrics.
    """
    protected = _protected(route)

    @functools.wraps(handler)
    async def serve(request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        metrics = request.app[HUB].metrics
        try:
            response = (protected and _unauthorized(request)) or await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400 or exc.content_type == "application/json":
                metrics.request_served(request.method, route, exc.status, 0.0)
                raise
            response = _error_response(exc)
        except Exception as exc:
            if _undecodable_body(exc):
                reason = f"the request body cannot be decoded: {exc}"[:300]
                response = json_response({"error": reason}, status=400)
            else:
                log.exception("request failed", method=request.method, path=request.path)
                response = json_response({"error": "internal error (see the hub's log)"}, 500)
        metrics.request_served(
            request.method, route, response.status, time.perf_counter() - started
        )
        return response

    return serve


def guard_routes(routes: Iterable[web.AbstractRouteDef]) -> list[web.AbstractRouteDef]:
    """``routes`` with every handler :func:`guarded`.

    :raise ValueError: static files under ``/api/`` or ``/admin`` (no handler could check the
        admin token), or a route definition of another kind, which could register anything.
    """
    guarded_routes: list[web.AbstractRouteDef] = []
    for route in routes:
        if isinstance(route, web.RouteDef):
            wrapped = guarded(route.handler, route.path)
            route = web.RouteDef(route.method, route.path, wrapped, route.kwargs)
        elif isinstance(route, web.StaticDef):
            if _protected(route.prefix.rstrip("/") + "/"):
                raise ValueError(f"{route!r}: only handlers can serve /api/ and /admin paths")
        else:
            raise ValueError(f"{route!r}: routes must be handlers or static files")
        guarded_routes.append(route)
    return guarded_routes


async def unmatched(request: web.Request) -> web.StreamResponse:
    """What no route matches: 401 (or the login page) on a protected path without the admin
    token, 405 with ``Allow`` when the path exists for other methods, else 404; all JSON."""
    if _protected(request.path):
        denied = _unauthorized(request)
        if denied is not None:
            return denied
    allowed: set[str] = set()
    for resource in request.app.router.resources():
        if resource is not request.match_info.route.resource:
            allowed |= (await resource.resolve(request))[1]
    if allowed:
        response = json_response({"error": f"method {request.method} not allowed"}, status=405)
        response.headers["Allow"] = ", ".join(sorted(allowed))
        return response
    return json_response({"error": f"no such path: {request.path}"}, status=404)
