"""The Stripe sandbox's objects and their changes (package private): customers, products,
prices and the Events API that records every change; the clock; expansion; bulk seeding.

Billing objects (subscriptions, invoices, payments) build on this in
:mod:`plugins.stripe._sandbox_billing`. Nothing here knows about HTTP.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from ._sandbox_search import parse, search_page
from ._sandbox_store import (
    JSON,
    Page,
    StripeError,
    Table,
    Window,
    as_bool,
    as_int,
    invalid,
    metadata_update,
    missing,
    object_id,
)

EVENT_RETENTION_S = 30 * 86400
"""The Events API lists the last 30 days of events."""

KINDS = {
    "cus": "customer",
    "prod": "product",
    "price": "price",
    "sub": "subscription",
    "si": "subscription_item",
    "in": "invoice",
    "il": "line_item",
    "pi": "payment_intent",
    "ch": "charge",
    "re": "refund",
    "dp": "dispute",
    "cs": "checkout.session",
    "bps": "billing_portal.session",
    "pm": "payment_method",
    "evt": "event",
}
"""Id prefix -> object type (one table each)."""
PREFIX = {kind: prefix for prefix, kind in KINDS.items()}


@dataclass(frozen=True)
class RequestInfo:
    """The API request a change came from (events name it in ``request``)."""

    id: str | None
    idempotency_key: str | None


NO_REQUEST = RequestInfo(None, None)
CURRENT_REQUEST: contextvars.ContextVar[RequestInfo] = contextvars.ContextVar(
    "stripe_sandbox_request", default=NO_REQUEST
)
"""Set by the HTTP layer around each request; changes made outside a request (a simulated
renewal) have no request."""


def snapshot(obj: JSON) -> JSON:
    """A deep copy of a JSON object (events keep the object as it was)."""
    copied: JSON = orjson.loads(orjson.dumps(obj))
    return copied


def changed_fields(before: Mapping[str, Any], after: Mapping[str, Any]) -> JSON:
    """``data.previous_attributes``: the earlier value of each top-level field that changed."""
    return {key: before.get(key) for key in after if before.get(key) != after[key]}


def text(params: Mapping[str, Any], name: str, *, required: bool = False) -> str | None:
    """A string parameter (400 when required and absent, or not a string)."""
    value = params.get(name)
    if value is None:
        if required:
            raise invalid(f"Missing required param: {name}.", param=name)
        return None
    if not isinstance(value, str):
        raise invalid(f"Invalid {name}: must be a string", param=name)
    return value


def known(params: Mapping[str, Any], allowed: frozenset[str]) -> None:
    """Stripe refuses unknown parameters (400 naming the first)."""
    unknown = sorted(set(params) - allowed - {"expand"})
    if unknown:
        raise invalid(f"Received unknown parameter: {unknown[0]}", param=unknown[0])


def equal_to(params: Mapping[str, Any], fields: tuple[str, ...]) -> Callable[[JSON], bool] | None:
    """A list filter: objects whose ``fields`` equal the given parameters (None: no filter)."""
    wanted = {name: params[name] for name in fields if params.get(name) is not None}
    if not wanted:
        return None
    return lambda obj: all(_comparable(obj.get(k)) == v for k, v in wanted.items())


def _comparable(value: Any) -> Any:
    """A field as a form parameter compares: booleans as ``true``/``false``, ids of objects."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return value.get("id")
    return value


_CUSTOMER_FIELDS = frozenset(
    {"name", "email", "description", "phone", "metadata", "address", "invoice_settings"}
    | {"payment_method", "preferred_locales", "shipping", "tax_exempt"}
)
_PRODUCT_FIELDS = frozenset({"name", "description", "active", "metadata", "default_price", "url"})
_PRICE_FIELDS = frozenset(
    {"currency", "unit_amount", "product", "product_data", "recurring", "active", "metadata"}
    | {"nickname", "lookup_key", "tax_behavior"}
)


_CUSTOMER_DEFAULTS: JSON = {
    "livemode": False,
    "address": None,
    "balance": 0,
    "currency": None,
    "default_source": None,
    "delinquent": False,
    "description": None,
    "discount": None,
    "email": None,
    "name": None,
    "next_invoice_sequence": 1,
    "phone": None,
    "shipping": None,
    "tax_exempt": "none",
    "test_clock": None,
}
"""A new customer's scalar fields (its nested ones are made fresh for each)."""


