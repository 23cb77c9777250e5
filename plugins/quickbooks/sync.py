"""Turning a QuickBooks company into hub batches: full reads, change data capture, deletions.

Each stream's cursor is one of:

* absent: read the stream in full (first sync, or a full sync);
* ``{"full": {"position", "last_id", "since"}}``: a full read in progress, resumed after the
  last stored row (``since`` is when that read began);
* ``{"since": ISO time}``: read the changes made since then with the CDC endpoint.

A full read pages ``SELECT * FROM <Entity> ORDERBY Id`` (list entities with inactive rows
too) and ends on ``{"since": <server time when the run began>}``, so changes made during the
read are caught by the next CDC. CDC answers at most 1,000 objects over all entities asked,
with no paging, grouped by entity in the order asked, each group by LastUpdatedTime with its
deleted objects after its active ones (see :func:`change_windows`): a cursor only moves to a
time before which every change of its stream is stored, and an entity CDC cannot serve
completely (its active changes alone fill an answer) is read in full instead. Deleted objects
become tombstones. A cursor beyond CDC's
30-day look-back, and the streams CDC does not serve (``Spec.cdc`` false), are re-read in full
within every incremental run (``Batch.full``), so vanished records are tombstoned too.

Entities that cannot be paged by Id (``Spec.by_id`` false: ExchangeRate has none, a
RecurringTransaction wraps its template in the template's type) are read by position, always
in full. Attachable records keep the attachment's metadata, never its file or the temporary
download link Intuit signs on each read (``Spec.transient``).

The customers stream declares the fields that identify a client (:data:`CUSTOMER_CLIENT`):
the hub matches each stored customer to its clients registry.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import AsyncGenerator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

import structlog

from hub.errors import ValidationError
from hub.model import Batch, ClientFields, Field, Stream

from .client import JSON, QuickBooksClient

if TYPE_CHECKING:
    from .settings import QuickBooksSettings

log = structlog.get_logger("plugins.quickbooks")

CDC_LIMIT = 1000
"""Most objects one CDC answer holds, over all the entities asked."""
CDC_LOOKBACK = timedelta(days=30)
CDC_SAFETY = timedelta(hours=1)
"""A cursor this close to the look-back limit is treated as past it."""

Kind = Literal["info", "list", "txn"]
"""``info``: CompanyInfo; ``list``: an entity with an Active flag (its full reads include the
inactive rows, which default queries leave out); ``txn``: any other entity."""


@dataclass(frozen=True)
class Spec:
    """A stream and the QuickBooks entity it holds.

    :param cdc: Intuit's CDC serves the entity; if not, each incremental run re-reads it.
    :param key: the record's id in the hub (``Id`` unless the entity has none).
    :param by_id: full reads page by Id; if not, by position (always a complete re-read).
    :param template: records wrap the entity in their type's key (RecurringTransaction):
        ``key`` and string columns are paths inside it.
    :param transient: top-level fields dropped before storing (valid for one read only).
    """

    stream: str
    entity: str
    kind: Kind
    columns: Mapping[str, Field]
    cdc: bool = True
    client: ClientFields | None = None
    key: Field = "Id"
    by_id: bool = True
    template: bool = False
    transient: frozenset[str] = frozenset()

    def as_stream(self) -> Stream:
        """The hub's declaration of this stream."""
        columns: dict[str, Field] = {"sync_token": "SyncToken"}
        columns |= {"updated_at": "MetaData.LastUpdatedTime", **self.columns}
        return Stream(
            self.stream,
            key=self._inside(self.key),
            columns={name: self._inside(path) for name, path in columns.items()},
            description=f"QuickBooks {self.entity} records (raw entity JSON)",
            client=self.client,
        )

    def _inside(self, path: Field) -> Field:
        if not self.template or not isinstance(path, str):
            return path
        return lambda record: _dig(template_of(record), path)

    def stored(self, rows: list[JSON]) -> list[JSON]:
        """``rows`` as the hub stores them (without the ``transient`` fields)."""
        if not self.transient:
            return rows
        return [{k: v for k, v in row.items() if k not in self.transient} for row in rows]


def _dig(record: Mapping[str, Any], path: str) -> Any:
    value: Any = record
    for part in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def template_of(record: Mapping[str, Any]) -> Mapping[str, Any]:
    """The transaction a RecurringTransaction record wraps (``{"Invoice": {...}}``)."""
    inner = next(iter(record.values()), None)
    return inner if isinstance(inner, Mapping) else {}


