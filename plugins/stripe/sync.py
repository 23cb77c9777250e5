"""Turning a Stripe account into hub batches: full reads, then the Events API as the cursor.

Each stream's cursor is one of:

* absent: read the stream in full (first sync, or a full sync);
* ``{"full": {"after", "event", "event_created"}}``: a full read in progress, resumed after
  the object ``after`` (lists run newest first, by ``starting_after``);
* ``{"event", "event_created", "full_at"}``: everything up to the event ``event`` is stored;
  the next run reads the newer events, oldest to newest (``ending_before``).

A full read pages the stream's list endpoint and ends on the newest event that existed when
the run began, so a change made during the read is caught by the next run. An incremental
run walks the events after the oldest cursor, page by page, and re-fetches each object that
changed (the event is only a change notice): a deleted or vanished object becomes a
tombstone. Stripe keeps events for 30 days: a cursor older than that (or whose event Stripe
no longer has) re-reads its stream in full within the incremental run (``Batch.full``), and
so does a stream whose last full read is older than ``reconcile_hours`` (the nightly
reconciliation), so records that vanished unseen are tombstoned too.

Money stays as Stripe sends it: integer minor units beside a ``currency``. The customers
stream declares the fields that identify a client (:data:`CUSTOMER_CLIENT`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog

from hub.errors import ValidationError
from hub.model import Batch, ClientFields, Stream

from .client import JSON, StripeApi

if TYPE_CHECKING:
    from .settings import StripeSettings

log = structlog.get_logger("plugins.stripe")

EVENT_RETENTION_S = 30 * 86400
EVENT_SAFETY_S = 3600
"""A cursor this close to the 30-day retention is treated as past it."""
BATCH_RECORDS = 1000
"""Pages of a full read are gathered into batches of about this many records (Stripe pages
hold at most 100; fewer, larger transactions store faster)."""
REFETCH_CONCURRENCY = 8
"""Objects re-fetched at once while applying a page of events."""


@dataclass(frozen=True)
class Spec:
    """A stream, the Stripe object type it holds and its API path."""

    stream: str
    object: str
    path: str
    columns: Mapping[str, str]
    list_params: Mapping[str, str] = field(default_factory=dict)
    client: ClientFields | None = None

    def as_stream(self) -> Stream:
        """The hub's declaration of this stream."""
        return Stream(
            self.stream,
            key="id",
            columns={"created": "created", "livemode": "livemode"} | dict(self.columns),
            description=f"Stripe {self.object} objects (raw JSON; amounts in minor units)",
            client=self.client,
        )


def tax_values(customer: JSON) -> list[str]:
    """A customer's tax ids (``tax_ids.data[].value``, present when expanded)."""
    tax_ids = customer.get("tax_ids")
    data = tax_ids.get("data") if isinstance(tax_ids, Mapping) else None
    return [str(t["value"]) for t in data or () if isinstance(t, Mapping) and t.get("value")]


CUSTOMER_CLIENT = ClientFields(
    name="name",
    email="email",
    tax_id=tax_values,
    client_id="metadata.client_id",
    order=("client_id", "email", "name"),
)
"""How a customer identifies a client of the firm: the hub client id the billing actions
write into its metadata, else its e-mail address, else its name (its tax ids are kept on
the client, and a client with none of them is not linked by e-mail or name, but they are no
evidence of their own)."""

MONEY = {"currency": "currency"}
SPECS: tuple[Spec, ...] = (
    Spec(
        "customers",
        "customer",
        "/v1/customers",
        {"name": "name", "email": "email", "client_id": "metadata.client_id"},
        client=CUSTOMER_CLIENT,
    ),
    Spec("products", "product", "/v1/products", {"name": "name", "active": "active"}),
    Spec(
        "prices",
        "price",
        "/v1/prices",
        {"product": "product", "unit_amount": "unit_amount", "active": "active", **MONEY},
    ),
    Spec(
        "subscriptions",
        "subscription",
        "/v1/subscriptions",
        {
            "customer": "customer",
            "status": "status",
            "cancel_at_period_end": "cancel_at_period_end",
        },
        list_params={"status": "all"},
    ),
    Spec(
        "invoices",
        "invoice",
        "/v1/invoices",
        {
            "customer": "customer",
            "status": "status",
            "number": "number",
            "amount_due": "amount_due",
            "amount_paid": "amount_paid",
            **MONEY,
        },
    ),
    Spec(
        "payment_intents",
        "payment_intent",
        "/v1/payment_intents",
        {"customer": "customer", "status": "status", "amount": "amount", **MONEY},
    ),
    Spec(
        "charges",
        "charge",
        "/v1/charges",
        {
            "customer": "customer",
            "status": "status",
            "amount": "amount",
            "amount_refunded": "amount_refunded",
            **MONEY,
        },
    ),
    Spec(
        "refunds",
        "refund",
        "/v1/refunds",
        {"charge": "charge", "status": "status", "amount": "amount", **MONEY},
    ),
    Spec(
        "disputes",
        "dispute",
        "/v1/disputes",
        {"charge": "charge", "status": "status", "amount": "amount", **MONEY},
    ),
)
STREAMS: tuple[Stream, ...] = tuple(spec.as_stream() for spec in SPECS)
BY_STREAM: dict[str, Spec] = {spec.stream: spec for spec in SPECS}
BY_OBJECT: dict[str, Spec] = {spec.object: spec for spec in SPECS}
NESTED_LISTS = {"invoice": ("lines", "/lines"), "subscription": ("items", None)}
"""Lists inside an object that Stripe cuts at 10 entries: (field, sub-path of the object);
subscription items are read from ``/v1/subscription_items``."""


