"""``/api/inbox`` (events, dead letters, replay) and ``/api/subscriptions`` (outbound)."""

from __future__ import annotations

from aiohttp import web

from hub.errors import ProviderError
from hub.store.inbox import EVENT_STATES
from hub.web.api import json_response
from hub.web.keys import HUB
from hub.web.params import json_object, parse_int
from hub.webhooks import signing, urlguard

routes = web.RouteTableDef()


@routes.get("/api/inbox", name="inbox")
async def inbox(request: web.Request) -> web.Response:
    """Events with their deliveries, newest first; ``?state=pending|dead|done``, ``?limit=``."""
    state = request.query.get("state") or None
    if state is not None and state not in EVENT_STATES:
        raise web.HTTPBadRequest(text=f"state must be one of {', '.join(EVENT_STATES)}")
    limit = parse_int(request.query.get("limit", "100"), max_digits=4)
    if limit is None or not 1 <= limit <= 1000:
        raise web.HTTPBadRequest(text="limit must be 1..1000")
    events = await request.app[HUB].store.inbox.events(state, limit)
    return json_response({"events": events})


@routes.post("/api/inbox/{id}/replay", name="replay")
async def replay(request: web.Request) -> web.Response:
    """Run an event's dead-lettered deliveries again."""
    hub = request.app[HUB]
    event = parse_int(request.match_info["id"])
    if event is None or not await hub.store.inbox.exists(event):
        raise web.HTTPNotFound(text="no such event")
    count = await hub.store.inbox.replay(event)
    hub.dispatcher.wake()
    return json_response({"event": event, "replayed": count}, status=202)


@routes.get("/api/subscriptions", name="subscriptions")
async def subscriptions(request: web.Request) -> web.Response:
    """Every subscription (secrets are shown only once, at creation)."""
    found = await request.app[HUB].store.subscriptions.list()
    return json_response({"subscriptions": [s.public() for s in found]})


async def _subscription_request(request: web.Request) -> tuple[str, list[str], str]:
    body = await json_object(request)
    url, events = body.get("url"), body.get("events", ["*"])
    description = body.get("description", "")
    if not isinstance(url, str) or not url:
        raise web.HTTPBadRequest(text="url is required")
    if not (isinstance(events, list) and events and all(isinstance(e, str) and e for e in events)):
        raise web.HTTPBadRequest(text="events must be a non-empty list of event types")
    if not isinstance(description, str):
        raise web.HTTPBadRequest(text="description must be a string")
    return url, events, description[:500]


@routes.post("/api/subscriptions")
async def create_subscription(request: web.Request) -> web.Response:
    """Create a subscription after a signed test ping succeeds; 201 with id and secret."""
    hub = request.app[HUB]
    url, events, description = await _subscription_request(request)
    allow_private = hub.settings.webhooks.outbound.allow_private
    try:
        await urlguard.check_destination(url, allow_private)
    except (urlguard.UnsafeURLError, OSError) as exc:
        raise web.HTTPBadRequest(text=f"url refused: {exc}") from None
    secret = signing.new_secret()
    try:
        await hub.outbound.ping(url, secret)
    except (ProviderError, urlguard.UnsafeURLError, OSError) as exc:
        raise web.HTTPBadRequest(text=f"the test ping failed: {exc}") from None
    created = await hub.store.subscriptions.create(url, events, description, secret)
    await hub.dispatcher.reload_subscriptions()
    return json_response({**created.public(), "secret": secret}, status=201)


@routes.post("/api/subscriptions/{id}/enable")
async def enable_subscription(request: web.Request) -> web.Response:
    """Re-enable a subscription (disabled after failing deliveries) once a signed test ping to
    its endpoint succeeds; its secret stays the same. Its dead letters can be replayed."""
    hub = request.app[HUB]
    found = await hub.store.subscriptions.get(request.match_info["id"])
    if found is None:
        raise web.HTTPNotFound(text="no such subscription")
    if found.state == "unreadable":
        raise web.HTTPConflict(text=f"its secret cannot be read: {found.disabled_reason}")
    try:
        await hub.outbound.ping(found.url, found.secret)
    except (ProviderError, urlguard.UnsafeURLError, OSError) as exc:
        raise web.HTTPBadRequest(text=f"the test ping failed: {exc}") from None
    if not await hub.store.subscriptions.enable(found.id):
        raise web.HTTPNotFound(text="no such subscription")  # deleted meanwhile
    await hub.dispatcher.reload_subscriptions()
    enabled = await hub.store.subscriptions.get(found.id)
    assert enabled is not None
    return json_response(enabled.public())


@routes.delete("/api/subscriptions/{id}")
async def delete_subscription(request: web.Request) -> web.Response:
    """Delete a subscription and its pending deliveries."""
    hub = request.app[HUB]
    if not await hub.store.subscriptions.delete(request.match_info["id"]):
        raise web.HTTPNotFound(text="no such subscription")
    await hub.dispatcher.reload_subscriptions()
    return json_response({"deleted": request.match_info["id"]})
