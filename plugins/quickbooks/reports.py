"""Financial reports: which to read, reading them through Intuit's Reports API, flattening them.

A reports sync reads each configured report (:data:`~.settings.REPORT_NAMES`) for each
configured period on one basis — ``report_basis``, else the company's Preferences
(``ReportPrefs.ReportBasis``) — with Intuit's own parameters: ``start_date``/``end_date``
(``accounting_method`` for the reports that take it), ``report_date``/``aging_method`` for the
aging reports, which describe the period's last day. Periods come from ``report_periods``
against the server's date and CompanyInfo's ``FiscalYearStartMonth``; the month a year before
the newest month is added to the ProfitAndLoss periods, so year-over-year growth has its base.

Each report is stored in the plugin's tables (:mod:`.tables`), keyed by (connection, report,
start date, end date, basis): its raw JSON, and its rows flattened — one row per amount, with
the section path of Intuit's group names, the row's label, its account name and id, the
column's title and the amount as exact decimal text. The ``reports`` stream records one small
summary per report, so a reports sync shows in the run's progress and counts like any stream.

Report calls are one at a time per company and spaced so that no 60 seconds hold more than
``reports_per_minute`` of them (Intuit throttles reports on their own budget); each also goes
through the company's limits of the shared client (per second, per minute, in flight) and its
429/3001 handling (wait, then retry).
"""

from __future__ import annotations

import asyncio
import calendar
import contextlib
import itertools
import re
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

import orjson
import structlog
from aiohttp import web

from hub.errors import ServerError, SyncBusyError, ValidationError
from hub.model import Batch, Connection, Stream

from .client import ARRIVAL_MARGIN_S, JSON, QuickBooksClient, reports_limit_key
from .sync import STREAMS, sync_company
from .tables import store_report, store_run

if TYPE_CHECKING:
    from hub.api import HubAPI, Value

    from .settings import QuickBooksSettings

log = structlog.get_logger("plugins.quickbooks")

NAME = "quickbooks"
REPORTS_STREAM = Stream(
    "reports",
    key="Id",
    columns={
        "report": "report",
        "start_date": "start_date",
        "end_date": "end_date",
        "basis": "basis",
        "no_data": "no_data",
    },
    description="One summary per synced QuickBooks report (the report itself is in the "
    "plugin's reports and report_rows tables)",
)
ALL_STREAMS: tuple[Stream, ...] = (*STREAMS, REPORTS_STREAM)
"""Every stream of the integration: the entities' and the reports'."""
REPORT_STREAMS = frozenset({"preferences", "reports"})
"""The streams a reports sync writes."""
AGING = frozenset({"AgedReceivables", "AgedPayables"})
WITH_BASIS = frozenset({"ProfitAndLoss", "BalanceSheet", "TrialBalance", "GeneralLedger"})
"""The reports that take ``accounting_method`` (Intuit's CashFlow and aging reports do not)."""
MONTHS = tuple(calendar.month_name[1:])
"""Month names as Intuit writes them (English)."""
_MONTHS_RE = re.compile(r"^months:(\d{1,2})$")
_RANGE_RE = re.compile(r"^(\d{4}-\d{2}-\d{2})\.\.(\d{4}-\d{2}-\d{2})$")
MAX_MONTHS = 36


# --------------------------------------------------------------------------- periods


@dataclass(frozen=True, order=True)
class Period:
    """The dates a report covers (both included)."""

    start: date
    end: date

    @property
    def key(self) -> str:
        """``YYYY-MM-DD..YYYY-MM-DD``, as stored and shown."""
        return f"{self.start.isoformat()}..{self.end.isoformat()}"

    @property
    def is_month(self) -> bool:
        """Whether it is one whole calendar month."""
        return self.start.day == 1 and self.end == _month_end(self.start)


