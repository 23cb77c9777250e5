"""The admin page: a login form and one status page rendered from :func:`hub_status`."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from hub.status import hub_status
from hub.web.auth import SESSION_COOKIE
from hub.web.keys import AUTH, HUB, SCHEDULER

if TYPE_CHECKING:
    import jinja2

routes = web.RouteTableDef()


@functools.cache
def _templates() -> jinja2.Environment:
    """The page templates, loaded when the first page is rendered (not at start)."""
    import jinja2

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
        autoescape=jinja2.select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render(name: str, code: int = 200, **context: object) -> web.Response:
    """Render a template as an HTML response with status ``code``."""
    html = _templates().get_template(name).render(**context)
    return web.Response(text=html, status=code, content_type="text/html")


@routes.get("/admin", name="admin")
async def admin(request: web.Request) -> web.Response:
    """The status page."""
    status = await hub_status(request.app[HUB], request.app[SCHEDULER])
    return render("admin.html", status=status, connected=request.query.get("connected", "")[:200])


@routes.get("/admin/login", name="login")
async def login_form(request: web.Request) -> web.Response:
    """The login form."""
    return render("login.html")


@routes.post("/admin/login")
async def login(request: web.Request) -> web.StreamResponse:
    """Check the posted token; on success start a session (its cookie) and go to /admin.

    A client address that failed too often lately gets the form again with 429 and
    ``Retry-After``, whatever it posted.
    """
    form = await request.post()
    token = str(form.get("token", ""))
    auth = request.app[AUTH]
    try:
        signed_in = bool(token) and auth.sign_in(request, token, "login form")
    except web.HTTPTooManyRequests as exc:
        wait = exc.headers["Retry-After"]
        response = render("login.html", 429, error=f"Too many failed attempts: retry in {wait} s.")
        response.headers["Retry-After"] = wait
        return response
    if not signed_in:
        return render("login.html", 401, error="That token is not right.")
    response = web.Response(status=303, headers={"Location": "/admin"})
    response.set_cookie(
        SESSION_COOKIE,
        auth.new_session(),
        max_age=auth.sessions.ttl_s,
        httponly=True,
        samesite="Strict",
        secure=request.secure or auth.secure_cookies,
        path="/",
    )
    return response


@routes.post("/admin/logout")
async def logout(request: web.Request) -> web.StreamResponse:
    """End the session on the server (its cookie is refused from now on) and forget it."""
    request.app[AUTH].end_session(request)
    response = web.Response(status=303, headers={"Location": "/admin/login"})
    response.del_cookie(SESSION_COOKIE, path="/")
    return response
