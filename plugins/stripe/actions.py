"""Billing actions through the hub's API: ``/api/billing/...`` (admin token required).

* ``POST /api/billing/customers`` ``{"client_id"}``: create or find the client's customer;
* ``POST /api/billing/subscriptions`` ``{"client_id" or "customer", "price", "quantity"?}``:
  a subscription with ``payment_behavior=default_incomplete``, answering the first invoice's
  payment ``client_secret``;
* ``POST /api/billing/subscriptions/{id}/plan`` ``{"price"}``: change plan, prorated by
  ``proration_behavior``;
* ``POST /api/billing/subscriptions/{id}/cancel`` ``{"at_period_end"?}``: cancel now, or at
  the end of the period;
* ``POST /api/billing/portal`` ``{"client_id" or "customer", "return_url"?}``: a
  customer-portal session.

Each answers the updated Stripe object, stores it in its stream (so ``/api/status`` and the
records agree at once) and is recorded in the plugin's ``requests`` table with the
idempotency key sent (see :meth:`~.client.StripeApi.post`). A caller's ``Idempotency-Key``
header names the action across the caller's own retries; without one, the same request
within 24 hours reuses the key of the first (creates only: a plan change, a cancellation and a
portal session may be repeated once answered). A Stripe refusal answers its plain message and
a suggested action (:mod:`.errors`), never a 500.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import structlog
from aiohttp import web

from hub.api import HubAPI
from hub.errors import HubError
from hub.model import Connection

from .client import JSON, StripeApi, client_for
from .errors import describe, http_status
from .settings import NAME, StripeSettings

log = structlog.get_logger("plugins.stripe")

Handler = Callable[[web.Request], Awaitable[web.Response]]
MAX_ID = 255


class BadRequest(Exception):
    """The caller's request is wrong: answered 400 (or ``status``) with the reason."""

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.status = status


def _text(body: dict[str, Any], name: str, required: bool = True) -> str | None:
    value = body.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not 0 < len(value) <= MAX_ID:
        raise BadRequest(f"{name!r} must be a string of 1 to {MAX_ID} characters")
    return value


def _client_id(body: dict[str, Any]) -> int | None:
    value = body.get("client_id")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 2**63:
        raise BadRequest("'client_id' must be a positive integer")
    return value


async def _body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if not raw:
        return {}
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise BadRequest("the body must be JSON") from None
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    return body


class Billing:
    """The actions of one request: the connection, its client and settings."""

    def __init__(self, hub: HubAPI, connection: Connection, settings: StripeSettings) -> None:
        self.hub = hub
        self.connection = connection
        self.settings = settings
        self.api: StripeApi = client_for(hub, connection, settings)
        self.tables = hub.tables(__name__)

    async def store(self, stream: str, record: JSON) -> None:
        """Write the answered object into its stream (matched to clients, for customers), in
        the shape a list shows it (``latest_invoice`` as its id, not expanded)."""
        invoice = record.get("latest_invoice")
        if isinstance(invoice, dict):
            record = {**record, "latest_invoice": invoice.get("id")}
        await self.hub.write_records(self.connection, stream, [record])

    async def client(self, client_id: int) -> dict[str, Any]:
        """The hub client ``client_id`` (404 if there is none)."""
        for client in await self.hub.clients.list():
            if client["id"] == client_id:
                return client
        raise BadRequest(f"no client {client_id}", status=404)

    async def customer_of(self, client_id: int, key: str | None) -> JSON:
        """The client's Stripe customer: the one linked before, else a new one whose
        ``metadata.client_id`` links it to the client as it is stored (``matched_by``
        ``client_id``, as a sync matches it)."""
        client = await self.client(client_id)
        known = await self.tables.get("customers", (self.connection.id, client_id))
        linked = [
            link["provider_id"]
            for link in client.get("links", [])
            if link["integration"] == NAME and link["connection_id"] == self.connection.id
        ]
        for customer_id in [known["customer_id"]] if known else linked:
            found = await self.api.retrieve(f"/v1/customers/{customer_id}")
            if found is not None and not found.get("deleted"):
                await self.remember(client_id, found)
                return found
        params: dict[str, Any] = {"metadata": {"client_id": str(client_id)}}
        params |= {k: client[k] for k in ("name", "email") if client.get(k)}
        customer = await self.api.post(
            "create_customer", "/v1/customers", params, request_key=key or f"client:{client_id}"
        )
        await self.remember(client_id, customer)
        return customer

    async def remember(self, client_id: int, customer: JSON) -> None:
        """Record the client's customer and store the customer record."""
        row = {
            "connection_id": self.connection.id,
            "client_id": client_id,
            "customer_id": customer["id"],
            "linked_at": time.time(),
        }
        await self.tables.upsert("customers", [row])
        await self.store("customers", customer)

    async def customer_id(self, body: dict[str, Any], key: str | None) -> str:
        """The ``customer`` of the body, or the Stripe customer of its ``client_id``."""
        client_id = _client_id(body)
        if client_id is not None:
            return str((await self.customer_of(client_id, key))["id"])
        customer = _text(body, "customer", required=False)
        if customer is None:
            raise BadRequest("give 'client_id' or 'customer'")
        return customer

    async def subscription(self, subscription_id: str) -> JSON:
        """The subscription as Stripe has it now (404 if there is none)."""
        found = await self.api.retrieve(f"/v1/subscriptions/{subscription_id}")
        if found is None:
            raise BadRequest(f"no subscription {subscription_id}", status=404)
        return found


