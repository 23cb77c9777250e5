"""The plugin's admin API under ``/api/notifications`` (the hub checks the admin token).

- ``POST /api/notifications``: send a welcome/invitation or a bulk notification (below);
  the sends are recorded before the ``202`` answer and sent in the background.
- ``GET /api/notifications/batches/{batch}``: the sends of one notification, counted by status.
- ``GET /api/notifications/sends?status=&limit=``: the latest sends (no bodies).
- ``GET /api/notifications/suppressions?limit=&offset=``: the suppression list.
- ``DELETE /api/notifications/suppressions/{email}``: remove an address here and from
  SendGrid's list it came from.

The ``POST`` body: ``{"kind": "welcome" | "invitation" | "notification", "recipients":
[{"email", "name"?, "data"?} | "address", …] | "clients", "subject", "text", "template_id"?,
"data"?}``; ``"clients"`` sends to every client in the registry that has an e-mail.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Annotated, Any, Literal

import orjson
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field
from pydantic import ValidationError as PydanticValidationError

from .client import SUPPRESSION_LISTS, SendGridClient
from .mailer import Mailer
from .message import Message, Recipient, normalise
from .runtime import mailer_of
from .settings import EMAIL

if TYPE_CHECKING:
    from hub.api import HubAPI

MAX_BODY = 32 * 1024 * 1024
"""Largest notification request (a bulk of 100,000 addresses is ~5 MB)."""
MAX_RECIPIENTS = 200_000
REMOTE_LIST = {
    "bounce": "bounces",
    "spamreport": "spam_reports",
    "unsubscribe": "unsubscribes",
    **{f"sendgrid:{name}": name for name in SUPPRESSION_LISTS},
}
"""Which SendGrid list a suppression's source corresponds to (to remove it there too)."""


Address = Annotated[str, Field(pattern=EMAIL, max_length=320)]


class RecipientIn(BaseModel):
    """One addressee of a notification request."""

    model_config = ConfigDict(extra="forbid", defer_build=True)
    email: str = Field(pattern=EMAIL, max_length=320)
    name: str = Field(default="", max_length=200)
    data: dict[str, Any] = Field(default_factory=dict)


class NotificationIn(BaseModel):
    """The body of ``POST /api/notifications``."""

    model_config = ConfigDict(extra="forbid", defer_build=True)
    kind: Literal["welcome", "invitation", "notification"] = "notification"
    recipients: list[RecipientIn | Address] | Literal["clients"] = Field(min_length=1)
    subject: str = Field(min_length=1, max_length=500)
    text: str = Field(min_length=1, max_length=100_000)
    template_id: str | None = Field(default=None, max_length=100)
    data: dict[str, Any] = Field(default_factory=dict)


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _mailer(hub: HubAPI) -> Mailer:
    mailer = mailer_of(hub)
    if mailer is None:
        raise web.HTTPConflict(
            text=orjson.dumps({"error": "e-mail is not configured"}).decode(),
            content_type="application/json",
        )
    return mailer


async def _read(request: web.Request) -> bytes:
    """The body, read up to :data:`MAX_BODY` (above the hub's webhook-sized default)."""
    body = bytearray()
    async for chunk in request.content.iter_chunked(1 << 16):
        body += chunk
        if len(body) > MAX_BODY:
            raise web.HTTPRequestEntityTooLarge(max_size=MAX_BODY, actual_size=len(body))
    return bytes(body)


async def _recipients(hub: HubAPI, given: list[RecipientIn | str] | str) -> list[Recipient]:
    """The addressees of a request (``"clients"``: the registry's clients with an e-mail)."""
    if given == "clients":
        return [
            Recipient(str(c["email"]), str(c.get("name") or ""))
            for c in await hub.clients.list()
            if c.get("email")
        ]
    return [
        Recipient(item) if isinstance(item, str) else Recipient(item.email, item.name, item.data)
        for item in given
    ]