SEARCHABLE = {
    "customer": frozenset({"created", "email", "name", "phone"}),
    "price": frozenset({"active", "currency", "lookup_key", "product", "type", "created"}),
    "subscription": frozenset({"created", "status"}),
}
"""The fields Stripe's search accepts per object type (``metadata`` always)."""


class Ledger:
    """The sandbox's objects, by type, and the events of their changes."""

    def __init__(
        self,
        *,
        start_time: float | None = None,
        frozen: bool = False,
        api_version: str = "2023-08-16",
        pending_webhooks: int = 0,
    ) -> None:
        self.tables = {kind: Table(kind) for kind in KINDS.values()}
        self.api_version = api_version
        self.pending_webhooks = pending_webhooks
        self._frozen = frozen
        self._base = time.time() if start_time is None else start_time
        self._mark = time.monotonic()
        self._serial = 0
        self.listeners: list[Callable[[JSON], None]] = []
        """Called with every new event (the HTTP layer queues webhook deliveries)."""
        self.recording = True
        """False while seeding: changes write no events."""

    # ---- clock

    @property
    def now(self) -> int:
        """The sandbox's current time (Unix seconds, Stripe's ``created`` resolution)."""
        elapsed = 0.0 if self._frozen else time.monotonic() - self._mark
        return int(self._base + elapsed)

    def set_time(self, when: float) -> None:
        """Jump the sandbox clock to ``when`` (Unix seconds); it keeps running from there."""
        self._base = when
        self._mark = time.monotonic()

    def advance(self, seconds: float) -> None:
        """Move the sandbox clock forward by ``seconds``."""
        self.set_time(
            self._base + (0.0 if self._frozen else time.monotonic() - self._mark) + seconds
        )

    # ---- ids and storage

    def serial(self) -> int:
        """The next creation number (ids and the order of equal ``created`` times)."""
        self._serial += 1
        return self._serial

    def new_id(self, kind: str) -> str:
        """A fresh id for an object of ``kind``."""
        return object_id(PREFIX[kind], self.serial())

    def table(self, kind: str) -> Table:
        """The table of ``kind`` (``customer``, ``invoice``, ...)."""
        return self.tables[kind]

    def get(self, kind: str, oid: str) -> JSON:
        """The live object (404 ``resource_missing`` when unknown)."""
        return self.tables[kind].get(oid)

    def find(self, oid: str) -> JSON | None:
        """Any live object by id (its prefix names its type)."""
        kind = KINDS.get(oid.partition("_")[0]) if isinstance(oid, str) else None
        return None if kind is None else self.tables[kind].rows.get(oid)

    def ref(self, kind: str, oid: Any, param: str) -> JSON:
        """The object a parameter names (400 ``resource_missing`` naming the parameter)."""
        if not isinstance(oid, str) or oid not in self.tables[kind]:
            raise missing(kind, str(oid), param=param)
        return self.tables[kind].rows[oid]

    def base(self, kind: str) -> JSON:
        """The fields every object has: ``id``, ``object``, ``created``, ``livemode``."""
        return {"id": self.new_id(kind), "object": kind, "created": self.now, "livemode": False}

    def insert(self, obj: JSON, event: str | None = None) -> JSON:
        """Store a new object and, unless ``event`` is None, record ``<type>.created``."""
        self.tables[obj["object"]].add(obj, self.serial())
        if event is not None:
            self.emit(event, obj)
        return obj

    def change(self, obj: JSON, changes: Mapping[str, Any], event: str | None) -> JSON:
        """Apply ``changes`` to a stored object and record ``event`` with what they were."""
        before = dict(obj)
        obj.update(changes)
        previous = changed_fields(before, obj)
        if event is not None:
            self.emit(event, obj, previous)
        return obj

    # ---- events

    def emit(self, kind: str, obj: JSON, previous: Mapping[str, Any] | None = None) -> JSON:
        """Record an event of type ``kind`` about ``obj`` (a snapshot of it as it is now)."""
        data: JSON = {"object": snapshot(obj)}
        if previous is not None:
            data["previous_attributes"] = snapshot(dict(previous))
        request = CURRENT_REQUEST.get()
        event = {
            "id": self.new_id("event"),
            "object": "event",
            "api_version": self.api_version,
            "created": self.now,
            "data": data,
            "livemode": False,
            "pending_webhooks": self.pending_webhooks,
            "request": {"id": request.id, "idempotency_key": request.idempotency_key},
            "type": kind,
        }
        if not self.recording:
            return event
        self.tables["event"].add(event, self.serial())
        for listener in self.listeners:
            listener(event)
        return event

    def oldest_listed(self) -> int:
        """The ``created`` time of the oldest event the Events API still lists."""
        return self.now - EVENT_RETENTION_S

    def event(self, oid: str, params: Mapping[str, Any] | None = None) -> JSON:
        """An event of the last 30 days (404 otherwise)."""
        found = self.get("event", oid)
        if found["created"] < self.oldest_listed():
            raise missing("event", oid)
        return found

    def list_events(self, params: Mapping[str, Any], limit: int) -> Page:
        """``GET /v1/events``: newest first, the last 30 days, by ``type``/``types``."""
        for cursor in ("starting_after", "ending_before"):
            oid = params.get(cursor)
            if isinstance(oid, str):
                found = self.tables["event"].rows.get(oid)
                if found is None or found["created"] < self.oldest_listed():
                    raise missing("event", oid, param=cursor)
        kinds = params.get("types") or ([params["type"]] if params.get("type") else [])
        if not isinstance(kinds, list):
            raise invalid("Invalid types: must be an array", param="types")
        keep = None if not kinds else (lambda e: any(_type_matches(e["type"], k) for k in kinds))
        return self.page("event", params, limit, keep=keep, floor=self.oldest_listed())

    # ---- lists and expansion

    def page(
        self,
        kind: str,
        params: Mapping[str, Any],
        limit: int,
        keep: Callable[[JSON], bool] | None = None,
        floor: int | None = None,
    ) -> Page:
        """A list page of ``kind`` after the cursor parameters and ``created`` filter."""
        after, before = params.get("starting_after"), params.get("ending_before")
        if after is not None and before is not None:
            raise invalid(
                "You may only specify one of these parameters: ending_before, starting_after."
            )
        return self.tables[kind].page(
            limit,
            starting_after=text(params, "starting_after"),
            ending_before=text(params, "ending_before"),
            window=Window.of(params.get("created"), floor),
            keep=keep,
        )

    def expand(self, obj: JSON, paths: list[str]) -> JSON:
        """A copy of ``obj`` with each dotted path of ``expand[]`` replaced by its object."""
        result = dict(obj)
        for path in paths:
            head, _, rest = path.partition(".")
            if head not in result:
                try:
                    result[head] = self.included(obj, head)
                except KeyError:
                    raise invalid(
                        f"This property cannot be expanded ({path}).", param="expand"
                    ) from None
            result[head] = self._expanded(result, head, rest, path)
        return result

    def included(self, obj: JSON, field: str) -> Any:
        """A field Stripe shows only when asked for (``expand[]=tax_ids``); KeyError when
        ``obj`` has no such field."""
        if obj.get("object") == "customer" and field == "tax_ids":
            return {
                "object": "list",
                "data": [],
                "has_more": False,
                "url": f"/v1/customers/{obj['id']}/tax_ids",
            }
        raise KeyError(field)

    def _expanded(self, obj: JSON, field: str, rest: str, path: str) -> Any:
        value = obj.get(field)
        if isinstance(value, str):
            found = self.find(value)
            if found is None:
                raise invalid(f"This property cannot be expanded ({path}).", param="expand")
            value = found
        if isinstance(value, dict) and rest:
            if value.get("object") == "list":
                return {**value, "data": [self.expand(o, [rest]) for o in value["data"]]}
            return self.expand(value, [rest])
        return value

    def search(self, kind: str, params: Mapping[str, Any], limit: int) -> Page:
        """``GET /v1/<type>/search``: Stripe's search query over the type's searchable fields."""
        query = text(params, "query", required=True)
        assert query is not None
        keep = parse(query, SEARCHABLE[kind])
        rows, token, total = search_page(self.tables[kind].newest(), keep, params, limit)
        return Page(rows, token is not None, search=True, next_page=token, total=total)

    def search_customers(self, params: Mapping[str, Any], limit: int) -> Page:
        """``GET /v1/customers/search``."""
        return self.search("customer", params, limit)

    def search_prices(self, params: Mapping[str, Any], limit: int) -> Page:
        """``GET /v1/prices/search``."""
        return self.search("price", params, limit)

    # ---- customers, products, prices

    def create_customer(self, params: Mapping[str, Any]) -> JSON:
        """``POST /v1/customers``."""
        known(params, _CUSTOMER_FIELDS)
        customer = self.customer_object()
        self._customer_fields(customer, params)
        return self.insert(customer, "customer.created")

    def customer_object(self, **fields: Any) -> JSON:
        """A new customer with Stripe's default fields (not stored)."""
        oid = self.new_id("customer")
        return {
            "id": oid,
            "object": "customer",
            "created": fields.get("created") or self.now,
            **_CUSTOMER_DEFAULTS,
            "invoice_prefix": oid[4:12].upper(),
            "invoice_settings": {
                "custom_fields": None,
                "default_payment_method": None,
                "footer": None,
                "rendering_options": None,
            },
            "metadata": {},
            "preferred_locales": [],
            **fields,
        }

    def _customer_fields(self, customer: JSON, params: Mapping[str, Any]) -> JSON:
        for name in ("name", "email", "description", "phone"):
            if name in params:
                customer[name] = text(params, name) or None
        if "metadata" in params:
            customer["metadata"] = metadata_update(customer["metadata"], params["metadata"])
        if isinstance(params.get("address"), dict):
            customer["address"] = {
                k: params["address"].get(k)
                for k in ("city", "country", "line1", "line2", "postal_code", "state")
            }
        settings = params.get("invoice_settings")
        method = params.get("payment_method")
        if isinstance(settings, dict) and "default_payment_method" in settings:
            method = settings["default_payment_method"] or None
        if method is not None:
            customer["invoice_settings"] = {
                **customer["invoice_settings"],
                "default_payment_method": str(method),
            }
        return customer

    def update_customer(self, oid: str, params: Mapping[str, Any]) -> JSON:
        """``POST /v1/customers/{id}``."""
        known(params, _CUSTOMER_FIELDS)
        customer = self.get("customer", oid)
        updated = self._customer_fields(dict(customer), params)
        return self.change(customer, updated, "customer.updated")

    def delete_customer(self, oid: str, params: Mapping[str, Any] | None = None) -> JSON:
        """``DELETE /v1/customers/{id}``: gone, with a ``customer.deleted`` event."""
        customer = self.tables["customer"].remove(oid)
        self.emit("customer.deleted", customer)
        return {"id": oid, "object": "customer", "deleted": True}

    def list_customers(self, params: Mapping[str, Any], limit: int) -> Page:
        """``GET /v1/customers`` (``email`` filter)."""
        return self.page("customer", params, limit, keep=equal_to(params, ("email",)))

    def create_product(self, params: Mapping[str, Any]) -> JSON:
        """``POST /v1/products``."""
        known(params, _PRODUCT_FIELDS)
        product = self.product_object(str(text(params, "name", required=True)))
        return self.insert(self._product_fields(product, params), "product.created")

    def product_object(self, name: str, **fields: Any) -> JSON:
        """A new product (not stored)."""
        product = self.base("product")
        product |= {
            "active": True,
            "default_price": None,
            "description": None,
            "images": [],
            "marketing_features": [],
            "metadata": {},
            "name": name,
            "package_dimensions": None,
            "shippable": None,
            "statement_descriptor": None,
            "tax_code": None,
            "type": "service",
            "unit_label": None,
            "updated": product["created"],
            "url": None,
        }
        return product | fields

    def _product_fields(self, product: JSON, params: Mapping[str, Any]) -> JSON:
        for name in ("name", "description", "url", "default_price"):
            if name in params:
                product[name] = text(params, name) or None
        if "active" in params:
            product["active"] = as_bool(params, "active")
        if "metadata" in params:
            product["metadata"] = metadata_update(product["metadata"], params["metadata"])
        product["updated"] = self.now
        return product

    def update_product(self, oid: str, params: Mapping[str, Any]) -> JSON:
        """``POST /v1/products/{id}``."""
        known(params, _PRODUCT_FIELDS)
        product = self.get("product", oid)
        return self.change(product, self._product_fields(dict(product), params), "product.updated")

    def delete_product(self, oid: str, params: Mapping[str, Any] | None = None) -> JSON:
        """``DELETE /v1/products/{id}`` (refused while prices use it, as Stripe does)."""
        product = self.get("product", oid)
        if any(p["product"] == oid for p in self.tables["price"].rows.values()):
            raise invalid(
                "This product cannot be deleted because it has one or more user-created prices."
            )
        self.tables["product"].remove(oid)
        self.emit("product.deleted", product)
        return {"id": oid, "object": "product", "deleted": True}

    def create_price(self, params: Mapping[str, Any]) -> JSON:
        """``POST /v1/prices`` (``product`` or ``product_data[name]``)."""
        known(params, _PRICE_FIELDS)
        currency = str(text(params, "currency", required=True)).lower()
        amount = as_int(params, "unit_amount")
        if amount is None or amount < 0:
            raise invalid("Missing required param: unit_amount.", param="unit_amount")
        product_data = params.get("product_data")
        if isinstance(product_data, dict):
            product = self.insert(
                self.product_object(str(text(product_data, "name", required=True))),
                "product.created",
            )
        else:
            product = self.ref("product", params.get("product"), "product")
        repeat = params.get("recurring")
        price = self.price_object(product["id"], amount, currency)
        if isinstance(repeat, dict):
            interval = text(repeat, "interval", required=True)
            if interval not in ("day", "week", "month", "year"):
                raise invalid(
                    f"Invalid recurring[interval]: {interval}", param="recurring[interval]"
                )
            count = as_int(repeat, "interval_count", 1)
            price |= {"recurring": recurring(interval, count or 1), "type": "recurring"}
        for name in ("nickname", "lookup_key"):
            price[name] = text(params, name)
        if "metadata" in params:
            price["metadata"] = metadata_update({}, params["metadata"])
        price["active"] = as_bool(params, "active", True)
        return self.insert(price, "price.created")

    def price_object(
        self, product: str, amount: int, currency: str = "usd", repeat: JSON | None = None
    ) -> JSON:
        """A new price (``repeat``: a ``recurring`` hash); not stored."""
        price = self.base("price")
        price |= {
            "active": True,
            "billing_scheme": "per_unit",
            "currency": currency,
            "custom_unit_amount": None,
            "lookup_key": None,
            "metadata": {},
            "nickname": None,
            "product": product,
            "recurring": repeat,
            "tax_behavior": "unspecified",
            "tiers_mode": None,
            "transform_quantity": None,
            "type": "one_time" if repeat is None else "recurring",
            "unit_amount": amount,
            "unit_amount_decimal": str(amount),
        }
        return price

    def update_price(self, oid: str, params: Mapping[str, Any]) -> JSON:
        """``POST /v1/prices/{id}``: only ``active``, ``nickname``, ``lookup_key``, ``metadata``."""
        known(params, frozenset({"active", "nickname", "lookup_key", "metadata", "tax_behavior"}))
        price = self.get("price", oid)
        changes: JSON = {}
        if "active" in params:
            changes["active"] = as_bool(params, "active")
        for name in ("nickname", "lookup_key"):
            if name in params:
                changes[name] = text(params, name) or None
        if "metadata" in params:
            changes["metadata"] = metadata_update(price["metadata"], params["metadata"])
        return self.change(price, changes, "price.updated")

    def list_prices(self, params: Mapping[str, Any], limit: int) -> Page:
        """``GET /v1/prices`` (``product``, ``active``, ``currency``, ``type`` filters)."""
        keep = equal_to(params, ("product", "active", "currency", "type"))
        return self.page("price", params, limit, keep=keep)

    def list_products(self, params: Mapping[str, Any], limit: int) -> Page:
        """``GET /v1/products`` (``active`` filter)."""
        return self.page("product", params, limit, keep=equal_to(params, ("active",)))


def recurring(interval: str = "month", count: int = 1) -> JSON:
    """A price's ``recurring`` hash."""
    return {
        "aggregate_usage": None,
        "interval": interval,
        "interval_count": count,
        "trial_period_days": None,
        "usage_type": "licensed",
    }


def _type_matches(kind: str, pattern: str) -> bool:
    """Stripe's event type filter: exact, or a ``*`` wildcard (``customer.*``)."""
    if "*" not in pattern:
        return kind == pattern
    prefix = pattern.split("*", 1)[0]
    return kind.startswith(prefix)


def card_error(code: str, decline_code: str | None, message: str, **extra: Any) -> StripeError:
    """A 402 ``card_error``."""
    return StripeError(
        402, "card_error", message, code=code, decline_code=decline_code, extra=extra
    )