def client_secret(subscription: JSON) -> str | None:
    """The first invoice's payment client secret (``confirmation_secret`` in newer API
    versions, the invoice's ``payment_intent`` in older ones)."""
    invoice = subscription.get("latest_invoice")
    if not isinstance(invoice, dict):
        return None
    for holder in (invoice.get("confirmation_secret"), invoice.get("payment_intent")):
        if isinstance(holder, dict) and isinstance(holder.get("client_secret"), str):
            return str(holder["client_secret"])
    return None


def invoice_expansion(settings: StripeSettings) -> str:
    """What to expand for the first invoice's client secret: ``payment_intent`` before API
    version 2025-03-31 (when invoices lost it), ``confirmation_secret`` from then on."""
    old = settings.api_version is not None and settings.api_version < "2025-03-31"
    return "latest_invoice.payment_intent" if old else "latest_invoice.confirmation_secret"


class BillingRoutes:
    """The ``/api/billing`` routes (the core checks the admin token under ``/api``)."""

    def __init__(self, hub: HubAPI) -> None:
        self.hub = hub

    def routes(self) -> list[web.RouteDef]:
        """The route definitions for the ``routes`` hook."""
        return [
            web.post("/api/billing/customers", self._wrap(self.customer)),
            web.post("/api/billing/subscriptions", self._wrap(self.subscribe)),
            web.post("/api/billing/subscriptions/{id}/plan", self._wrap(self.change_plan)),
            web.post("/api/billing/subscriptions/{id}/cancel", self._wrap(self.cancel)),
            web.post("/api/billing/portal", self._wrap(self.portal)),
        ]

    def _wrap(
        self, action: Callable[[Billing, web.Request, dict[str, Any], str | None], Awaitable[JSON]]
    ) -> Handler:
        async def handle(request: web.Request) -> web.Response:
            try:
                billing = await self._billing(request)
                key = request.headers.get("Idempotency-Key")
                if key is not None and not 0 < len(key) <= MAX_ID:
                    raise BadRequest(f"Idempotency-Key must be 1 to {MAX_ID} characters")
                answer = await action(billing, request, await _body(request), key)
            except BadRequest as exc:
                return web.json_response({"error": str(exc)}, status=exc.status)
            except HubError as exc:
                log.info("stripe refused a billing action", path=request.path, error=str(exc))
                return web.json_response(describe(exc), status=http_status(exc))
            return web.json_response(answer)

        return handle

    async def _billing(self, request: web.Request) -> Billing:
        settings = self.hub.settings_for(NAME)
        if not isinstance(settings, StripeSettings):
            raise BadRequest("Stripe is not configured: set [integrations.stripe]", status=409)
        found = await self.hub.find_connections(NAME, request.query.get("connection"))
        if not found:
            raise BadRequest("no such Stripe connection", status=404)
        return Billing(self.hub, found[0], settings)

    async def customer(
        self, billing: Billing, request: web.Request, body: dict[str, Any], key: str | None
    ) -> JSON:
        """Create or find the Stripe customer of a hub client."""
        client_id = _client_id(body)
        if client_id is None:
            raise BadRequest("'client_id' is required")
        return {"customer": await billing.customer_of(client_id, key)}

    async def subscribe(
        self, billing: Billing, request: web.Request, body: dict[str, Any], key: str | None
    ) -> JSON:
        """Create a subscription waiting for its first payment; answer its client secret."""
        price = _text(body, "price")
        quantity = body.get("quantity", 1)
        if isinstance(quantity, bool) or not isinstance(quantity, int) or not 0 < quantity < 10**6:
            raise BadRequest("'quantity' must be a positive integer")
        customer = await billing.customer_id(body, None)
        params = {
            "customer": customer,
            "items": [{"price": price, "quantity": quantity}],
            "payment_behavior": "default_incomplete",
            "payment_settings": {"save_default_payment_method": "on_subscription"},
            "expand": [invoice_expansion(billing.settings)],
        }
        subscription = await billing.api.post(
            "create_subscription", "/v1/subscriptions", params, request_key=key
        )
        await billing.store("subscriptions", subscription)
        return {"subscription": subscription, "client_secret": client_secret(subscription)}

    async def change_plan(
        self, billing: Billing, request: web.Request, body: dict[str, Any], key: str | None
    ) -> JSON:
        """Move the subscription's (first) item to another price, with proration."""
        price = _text(body, "price")
        current = await billing.subscription(request.match_info["id"])
        items = (current.get("items") or {}).get("data") or []
        if not items:
            raise BadRequest(f"subscription {current['id']} has no items")
        params = {
            "items": [{"id": items[0]["id"], "price": price}],
            "proration_behavior": billing.settings.proration_behavior,
        }
        updated = await billing.api.post(
            "change_plan",
            f"/v1/subscriptions/{current['id']}",
            params,
            request_key=key,
            repeatable=True,
        )
        await billing.store("subscriptions", updated)
        return {"subscription": updated}

    async def cancel(
        self, billing: Billing, request: web.Request, body: dict[str, Any], key: str | None
    ) -> JSON:
        """Cancel now (``DELETE``), or at the end of the period (``cancel_at_period_end``)."""
        at_period_end = body.get("at_period_end", False)
        if not isinstance(at_period_end, bool):
            raise BadRequest("'at_period_end' must be true or false")
        current = await billing.subscription(request.match_info["id"])
        path = f"/v1/subscriptions/{current['id']}"
        if at_period_end:
            updated = await billing.api.post(
                "cancel_at_period_end",
                path,
                {"cancel_at_period_end": True},
                request_key=key,
                repeatable=True,
            )
        else:
            updated = await billing.api.request("delete", path)
        await billing.store("subscriptions", updated)
        return {"subscription": updated}

    async def portal(
        self, billing: Billing, request: web.Request, body: dict[str, Any], key: str | None
    ) -> JSON:
        """A customer-portal session; answer its ``url``."""
        return_url = _text(body, "return_url", required=False) or billing.settings.portal_return_url
        if not return_url:
            raise BadRequest("give 'return_url' or set integrations.stripe.portal_return_url")
        customer = await billing.customer_id(body, None)
        session = await billing.api.post(
            "portal_session",
            "/v1/billing_portal/sessions",
            {"customer": customer, "return_url": return_url},
            request_key=key,
            repeatable=True,
        )
        return {"session": session, "url": session.get("url")}