class NotificationRoutes:
    """The handlers, bound to one hub."""

    def __init__(self, hub: HubAPI) -> None:
        self.hub = hub

    def routes(self) -> list[web.RouteDef]:
        """The route table."""
        base = "/api/notifications"
        return [
            web.post(base, self.create),
            web.get(f"{base}/batches/{{batch}}", self.batch),
            web.get(f"{base}/sends", self.sends),
            web.get(f"{base}/suppressions", self.suppressions),
            web.delete(f"{base}/suppressions/{{email}}", self.unsuppress),
        ]

    async def create(self, request: web.Request) -> web.Response:
        """Record a notification's sends (chunked within SendGrid's limits) and send them."""
        mailer = _mailer(self.hub)
        try:
            spec = NotificationIn.model_validate_json(await _read(request))
        except PydanticValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            return _error(400, f"{where}: {first['msg']}" if where else first["msg"])
        recipients = await _recipients(self.hub, spec.recipients)
        if len(recipients) > MAX_RECIPIENTS:
            return _error(400, f"at most {MAX_RECIPIENTS} recipients per notification")
        if not recipients:
            return _error(400, "recipients: no addresses")
        template = spec.template_id
        if template is None and spec.kind in ("welcome", "invitation"):
            template = mailer.settings.templates.welcome
        message = Message(
            spec.kind, spec.subject, spec.text, tuple(recipients), template, spec.data
        )
        batch = uuid.uuid4().hex
        rows = await mailer.record(await mailer.split(message), batch)
        mailer.spawn(rows)
        return web.json_response(
            {
                "batch": batch,
                "requests": sum(1 for r in rows if r["status"] == "queued"),
                "recipients": sum(int(r["recipient_count"]) for r in rows),
                "suppressed": len({normalise(r.email) for r in recipients})
                - sum(int(r["recipient_count"]) for r in rows),
            },
            status=202,
        )

    async def batch(self, request: web.Request) -> web.Response:
        """Counts by status of one notification's sends."""
        rows = await _mailer(self.hub).tables.query(
            "sends", "batch = ?", [request.match_info["batch"]]
        )
        if not rows:
            return _error(404, "no such notification batch")
        counts: dict[str, int] = {}
        recipients: dict[str, int] = {}
        for row in rows:
            status = str(row["status"])
            counts[status] = counts.get(status, 0) + 1
            recipients[status] = recipients.get(status, 0) + int(row["recipient_count"])
        errors = sorted({str(r["last_error"]) for r in rows if r["last_error"]})[:5]
        return web.json_response({"requests": counts, "recipients": recipients, "errors": errors})

    async def sends(self, request: web.Request) -> web.Response:
        """The latest sends, newest first (``status`` filters; ``limit`` at most 500)."""
        status = request.query.get("status")
        try:
            limit = min(max(int(request.query.get("limit", "50")), 1), 500)
        except ValueError:
            return _error(400, "limit must be an integer")
        rows = await _mailer(self.hub).tables.query(
            "sends",
            "status = ?" if status else "",
            [status] if status else [],
            order_by="created_at DESC",
            limit=limit,
        )
        for row in rows:
            row.pop("payload", None)
            row["recipients"] = orjson.loads(row["recipients"])
        return web.json_response({"sends": rows})

    async def suppressions(self, request: web.Request) -> web.Response:
        """The suppression list, a page at a time."""
        try:
            limit = min(max(int(request.query.get("limit", "100")), 1), 1000)
            offset = max(int(request.query.get("offset", "0")), 0)
        except ValueError:
            return _error(400, "limit and offset must be integers")
        mailer = _mailer(self.hub)
        rows = await mailer.tables.query("suppressions", order_by="email", limit=offset + limit)
        total = await mailer.count("suppressions")
        return web.json_response({"suppressions": rows[offset:], "total": total})

    async def unsuppress(self, request: web.Request) -> web.Response:
        """Remove an address from the suppression list (and from SendGrid's, when it is one
        of SendGrid's lists)."""
        mailer = _mailer(self.hub)
        email = normalise(request.match_info["email"])
        row = await mailer.tables.get("suppressions", email)
        if row is None:
            return _error(404, "that address is not suppressed")
        remote = REMOTE_LIST.get(str(row["source"]))
        removed_remote = False
        if remote and isinstance(mailer.sendgrid, SendGridClient):
            removed_remote = await mailer.sendgrid.delete_suppression(remote, email)
        await mailer.tables.delete("suppressions", [email])
        return web.json_response(
            {"removed": email, "sendgrid_list": remote if removed_remote else None}
        )