def is_gone(record: JSON | None) -> bool:
    """True for an object Stripe no longer has (404) or reports as ``deleted``."""
    return record is None or record.get("deleted") is True


async def complete(api: StripeApi, spec: Spec, record: JSON) -> JSON:
    """``record`` with its cut lists (invoice lines, subscription items) read in full."""
    nested = NESTED_LISTS.get(spec.object)
    if nested is None:
        return record
    name, sub_path = nested
    inner = record.get(name)
    if not isinstance(inner, dict) or not inner.get("has_more") or not inner.get("data"):
        return record
    if sub_path is None:
        path, params = "/v1/subscription_items", {"subscription": record["id"]}
    else:
        path, params = f"{spec.path}/{record['id']}{sub_path}", {}
    data: list[JSON] = []
    async with contextlib.aclosing(api.pages(path, params)) as pages:
        async for page in pages:
            data.extend(page)
    return {**record, name: {**inner, "data": data, "has_more": False}}


async def refetch(api: StripeApi, spec: Spec, object_id: str) -> JSON | None:
    """The object as Stripe has it now, lists complete; None when it is gone."""
    record = await api.retrieve(f"{spec.path}/{object_id}")
    if is_gone(record):
        return None
    assert record is not None
    return await complete(api, spec, record)


# --------------------------------------------------------------------------- full reads


async def read_stream(
    api: StripeApi, spec: Spec, head: Mapping[str, Any], resume: str | None, full: bool
) -> AsyncGenerator[Batch, None]:
    """Yield a batch per page of one stream, then the batch switching it to events.

    :param head: ``{"event", "event_created"}``: the newest event when the read began.
    :param resume: the id of the last stored object of an interrupted read.
    :param full: mark the batches as a full re-read begun in an incremental run.
    """
    params = dict(spec.list_params)
    if resume:
        params["starting_after"] = resume
    records: list[JSON] = []
    async with contextlib.aclosing(api.pages(spec.path, params)) as pages:
        async for page in pages:
            records.extend([await complete(api, spec, record) for record in page])
            if len(records) >= BATCH_RECORDS:
                cursor = {"full": {"after": records[-1]["id"], **head}}
                yield Batch(spec.stream, records, cursor=cursor, full=full)
                records = []
    if records:
        cursor = {"full": {"after": records[-1]["id"], **head}}
        yield Batch(spec.stream, records, cursor=cursor, full=full)
    yield Batch(spec.stream, [], cursor={**head, "full_at": time.time()}, full=full)


# --------------------------------------------------------------------------- events


def deletes(event_type: str, spec: Spec) -> bool:
    """True if the event says the object is gone. ``customer.subscription.deleted`` means
    canceled: the subscription stays (``status`` ``canceled``), as a full read lists it."""
    return event_type.endswith(".deleted") and spec.object != "subscription"


def changed_object(event: Mapping[str, Any]) -> tuple[Spec, str, bool] | None:
    """The synced object an event is about: (spec, object id, deleted), or None."""
    obj = (event.get("data") or {}).get("object") or {}
    spec = BY_OBJECT.get(str(obj.get("object", "")))
    if spec is None or not obj.get("id"):
        return None
    return spec, str(obj["id"]), deletes(str(event.get("type", "")), spec)


class CursorTooOld(Exception):
    """Stripe no longer has the cursor's event (events are kept 30 days)."""


async def event_pages(api: StripeApi, after: str | None) -> AsyncGenerator[list[JSON], None]:
    """The events after ``after``, oldest to newest, a page at a time (every event Stripe
    keeps when ``after`` is None: the account had none when the cursor was set).

    Without ``after``, Stripe's newest-first listing is walked once to find the oldest
    event, which is kept alone (not every event, whose objects may be many megabytes), and
    the events newer than it are then read forward from it.
    """
    try:
        if after is None:
            oldest: JSON | None = None
            async with contextlib.aclosing(api.pages("/v1/events")) as pages:
                async for page in pages:
                    oldest = page[-1]
            if oldest is None:
                return
            yield [oldest]
            after = str(oldest["id"])
        async with contextlib.aclosing(api.pages("/v1/events", {"ending_before": after})) as pages:
            async for page in pages:
                yield page
    except ValidationError as exc:
        if exc.status in {400, 404} and "event" in str(exc).lower():
            raise CursorTooOld(str(exc)) from None
        raise