def _month_end(day: date) -> date:
    following = date(day.year + day.month // 12, day.month % 12 + 1, 1)
    return following - timedelta(days=1)


def month_before(day: date, months: int) -> date:
    """The first day of the month ``months`` before ``day``'s month."""
    index = day.year * 12 + day.month - 1 - months
    return date(index // 12, index % 12 + 1, 1)


def month_period(first: date) -> Period:
    """The calendar month beginning on ``first``."""
    return Period(first, _month_end(first))


def fiscal_year_start(day: date, first_month: int) -> date:
    """The first day of the fiscal year containing ``day``."""
    return date(day.year if day.month >= first_month else day.year - 1, first_month, 1)


def parse_period(text: str) -> Callable[[date, int], list[Period]]:
    """A ``report_periods`` entry as a function of (today, first month of the fiscal year).

    :raise ValueError: not one of the forms the setting documents.
    """
    if text == "fiscal_ytd":
        return lambda today, first: [Period(fiscal_year_start(today, first), today)]
    if text == "last_fiscal_year":

        def last_year(today: date, first: int) -> list[Period]:
            start = fiscal_year_start(today, first)
            begun = date(start.year - 1, start.month, 1)
            return [Period(begun, start - timedelta(days=1))]

        return last_year
    if match := _MONTHS_RE.match(text):
        count = int(match.group(1))
        if not 1 <= count <= MAX_MONTHS:
            raise ValueError(f"months:N takes 1 to {MAX_MONTHS} months, got {count}")
        return lambda today, _: [
            month_period(month_before(today, back)) for back in range(count, 0, -1)
        ]
    if match := _RANGE_RE.match(text):
        try:
            fixed = Period(date.fromisoformat(match.group(1)), date.fromisoformat(match.group(2)))
        except ValueError:
            raise ValueError(f"{text!r} is not a valid date range") from None
        if fixed.start > fixed.end:
            raise ValueError(f"{text!r} ends before it starts")
        return lambda today, first: [fixed]
    raise ValueError(
        f"unknown report period {text[:40]!r}: use months:N, fiscal_ytd, last_fiscal_year "
        "or YYYY-MM-DD..YYYY-MM-DD"
    )


def plan_periods(specs: Sequence[str], today: date, first_month: int) -> list[Period]:
    """The distinct periods of the ``report_periods`` entries, in order."""
    periods = [p for text in specs for p in parse_period(text)(today, first_month)]
    return list(dict.fromkeys(periods))


def comparison_month(periods: Sequence[Period]) -> Period | None:
    """The month a year before the newest whole month (the base of year-over-year growth)."""
    months = [p for p in periods if p.is_month]
    return month_period(month_before(max(months).start, 12)) if months else None


def fiscal_month(company_info: Mapping[str, Any]) -> int:
    """CompanyInfo's ``FiscalYearStartMonth`` as 1-12 (January when absent or unknown)."""
    name = str(company_info.get("FiscalYearStartMonth") or "January")
    return MONTHS.index(name) + 1 if name in MONTHS else 1


def report_basis(preferences: Mapping[str, Any], configured: str | None) -> str:
    """``accrual`` or ``cash``: the configured basis, else the company's Preferences."""
    if configured is not None:
        return configured
    found = str((preferences.get("ReportPrefs") or {}).get("ReportBasis") or "Accrual")
    return "cash" if found.lower() == "cash" else "accrual"


def report_params(report: str, period: Period, basis: str) -> dict[str, str]:
    """Intuit's query parameters for ``report`` over ``period`` on ``basis``."""
    if report in AGING:
        return {"report_date": period.end.isoformat(), "aging_method": "Report_Date"}
    params = {"start_date": period.start.isoformat(), "end_date": period.end.isoformat()}
    if report in WITH_BASIS:
        params["accounting_method"] = basis.capitalize()
    return params


# --------------------------------------------------------------------------- flattening


def flatten(report: Mapping[str, Any]) -> list[dict[str, Value]]:
    """One row per amount of ``report``: ``line`` (the report row, in order), ``col`` (the
    column's index), ``section`` (the path of group names, ``/``-joined), ``kind`` (``data``
    or ``summary``), ``label`` (the row's first cell), ``account`` and ``account_id`` (a data
    row's account; for a total or a general ledger line, its section's account, if the
    section is one), ``column_title``,
    ``amount`` (exact decimal text) and ``details`` (JSON of the row's other cells, or None).

    :raise ServerError: an amount that is not a decimal number.
    """
    columns = (report.get("Columns") or {}).get("Column") or []
    titles = [str(c.get("ColTitle", "")) for c in columns]
    money = [i for i, c in enumerate(columns) if c.get("ColType") == "Money"]
    first_is_account = bool(columns) and columns[0].get("ColType") != "Date"
    out: list[dict[str, Value]] = []
    lines = itertools.count(1)

    def emit(cells: Sequence[Any], path: tuple[str, ...], kind: str, owner: JSON | None) -> None:
        line = next(lines)
        label = str(cells[0].get("value", "")) if cells else ""
        # a data row names its account first; a total, or a ledger line, belongs to its section's
        account = cells[0] if cells and kind == "data" and first_is_account else owner
        skip = set(money) | ({0} if first_is_account else set())  # the label, the amounts
        details = {
            titles[i]: str(cell.get("value", ""))
            for i, cell in enumerate(cells)
            if i not in skip and i < len(titles) and cell.get("value")
        }
        for i in money:
            value = str(cells[i].get("value", "")) if i < len(cells) else ""
            if not value:
                continue
            try:
                amount = Decimal(value)
            except InvalidOperation:
                raise ServerError(f"a report amount is not a number: {value[:40]!r}") from None
            out.append(
                {
                    "line": line,
                    "col": i,
                    "section": "/".join(path),
                    "kind": kind,
                    "label": label,
                    "account": str(account.get("value", "")) if account else None,
                    "account_id": str(account["id"]) if account and "id" in account else None,
                    "column_title": titles[i],
                    "amount": str(amount),
                    "details": orjson.dumps(details).decode() if details else None,
                }
            )

    def walk(rows: Sequence[Any], path: tuple[str, ...], owner: JSON | None) -> None:
        for row in rows:
            if not isinstance(row, Mapping):
                continue
            if "ColData" in row:
                emit(row["ColData"], path, "data", owner)
                continue
            header = (row.get("Header") or {}).get("ColData") or [{}]
            name = str(row.get("group") or header[0].get("value", ""))
            inner = (*path, name)
            owns = header[0] if "id" in header[0] else owner
            walk((row.get("Rows") or {}).get("Row") or [], inner, owns)
            summary = (row.get("Summary") or {}).get("ColData")
            if summary:
                emit(summary, inner, "summary", owns)

    walk((report.get("Rows") or {}).get("Row") or [], (), None)
    return out


# --------------------------------------------------------------------------- pacing


class ReportPacer:
    """Spaces each company's report calls: one at a time, each starting at least
    ``60 s / reports_per_minute`` (plus Intuit's arrival margin) after the previous one, so no
    60 seconds ever hold more than ``reports_per_minute`` of them.

    One per process (:data:`PACER`), keyed by connection, so consecutive runs keep the pace.
    """

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self._next: dict[str, float] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    @contextlib.asynccontextmanager
    async def slot(self, key: str, per_minute: int) -> AsyncIterator[None]:
        """Hold the company's report slot for one call, once its pace allows it."""
        async with self._locks.setdefault(key, asyncio.Lock()):
            wait = self._next.get(key, 0.0) - self._clock()
            if wait > 0:
                await self._sleep(wait)
            self._next[key] = self._clock() + (60.0 + ARRIVAL_MARGIN_S) / per_minute
            yield


PACER = ReportPacer()


# --------------------------------------------------------------------------- the sync


def _due(cursor: Any, now: datetime, interval: int) -> bool:
    """Whether the reports are due: never read, or read ``interval`` seconds ago or more."""
    if not isinstance(cursor, Mapping) or not isinstance(cursor.get("synced_at"), str):
        return True
    try:
        last = datetime.fromisoformat(cursor["synced_at"])
    except ValueError:
        return True
    return (now - last).total_seconds() >= interval


@dataclass(frozen=True)
class ReportRun:
    """What one reports sync of a company reads, and what it found about the company."""

    company: JSON
    preferences: JSON
    basis: str
    jobs: tuple[tuple[str, Period], ...]


def plan_reports(
    settings: QuickBooksSettings, company: JSON, preferences: JSON, today: date
) -> ReportRun:
    """Every (report, period) of the settings, with the year-over-year base month added for
    the ProfitAndLoss."""
    periods = plan_periods(settings.report_periods, today, fiscal_month(company))
    jobs = [(report, period) for report in dict.fromkeys(settings.reports) for period in periods]
    base = comparison_month(periods)
    if base is not None and "ProfitAndLoss" in settings.reports and base not in periods:
        jobs.append(("ProfitAndLoss", base))
    basis = report_basis(preferences, settings.report_basis)
    return ReportRun(company, preferences, basis, tuple(jobs))


async def fetch_report(
    client: QuickBooksClient, connection_id: str, per_minute: int, report: str, params: JSON
) -> JSON:
    """One report from Intuit, in the company's report pace."""
    async with PACER.slot(reports_limit_key(connection_id), per_minute):
        return await client.get(f"reports/{report}", params)


async def sync_reports(
    hub: HubAPI,
    client: QuickBooksClient,
    connection: Connection,
    streams: Sequence[str],
    cursors: Mapping[str, Any],
    settings: QuickBooksSettings,
) -> AsyncGenerator[Batch, None]:
    """The Preferences, then (when due) every report: stored in the plugin's tables, a
    summary batch per report for the ``reports`` stream, then the stream's cursor. A report
    Intuit refuses as invalid for the company (a ValidationFault) is logged and left out;
    throttling, server and authorization failures fail the run."""
    company, now = await client.company_info()
    preferences = (await client.get("preferences")).get("Preferences") or {}
    if "preferences" in streams:
        yield Batch("preferences", [preferences], cursor={"read_at": now.isoformat()}, full=True)
    if "reports" not in streams or not _due(cursors.get("reports"), now, settings.reports_interval):
        return
    run = plan_reports(settings, company, preferences, now.date())
    tables = hub.tables(__name__)
    fetched_at = now.isoformat()
    kept: list[tuple[str, str, str, str]] = []
    for report, period in run.jobs:
        params = report_params(report, period, run.basis)
        try:
            body = await fetch_report(
                client, connection.id, settings.reports_per_minute, report, params
            )
        except ValidationError as exc:  # refused for good (this company has no such report)
            log.warning("QuickBooks refused a report; skipped", report=report, error=str(exc))
            continue
        rows = flatten(body)
        key = (report, period.start.isoformat(), period.end.isoformat(), run.basis)
        summary = await store_report(tables, connection.id, key, body, rows, fetched_at)
        kept.append(key)
        yield Batch("reports", [summary], full=True)
    await store_run(
        tables, connection.id, run.company, run.preferences, run.basis, kept, fetched_at
    )
    yield Batch("reports", [], cursor={"synced_at": fetched_at}, full=True)
    log.info("reports synced", reports=len(kept), skipped=len(run.jobs) - len(kept))


async def sync_all(
    hub: HubAPI,
    client: QuickBooksClient,
    connection: Connection,
    streams: Sequence[str],
    cursors: Mapping[str, Any],
    settings: QuickBooksSettings,
) -> AsyncGenerator[Batch, None]:
    """A whole run: the entity streams (:func:`~.sync.sync_company`), then the Preferences and
    the reports (a full sync, which has no cursors, always reads them; an incremental one
    when they are due)."""
    entities = [s for s in streams if s not in REPORT_STREAMS]
    wanted = [s for s in streams if s in REPORT_STREAMS]
    if entities:
        async with contextlib.aclosing(
            sync_company(client, entities, cursors, settings)
        ) as batches:
            async for batch in batches:
                yield batch
    if wanted:
        async with contextlib.aclosing(
            sync_reports(hub, client, connection, wanted, cursors, settings)
        ) as batches:
            async for batch in batches:
                yield batch


# --------------------------------------------------------------------------- on demand


def routes(hub: HubAPI) -> list[web.RouteDef]:
    """``POST /api/quickbooks/reports``: sync one company's reports now."""

    async def sync_now(request: web.Request) -> web.Response:
        """Start a reports sync of ``connection`` (id or realm id): 202 with the run id."""
        wanted = request.query.get("connection")
        if not wanted:
            error = "connection is required: a connection id or realm id"
            return web.json_response({"error": error}, status=400)
        found = await hub.find_connections(NAME, wanted)
        if not found:
            error = f"no QuickBooks connection {wanted[:200]!r}"
            return web.json_response({"error": error}, status=404)
        try:
            run_id = await hub.request_sync(found[0], sorted(REPORT_STREAMS), full=True)
        except SyncBusyError as exc:
            return web.json_response({"error": str(exc), "run_id": exc.run_id}, status=409)
        return web.json_response({"run_id": run_id}, status=202)

    return [web.post(f"/api/{NAME}/reports", sync_now)]
