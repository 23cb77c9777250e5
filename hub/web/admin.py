"""The admin page: a login form and one status page rendered from :func:`hub_status`."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from hub.status import hub_status
from hub.web.auth import SESSION_COOKIE, SESSION_TTL_S
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
    """Check the posted token; on success set the session cookie and go to /admin."""
    form = await request.post()
    token = str(form.get("token", ""))
    if not token or not request.app[AUTH].check_token(token):
        return render("login.html", 401, error="That token is not right.")
    response = web.Response(status=303, headers={"Location": "/admin"})
    response.set_cookie(
        SESSION_COOKIE,
        request.app[AUTH].new_session(),
        max_age=SESSION_TTL_S,
        httponly=True,
        samesite="Strict",
        secure=request.secure,
        path="/",
    )
    return response


@routes.post("/admin/logout")
async def logout(request: web.Request) -> web.StreamResponse:
    """Forget the session cookie."""
    response = web.Response(status=303, headers={"Location": "/admin/login"})
    response.del_cookie(SESSION_COOKIE, path="/")
    return response
