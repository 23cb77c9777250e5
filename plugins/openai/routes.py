"""The OpenAI plugin's API (under ``/api``, so the hub checks the admin token):

- ``POST /api/documents/{id}/analyze`` -- body ``{"type": "receipt"}`` or none: queue an
  analysis; ``202 {"analysis_id", "document_id", "state": "queued", "type", "status"}``;
  404 unknown document, 409 its analysis is already queued or running, 503 with
  ``Retry-After`` when the queue is full, 400 for a bad body or type.
- ``GET /api/documents/{id}/analysis`` -- the document's latest analysis (404: none).
- ``GET /api/openai/usage`` -- this month's usage against the plan's limits, per model.
- ``POST /api/clients/{id}/insights`` -- the client's insights (``insights.py``).

Every error is JSON ``{"error": reason}``; 503 when the integration is not configured.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from hub.api import HubAPI

from . import results, usage
from .runtime import runtime_of
from .settings import DOCUMENT_TYPES
from .sync import AlreadyRunning, QueueFull

if TYPE_CHECKING:
    from .service import Runtime

MAX_BODY = 4096
RETRY_AFTER_S = 10
"""What a 503 for a full queue tells the caller to wait."""


def json_error(status: int, reason: str, headers: dict[str, str] | None = None) -> web.Response:
    """A JSON ``{"error": reason}`` answer."""
    return web.json_response({"error": reason}, status=status, headers=headers)


async def json_body(request: web.Request) -> dict[str, Any]:
    """The request's JSON object (empty without a body).

    :raise web.HTTPException: 400 not a JSON object, 413 over :data:`MAX_BODY` bytes.
    """
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise web.HTTPRequestEntityTooLarge(max_size=MAX_BODY, actual_size=request.content_length)
    raw = await request.content.read(MAX_BODY + 1)
    if len(raw) > MAX_BODY:
        raise web.HTTPRequestEntityTooLarge(max_size=MAX_BODY, actual_size=len(raw))
    if not raw.strip():
        return {}
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        body = None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(
            text=orjson.dumps({"error": "send a JSON object"}).decode(),
            content_type="application/json",
        )
    return body


class OpenAIRoutes:
    """The handlers, bound to one hub."""

    def __init__(self, hub: HubAPI) -> None:
        self.hub = hub

    def routes(self) -> list[web.RouteDef]:
        """The route table."""
        return [
            web.post("/api/documents/{id}/analyze", self.analyze),
            web.get("/api/documents/{id}/analysis", self.analysis),
            web.get("/api/openai/usage", self.usage),
            web.post("/api/clients/{id}/insights", self.insights),
        ]

    def _runtime(self) -> Runtime:
        runtime = runtime_of(self.hub)
        if runtime is None:
            raise web.HTTPServiceUnavailable(
                text=orjson.dumps(
                    {"error": "OpenAI is not configured ([integrations.openai])"}
                ).decode(),
                content_type="application/json",
            )
        return runtime

    async def analyze(self, request: web.Request) -> web.Response:
        """``POST /api/documents/{id}/analyze``: queue the document's analysis."""
        runtime = self._runtime()
        body = await json_body(request)
        kind = body.get("type")
        if kind is not None and kind not in DOCUMENT_TYPES:
            return json_error(400, f"type must be one of {', '.join(DOCUMENT_TYPES)}")
        document_id = request.match_info["id"]
        document = await self.hub.read_document(document_id, 0)
        if document is None:
            return json_error(404, f"no document {document_id!r}")
        try:
            analysis_id = await runtime.start_analysis(
                document.id, document.client, document.name, kind, "api"
            )
        except AlreadyRunning:
            return json_error(409, f"document {document_id} is already being analysed")
        except QueueFull as exc:
            return json_error(
                503, f"the analysis queue is full ({exc})", {"Retry-After": str(RETRY_AFTER_S)}
            )
        return web.json_response(
            {
                "analysis_id": analysis_id,
                "document_id": document.id,
                "state": "queued",
                "type": kind,
                "status": f"/api/documents/{document.id}/analysis",
            },
            status=202,
        )

    async def analysis(self, request: web.Request) -> web.Response:
        """``GET /api/documents/{id}/analysis``: the latest analysis of the document."""
        row = await results.latest(self.hub, request.match_info["id"])
        if row is None:
            return json_error(404, f"document {request.match_info['id']!r} has no analysis")
        return web.json_response(results.public(row))

    async def usage(self, request: web.Request) -> web.Response:
        """``GET /api/openai/usage``: this month's usage vs the plan's limits, per model."""
        runtime = self._runtime()
        return web.json_response(await usage.report(self.hub, runtime.settings))

    async def insights(self, request: web.Request) -> web.Response:
        """``POST /api/clients/{id}/insights``: the client's narrative on the hub's figures."""
        from .insights import client_insights  # loaded with the service, not at start

        return await client_insights(request, self._runtime())