def template_type(record: Mapping[str, Any]) -> str | None:
    """The type of transaction a RecurringTransaction record is a template of."""
    return next(iter(record), None)


def first_attached(field: str) -> Field:
    """A column reading ``field`` of the entity an Attachable's first AttachableRef names."""

    def get(record: JSON) -> Any:
        links = record.get("AttachableRef") or [{}]
        return _dig(links[0], f"EntityRef.{field}") if isinstance(links[0], Mapping) else None

    return get


def exchange_rate_key(rate: JSON) -> str:
    """An exchange rate's id in the hub: its currency and date (``EUR:2025-06-30``)."""
    return f"{rate.get('SourceCurrencyCode')}:{rate.get('AsOfDate')}"


def business_name(customer: JSON) -> Any:
    """A customer's business name: CompanyName, else DisplayName."""
    return customer.get("CompanyName") or customer.get("DisplayName")


def is_top_level(customer: JSON) -> bool:
    """False for a sub-customer (a job, with a ``ParentRef``): it belongs to its parent's
    client."""
    return not customer.get("ParentRef")


CUSTOMER_CLIENT = ClientFields(
    name=business_name,
    email="PrimaryEmailAddr.Address",
    tax_id="PrimaryTaxIdentifier",
    when=is_top_level,
)
"""How a customer identifies a client of the firm."""


def _list(stream: str, entity: str, name: str = "FullyQualifiedName", **more: str) -> Spec:
    return Spec(stream, entity, "list", {"name": name, "active": "Active", **more})


def _party(stream: str, entity: str, client: ClientFields | None = None) -> Spec:
    columns = {"company_name": "CompanyName", "email": "PrimaryEmailAddr.Address"}
    spec = _list(stream, entity, "DisplayName", balance="Balance", **columns)
    return replace(spec, client=client)


def _txn(stream: str, entity: str, **more: str) -> Spec:
    columns = {"txn_date": "TxnDate", "doc_number": "DocNumber", "total_amt": "TotalAmt"}
    return Spec(stream, entity, "txn", {**columns, **more})


CUSTOMER = {"customer_id": "CustomerRef.value"}
VENDOR = {"vendor_id": "VendorRef.value"}
OPEN = {"balance": "Balance", "due_date": "DueDate"}

