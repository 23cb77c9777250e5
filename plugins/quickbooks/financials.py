"""Key figures of a company from its stored reports (the ``report_rows`` table), exactly.

The income figures come from the ProfitAndLoss of the newest whole month synced, the balance
figures from the BalanceSheet ending that month, both on the basis of the last reports sync.
Amounts are the reports' section totals (``summary`` rows, by Intuit's group names):

* revenue ``Income``, cost of sales ``COGS``, gross profit ``GrossProfit``, net income
  ``NetIncome``;
* cash ``BankAccounts``, receivables ``AR``, current assets ``CurrentAssets``, current
  liabilities ``CurrentLiabilities``, total liabilities ``Liabilities``, equity ``Equity``,
  total assets ``TotalAssets``.

A section the report does not have (no account in it) counts as zero. Figures are fractions
quantized to 4 places (ROUND_HALF_EVEN); a figure whose denominator is zero, or whose report
was not synced, is None. The figures' ``client_id`` is the client linked to the company
(:func:`company_link`). Growth compares the month's revenue with the month before and with
the same month a year before.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import TYPE_CHECKING

from hub.model import KeyFigures

from .reports import NAME, Period, month_before, month_period

if TYPE_CHECKING:
    from hub.api import HubAPI, Row
    from hub.model import Connection

PLACES = Decimal("0.0001")
ZERO = Decimal(0)
INCOME_GROUPS = {
    "revenue": "Income",
    "cost_of_sales": "COGS",
    "gross_profit": "GrossProfit",
    "net_income": "NetIncome",
}
BALANCE_GROUPS = {
    "cash": "BankAccounts",
    "receivables": "AR",
    "current_assets": "CurrentAssets",
    "current_liabilities": "CurrentLiabilities",
    "total_liabilities": "Liabilities",
    "equity": "Equity",
    "total_assets": "TotalAssets",
}


def ratio(numerator: Decimal | None, denominator: Decimal | None) -> Decimal | None:
    """``numerator / denominator`` to 4 places (half-even), None if either is missing or the
    denominator is zero."""
    if numerator is None or denominator is None or denominator == 0:
        return None
    return (numerator / denominator).quantize(PLACES, rounding=ROUND_HALF_EVEN)


def growth(now: Decimal | None, before: Decimal | None) -> Decimal | None:
    """The change from ``before`` to ``now`` as a fraction of ``before``."""
    return ratio(None if now is None or before is None else now - before, before)


def section_totals(rows: Sequence[Mapping[str, object]]) -> dict[str, Decimal]:
    """Each section's total (the first amount of its ``summary`` row), by its group name."""
    totals: dict[str, Decimal] = {}
    for row in rows:
        if row["kind"] == "summary":
            group = str(row["section"]).rsplit("/", 1)[-1]
            totals.setdefault(group, Decimal(str(row["amount"])))
    return totals


def amounts_of(
    totals: Mapping[str, Decimal] | None, groups: Mapping[str, str]
) -> dict[str, Decimal]:
    """The named amounts of a report's section totals (zero for an absent section); none when
    the report was not synced."""
    if totals is None:
        return {}
    return {name: totals.get(group, ZERO) for name, group in groups.items()}


def compute(
    income: Mapping[str, Decimal],
    balance: Mapping[str, Decimal],
    previous_revenue: Decimal | None,
    last_year_revenue: Decimal | None,
) -> dict[str, Decimal | None]:
    """The key figures of one month's income amounts and its closing balance amounts."""
    revenue = income.get("revenue")
    liabilities = balance.get("current_liabilities")
    quick = None
    if balance:
        quick = balance["cash"] + balance["receivables"]
    return {
        "current_ratio": ratio(balance.get("current_assets"), liabilities),
        "quick_ratio": ratio(quick, liabilities),
        "debt_to_equity": ratio(balance.get("total_liabilities"), balance.get("equity")),
        "gross_margin": ratio(income.get("gross_profit"), revenue),
        "net_margin": ratio(income.get("net_income"), revenue),
        "revenue_growth_mom": growth(revenue, previous_revenue),
        "revenue_growth_yoy": growth(revenue, last_year_revenue),
    }