async def apply_events(
    api: StripeApi, streams: Mapping[str, Mapping[str, Any]], after: str | None
) -> AsyncGenerator[Batch, None]:
    """Batches of re-fetched objects per page of events after ``after``, for ``streams``
    (name -> its cursor). Every stream's cursor moves to the page's last event."""
    slots = asyncio.Semaphore(REFETCH_CONCURRENCY)

    async def fetch(spec: Spec, object_id: str, deleted: bool) -> tuple[Spec, str, JSON | None]:
        if deleted:
            return spec, object_id, None
        async with slots:
            return spec, object_id, await refetch(api, spec, object_id)

    async with contextlib.aclosing(event_pages(api, after)) as pages:
        async for events in pages:
            changed: dict[str, tuple[Spec, str, bool]] = {}
            for event in events:  # oldest first: the last notice of an object decides
                found = changed_object(event)
                if found is not None and found[0].stream in streams:
                    changed[found[1]] = found
            fetched = await asyncio.gather(*(fetch(*found) for found in changed.values()))
            last = {"event": events[-1]["id"], "event_created": int(events[-1]["created"])}
            for stream, cursor in streams.items():
                live = [r for spec, _, r in fetched if spec.stream == stream and r is not None]
                gone = [i for spec, i, r in fetched if spec.stream == stream and r is None]
                new_cursor = {**last, "full_at": cursor.get("full_at", 0)}
                yield Batch(stream, live, cursor=new_cursor, deleted=gone)


async def newest_event(api: StripeApi) -> dict[str, Any]:
    """``{"event", "event_created"}`` of the newest event now (empty values when none)."""
    page = await api.get("/v1/events", limit=1)
    data = page.get("data") or []
    if not data:
        return {"event": None, "event_created": 0}
    return {"event": data[0]["id"], "event_created": int(data[0]["created"])}


# --------------------------------------------------------------------------- a whole run


@dataclass
class Plan:
    """What one run does per stream."""

    events: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    """Streams read from the Events API, with their cursors."""
    full: list[tuple[str, Mapping[str, Any] | None, bool]] = field(default_factory=list)
    """(stream, the ``full`` cursor content to resume or None, mark as a full re-read)."""


def plan_run(
    streams: Sequence[str],
    cursors: Mapping[str, Any],
    newest: float,
    now: float,
    reconcile_s: float,
) -> Plan:
    """Decide, per stream, between events, a full read and resuming a full read.

    :param newest: the ``created`` time of Stripe's newest event (Stripe's clock: what its
        30-day retention counts from; an account idle for longer is caught when Stripe no
        longer knows the cursor's event).
    :param now: this machine's time, which ``full_at`` was stamped with.
    """
    plan = Plan()
    oldest = newest - EVENT_RETENTION_S + EVENT_SAFETY_S
    for stream in streams:
        cursor = cursors.get(stream)
        if not isinstance(cursor, Mapping):
            plan.full.append((stream, None, False))
        elif isinstance(cursor.get("full"), Mapping):
            plan.full.append((stream, cursor["full"], False))
        elif cursor.get("event") and float(cursor.get("event_created") or 0) < oldest:
            log.warning("cursor is beyond the 30 days of events; reading in full", stream=stream)
            plan.full.append((stream, None, True))
        elif float(cursor.get("full_at") or 0) < now - reconcile_s:
            log.info("reconciling: reading the stream in full", stream=stream)
            plan.full.append((stream, None, True))
        else:
            plan.events[stream] = cursor
    return plan


def oldest_cursor(cursors: Iterable[Mapping[str, Any]]) -> str | None:
    """The event id of the oldest of ``cursors`` (None: from the first event kept)."""
    oldest = min(cursors, key=lambda c: (c.get("event") is not None, c.get("event_created") or 0))
    return None if oldest.get("event") is None else str(oldest["event"])


async def sync_account(
    api: StripeApi,
    streams: Sequence[str],
    cursors: Mapping[str, Any],
    settings: StripeSettings,
) -> AsyncGenerator[Batch, None]:
    """Yield every batch of one run: event changes first, then full reads."""
    head = await newest_event(api)
    now = time.time()
    newest = float(head["event_created"] or now)
    plan = plan_run(streams, cursors, newest, now, settings.reconcile_hours * 3600)
    if plan.events:
        try:
            after = oldest_cursor(plan.events.values())
            async with contextlib.aclosing(apply_events(api, plan.events, after)) as changes:
                async for batch in changes:
                    yield batch
        except CursorTooOld as exc:
            log.warning("Stripe no longer has the cursor's event; reading in full", error=str(exc))
            plan.full += [(stream, None, True) for stream in plan.events]
    for stream, resume, full in plan.full:
        spec = BY_STREAM[stream]
        start = head
        after = None
        if resume:
            start = {"event": resume.get("event"), "event_created": resume.get("event_created")}
            after = str(resume["after"])
        async with contextlib.aclosing(read_stream(api, spec, start, after, full)) as pages:
            async for batch in pages:
                yield batch