# cdc=False: Intuit's CDC does not serve the entity ("You can use the CDC operation for all API
# entities except the following: JournalCode, TaxAgency, TimeActivity, TaxCode, TaxRate",
# https://developer.intuit.com/app/developer/qbo/docs/learn/explore-the-quickbooks-online-api/change-data-capture),
# or the plugin cannot apply its answer (said at the spec).
SPECS: tuple[Spec, ...] = (
    Spec(
        "company_info", "CompanyInfo", "info", {"name": "CompanyName", "country": "Country"}, False
    ),
    Spec("preferences", "Preferences", "info", {"report_basis": "ReportPrefs.ReportBasis"}, False),
    _list("accounts", "Account", account_type="AccountType", balance="CurrentBalance"),
    _party("customers", "Customer", CUSTOMER_CLIENT),
    _party("vendors", "Vendor"),
    _list("items", "Item", type="Type", unit_price="UnitPrice"),
    _list("employees", "Employee", "DisplayName", email="PrimaryEmailAddr.Address"),
    _list("classes", "Class"),
    _list("departments", "Department"),
    Spec("tax_codes", "TaxCode", "list", {"name": "Name", "active": "Active"}, cdc=False),
    _list("terms", "Term", "Name"),
    _list("payment_methods", "PaymentMethod", "Name"),
    replace(
        _list("tax_rates", "TaxRate", "Name", rate="RateValue", agency_id="AgencyRef.value"),
        cdc=False,
    ),
    Spec(
        "tax_agencies",
        "TaxAgency",
        "txn",
        {
            "name": "DisplayName",
            "tracked_on_sales": "TaxTrackedOnSales",
            "tracked_on_purchases": "TaxTrackedOnPurchases",
        },
        cdc=False,
    ),
    _list(
        "budgets",
        "Budget",
        "Name",
        start_date="StartDate",
        end_date="EndDate",
        budget_type="BudgetType",
        entry_type="BudgetEntryType",
    ),
    _list("company_currencies", "CompanyCurrency", "Name", code="Code"),
    Spec(
        "exchange_rates",
        "ExchangeRate",
        "txn",
        {
            "source_currency": "SourceCurrencyCode",
            "target_currency": "TargetCurrencyCode",
            "rate": "Rate",
            "as_of_date": "AsOfDate",
        },
        # Re-read in full: a rate has no Id, so neither an Id page nor a CDC deletion can
        # name it.
        cdc=False,
        key=exchange_rate_key,
        by_id=False,
    ),
    _txn("invoices", "Invoice", **CUSTOMER, **OPEN),
    _txn("payments", "Payment", **CUSTOMER),
    _txn("sales_receipts", "SalesReceipt", **CUSTOMER),
    _txn("credit_memos", "CreditMemo", **CUSTOMER, balance="Balance"),
    _txn("refund_receipts", "RefundReceipt", **CUSTOMER),
    _txn("estimates", "Estimate", **CUSTOMER, status="TxnStatus"),
    _txn("bills", "Bill", **VENDOR, **OPEN),
    _txn("bill_payments", "BillPayment", **VENDOR),
    _txn("purchases", "Purchase", entity_id="EntityRef.value", account_id="AccountRef.value"),
    _txn("purchase_orders", "PurchaseOrder", **VENDOR, status="POStatus"),
    _txn("vendor_credits", "VendorCredit", **VENDOR, balance="Balance"),
    _txn("deposits", "Deposit", account_id="DepositToAccountRef.value"),
    Spec(
        "transfers",
        "Transfer",
        "txn",
        {
            "txn_date": "TxnDate",
            "total_amt": "Amount",
            "from_account_id": "FromAccountRef.value",
            "to_account_id": "ToAccountRef.value",
        },
    ),
    _txn("journal_entries", "JournalEntry"),
    _txn(
        "credit_card_payments",
        "CreditCardPayment",
        total_amt="Amount",
        vendor_id="VendorRef.value",
        bank_account_id="BankAccountRef.value",
        card_account_id="CreditCardAccountRef.value",
    ),
    Spec(
        "time_activities",
        "TimeActivity",
        "txn",
        {
            "txn_date": "TxnDate",
            "name_of": "NameOf",
            "employee_id": "EmployeeRef.value",
            "vendor_id": "VendorRef.value",
            "customer_id": "CustomerRef.value",
            "item_id": "ItemRef.value",
            "billable_status": "BillableStatus",
            "hours": "Hours",
            "minutes": "Minutes",
            "hourly_rate": "HourlyRate",
        },
        cdc=False,
    ),
    Spec(
        "attachables",
        "Attachable",
        "txn",
        {
            "file_name": "FileName",
            "content_type": "ContentType",
            "size": "Size",
            "entity_type": first_attached("type"),
            "entity_id": first_attached("value"),
        },
        transient=frozenset({"TempDownloadUri", "ThumbnailTempDownloadUri"}),
    ),
    Spec(
        "recurring_transactions",
        "RecurringTransaction",
        "txn",
        {
            "txn_type": template_type,
            "name": "RecurringInfo.Name",
            "active": "RecurringInfo.Active",
            "interval": "RecurringInfo.ScheduleInfo.IntervalType",
            "next_date": "RecurringInfo.ScheduleInfo.NextDate",
            "total_amt": "TotalAmt",
            "customer_id": "CustomerRef.value",
            "vendor_id": "VendorRef.value",
        },
        # Re-read in full: Intuit documents no CDC answer (nor tombstone) for the wrapped
        # templates, and a company has few of them.
        cdc=False,
        by_id=False,
        template=True,
    ),
)
STREAMS: tuple[Stream, ...] = tuple(spec.as_stream() for spec in SPECS)
BY_STREAM: dict[str, Spec] = {spec.stream: spec for spec in SPECS}
BY_ENTITY: dict[str, Spec] = {spec.entity: spec for spec in SPECS}
BY_ENTITY_LOWER: dict[str, Spec] = {spec.entity.lower(): spec for spec in SPECS}


def _stamp(row: Mapping[str, Any]) -> int:
    """A record's ``MetaData.LastUpdatedTime`` as epoch seconds (0 if it has none)."""
    updated = str((row.get("MetaData") or {}).get("LastUpdatedTime", ""))
    try:
        return int(datetime.fromisoformat(updated.replace("Z", "+00:00")).timestamp())
    except ValueError:
        return 0


def _at(epoch: int, like: datetime) -> datetime:
    return datetime.fromtimestamp(epoch, like.tzinfo)


