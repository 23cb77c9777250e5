"""``/api/clients``: the clients registry, the candidates matching left for a person to
settle, and settling them by linking a provider record to a client."""

from __future__ import annotations

from aiohttp import web

from hub.store.clients import UnknownConnection
from hub.web.api import json_response
from hub.web.keys import HUB
from hub.web.params import json_object, parse_int

routes = web.RouteTableDef()
LINK_FIELDS = ("integration", "connection", "provider_id")


@routes.get("/api/clients", name="clients")
async def clients(request: web.Request) -> web.Response:
    """Every client with its links to provider records (how each was matched)."""
    return json_response({"clients": await request.app[HUB].store.clients.list()})


@routes.get("/api/clients/reviews", name="client_reviews")
async def reviews(request: web.Request) -> web.Response:
    """Provider records matching could not settle: why, and the clients they may belong to."""
    return json_response({"reviews": await request.app[HUB].store.clients.reviews()})


@routes.post("/api/clients/{id}/links", name="client_link")
async def link(request: web.Request) -> web.Response:
    """Link a provider record to this client by hand (``{"integration": …, "connection": …,
    "provider_id": …}``), replacing any link it had; its review, if any, is settled. 404 for
    an unknown client, 400 for a connection of ``integration`` the hub does not have."""
    hub = request.app[HUB]
    client_id = parse_int(request.match_info["id"])
    if client_id is None:
        raise web.HTTPNotFound(text="no such client")
    body = await json_object(request)
    missing = [key for key in LINK_FIELDS if not isinstance(body.get(key), str) or not body[key]]
    if missing:
        raise web.HTTPBadRequest(text=f"{', '.join(missing)}: required, a non-empty string")
    integration, connection, provider_id = (body[key] for key in LINK_FIELDS)
    try:
        await hub.store.clients.link(client_id, integration, connection, provider_id, "manual")
    except UnknownConnection as exc:
        raise web.HTTPBadRequest(text=f"connection: {exc}") from None
    except LookupError as exc:
        raise web.HTTPNotFound(text=str(exc)) from None
    linked = {"integration": integration, "connection": connection, "provider_id": provider_id}
    return json_response({"client": client_id, "linked": linked})