class _Stored:
    """One connection's stored reports on one basis."""

    def __init__(self, hub: HubAPI, connection_id: str, basis: str) -> None:
        self.tables = hub.tables(__name__)
        self.connection_id = connection_id
        self.basis = basis

    async def reports(self, report: str) -> list[Row]:
        return await self.tables.query(
            "reports",
            "connection_id = ? AND report = ? AND basis = ?",
            [self.connection_id, report, self.basis],
            order_by="end_date DESC, start_date DESC",
        )

    async def totals(self, report: str, period: Period) -> dict[str, Decimal] | None:
        """The section totals of a stored report, None if it was not synced."""
        key = [self.connection_id, report, period.start.isoformat(), period.end.isoformat()]
        where = "connection_id = ? AND report = ? AND start_date = ? AND end_date = ? AND basis = ?"
        if await self.tables.get("reports", (*key, self.basis)) is None:
            return None
        rows = await self.tables.query("report_rows", where, [*key, self.basis], order_by="line")
        return section_totals(rows)


def company_link(connection: Connection) -> str:
    """The provider id under which a hub client is linked to the company itself: ``realm:``
    and the realm id (never an entity's Id, which is a number)."""
    return f"realm:{connection.key}"


def _period(row: Mapping[str, object]) -> Period:
    return Period(
        date.fromisoformat(str(row["start_date"])), date.fromisoformat(str(row["end_date"]))
    )


async def key_figures(hub: HubAPI, connection: Connection) -> KeyFigures | None:
    """The connection's key figures from its last reports sync, or None when no
    ProfitAndLoss of a whole month is stored yet."""
    run = await hub.tables(__name__).get("report_runs", connection.id)
    if run is None:
        return None
    basis = str(run["basis"])
    stored = _Stored(hub, connection.id, basis)
    months = [p for p in map(_period, await stored.reports("ProfitAndLoss")) if p.is_month]
    if not months:
        return None
    month = max(months)
    previous = month_period(month_before(month.start, 1))
    last_year = month_period(month_before(month.start, 12))
    income = amounts_of(await stored.totals("ProfitAndLoss", month), INCOME_GROUPS)
    sheets = [p for p in map(_period, await stored.reports("BalanceSheet")) if p.end == month.end]
    sheet = max(sheets) if sheets else None
    balance = amounts_of(
        await stored.totals("BalanceSheet", sheet) if sheet else None, BALANCE_GROUPS
    )
    before = amounts_of(await stored.totals("ProfitAndLoss", previous), INCOME_GROUPS)
    year_ago = amounts_of(await stored.totals("ProfitAndLoss", last_year), INCOME_GROUPS)
    amounts = {**income, **balance}
    if "revenue" in before:
        amounts["revenue_previous_month"] = before["revenue"]
    if "revenue" in year_ago:
        amounts["revenue_previous_year"] = year_ago["revenue"]
    sources = [("ProfitAndLoss", month)]
    sources += [("BalanceSheet", sheet)] if sheet else []
    sources += [
        ("ProfitAndLoss", p) for p, found in ((previous, before), (last_year, year_ago)) if found
    ]
    return KeyFigures(
        integration=NAME,
        connection_id=connection.id,
        client_id=await hub.clients.client_of(NAME, connection.id, company_link(connection)),
        company=str(run["company"]),
        currency=str(run["currency"]),
        basis=basis,
        period_start=month.start,
        period_end=month.end,
        figures=compute(income, balance, before.get("revenue"), year_ago.get("revenue")),
        amounts=amounts,
        computed_at=datetime.now(UTC),
        sources=[{"report": r, "period": p.key, "basis": basis} for r, p in sources],
    )