def split_changes(rows: Iterable[JSON]) -> tuple[list[JSON], list[str]]:
    """CDC rows as (records to upsert, ids to tombstone)."""
    live: list[JSON] = []
    gone: list[str] = []
    for row in rows:
        if row.get("status") == "Deleted":
            gone.append(str(row["Id"]))
        else:
            live.append(row)
    return live, gone


# --------------------------------------------------------------------------- full reads


async def read_stream(
    client: QuickBooksClient, spec: Spec, since: str, resume: Mapping[str, Any] | None, full: bool
) -> AsyncGenerator[Batch, None]:
    """Yield a batch per page of one entity, then the batch switching the stream to CDC.

    :param since: where CDC takes over afterwards (when this read began).
    :param resume: a ``{"full": …}`` cursor's content, to continue an interrupted read.
    :param full: mark the batches as a full re-read begun in an incremental run.
    """
    if not spec.by_id:
        async for batch in _read_by_position(client, spec):
            yield batch
        yield Batch(spec.stream, [], cursor={"since": since}, full=True)
        return
    position, last_id = 1, None
    if resume:
        position, last_id, since = int(resume["position"]), int(resume["last_id"]), resume["since"]
    pages = client.pages(spec.entity, spec.kind == "list", position, last_id)
    async for page in pages:
        cursor = {"full": {"position": page.position, "last_id": page.last_id, "since": since}}
        yield Batch(spec.stream, spec.stored(page.rows), cursor=cursor, full=full)
    yield Batch(spec.stream, [], cursor={"since": since}, full=full)


async def _read_by_position(client: QuickBooksClient, spec: Spec) -> AsyncGenerator[Batch, None]:
    """Every row of an entity that cannot be paged by Id, page after page by position.

    The batches keep no cursor (a read cut short starts again), and are a full re-read, so
    what the read did not meet is tombstoned when the run succeeds.
    """
    position, size = 1, client.page_size
    while True:
        statement = f"SELECT * FROM {spec.entity} STARTPOSITION {position} MAXRESULTS {size}"  # noqa: S608 (fixed entity names)
        rows = await client.query(statement, spec.entity)
        yield Batch(spec.stream, spec.stored(rows), full=True)
        if len(rows) < size:
            return
        position += len(rows)


# --------------------------------------------------------------------------- change data capture


@dataclass
class Window:
    """One CDC answer's changes for a group of entities, and the cursor after them."""

    entities: tuple[str, ...]
    changes: dict[str, list[JSON]]
    cursor: datetime


async def change_windows(
    client: QuickBooksClient,
    entities: Sequence[str],
    since: datetime,
    overlap: timedelta,
    stuck: list[str],
) -> AsyncGenerator[Window, None]:
    """Every change to ``entities`` since ``since``, as CDC windows each complete for its
    entities up to its cursor.

    Intuit fills an answer entity by entity in the order asked, each by LastUpdatedTime with
    deleted objects after active ones, and stops at 1,000 objects. So an answer under the cap
    is complete; in a capped one every entity before the last one answered is complete, and
    the rest are asked again. An entity that fills an answer alone is complete up to its
    newest deleted object, if the answer reached its deleted objects; if not, CDC cannot tell
    which of its objects were deleted, and the entity is appended to ``stuck`` for a full read
    (as is every entity when CDC refuses ``since`` as beyond its look-back).
    """
    groups: deque[tuple[tuple[str, ...], datetime]] = deque([(tuple(entities), since)])
    while groups:
        group, start = groups.popleft()
        seen: set[tuple[str, int]] = set()
        while True:
            try:
                found, answered = await client.cdc(group, start)
            except ValidationError as exc:
                if "older than" not in str(exc):
                    raise
                log.warning("CDC refused the cursor as too old", entities=group, since=start)
                stuck.extend(group)
                break
            changes = {
                entity: [r for r in found.get(entity, []) if (r["Id"], _stamp(r)) not in seen]
                for entity in group
            }
            settled = max(start, answered - overlap).replace(microsecond=0)
            if sum(len(found.get(entity, [])) for entity in group) < CDC_LIMIT:
                yield Window(group, changes, settled)
                break
            last = max(i for i, entity in enumerate(group) if found.get(entity))
            if last > 0:  # the cap cut group[last]: those before it are complete
                yield Window(group[:last], changes, settled)
                groups.appendleft((group[last:], start))
                break
            if len(group) > 1:  # group[0] filled the answer alone
                groups.appendleft((group[1:], start))
                group = group[:1]
            resume = _deletions_reached(found[group[0]], start)
            if resume is None:
                log.warning(
                    "over 1,000 changes CDC cannot complete; reading in full", entity=group[0]
                )
                stuck.append(group[0])
                break
            yield Window(group, changes, _at(resume, answered))
            seen = {(r["Id"], _stamp(r)) for r in found[group[0]] if _stamp(r) >= resume}
            start = _at(resume, answered)


def _deletions_reached(rows: Sequence[JSON], start: datetime) -> int | None:
    """Where a capped one-entity CDC answer stops being complete (epoch seconds), or None.

    Deleted objects come after every active one, each kind by LastUpdatedTime: when the answer
    holds deleted objects, it holds every change before its newest deleted object's second
    (more may share that second). None when it holds none, or no progress past ``start``.
    """
    reached = max((_stamp(r) for r in rows if r.get("status") == "Deleted"), default=None)
    if reached is None or reached <= int(start.timestamp()):
        return None
    return reached


async def cdc_batches(
    client: QuickBooksClient,
    cursors: Mapping[str, datetime],
    overlap: timedelta,
    stuck: list[str],
) -> AsyncGenerator[Batch, None]:
    """Batches of CDC changes for streams with a ``since`` cursor, from the oldest cursor;
    each batch's cursor is a time before which every change to its stream is stored."""
    entities = [BY_STREAM[stream].entity for stream in cursors]
    async for window in change_windows(client, entities, min(cursors.values()), overlap, stuck):
        cursor = {"since": window.cursor.isoformat()}
        for entity in window.entities:
            live, gone = split_changes(window.changes.get(entity, []))
            spec = BY_ENTITY[entity]
            yield Batch(spec.stream, spec.stored(live), cursor=cursor, deleted=gone)


# --------------------------------------------------------------------------- a whole run


@dataclass
class Plan:
    """What one run does per stream."""

    cdc: dict[str, datetime] = field(default_factory=dict)
    full: list[tuple[str, Mapping[str, Any] | None, bool]] = field(default_factory=list)
    """(stream, resume cursor content or None, mark as a full re-read)."""


def plan_run(streams: Sequence[str], cursors: Mapping[str, Any], now: datetime) -> Plan:
    """Decide, per stream, between CDC, a full read and resuming a full read."""
    plan = Plan()
    oldest = now - CDC_LOOKBACK + CDC_SAFETY
    for stream in streams:
        spec = BY_STREAM[stream]
        cursor = cursors.get(stream)
        if spec.kind == "info":
            continue
        if not isinstance(cursor, Mapping):
            plan.full.append((stream, None, not spec.cdc))
        elif isinstance(cursor.get("full"), Mapping):
            plan.full.append((stream, cursor["full"], False))
        elif not spec.cdc:
            plan.full.append((stream, None, True))
        else:
            since = datetime.fromisoformat(str(cursor["since"]))
            if since < oldest:
                log.warning(
                    "cursor is beyond CDC's 30-day look-back; reading the stream in full",
                    stream=stream,
                    since=cursor["since"],
                )
                plan.full.append((stream, None, True))
            else:
                plan.cdc[stream] = since
    return plan


async def sync_company(
    client: QuickBooksClient,
    streams: Sequence[str],
    cursors: Mapping[str, Any],
    settings: QuickBooksSettings,
) -> AsyncGenerator[Batch, None]:
    """Yield every batch of one run: CompanyInfo, CDC changes, then full reads."""
    info, now = await client.company_info()
    overlap = timedelta(seconds=settings.cdc_overlap_seconds)
    began = (now - overlap).replace(microsecond=0).isoformat()
    if "company_info" in streams:
        yield Batch("company_info", [info], cursor={"read_at": now.isoformat()}, full=True)
    plan = plan_run(streams, cursors, now)
    stuck: list[str] = []
    if plan.cdc:
        async with contextlib.aclosing(cdc_batches(client, plan.cdc, overlap, stuck)) as changes:
            async for batch in changes:
                yield batch
    plan.full += [(BY_ENTITY[entity].stream, None, True) for entity in stuck]
    for stream, resume, full in plan.full:
        spec = BY_STREAM[stream]
        async with contextlib.aclosing(read_stream(client, spec, began, resume, full)) as pages:
            async for batch in pages:
                yield batch
