"""Financial reports: synced per period and basis, flattened exactly, agreeing with the synced
transactions; throttled and empty reports; the key figures computed from them."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from datetime import date
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs

import aiohttp
import orjson
import pytest

from hub.errors import ConfigError
from hub.store import Store
from hub.testing import hub_of, most_in_window, stored_records, wait_for_run
from plugins.quickbooks.financials import ratio
from plugins.quickbooks.oauth import credentials_from
from plugins.quickbooks.reports import (
    ReportPacer,
    comparison_month,
    flatten,
    plan_periods,
)
from plugins.quickbooks.sandbox import RunningSandbox, WebhookEvent, start_sandbox
from plugins.quickbooks.settings import REPORT_NAMES
from tests.daemon import Daemon, query
from tests.quickbooks.conftest import (
    ENTITY_STREAMS,
    REALM,
    VERIFIER,
    connect,
    qb_config,
    sandbox_config,
)

CONNECTION = f"quickbooks:{REALM}"
MAY = ("2025-05-01", "2025-05-31")
EVERYTHING = [*ENTITY_STREAMS, "preferences", "reports"]


def reports_config(sandbox: Any, **extra: Any) -> dict[str, Any]:
    """Entities, Preferences and reports; the reports of the last three months by default."""
    return qb_config(sandbox, **{"streams": EVERYTHING, "report_periods": ["months:3"], **extra})


async def reports_hub(make_hub: Any, sandbox: Any, **extra: Any) -> Any:
    hub = await make_hub(config=reports_config(sandbox, **extra))
    await connect(hub, sandbox.state)
    result = await hub.engine.run(CONNECTION)
    assert result.state == "succeeded", result.error
    return hub


async def stored(hub: Any, table: str, **where: str) -> list[dict[str, Any]]:
    condition = " AND ".join(f"{column} = ?" for column in where)
    return await hub.tables("plugins.quickbooks").query(
        table, condition, list(where.values()), order_by="rowid"
    )


async def report_rows(hub: Any, report: str, period: tuple[str, str], basis: str = "accrual"):
    start, end = period
    return await stored(
        hub, "report_rows", report=report, start_date=start, end_date=end, basis=basis
    )


def totals(rows: list[dict[str, Any]], column: str = "Total") -> dict[str, Decimal]:
    """Each section's total by its innermost group name."""
    return {
        row["section"].rsplit("/", 1)[-1]: Decimal(row["amount"])
        for row in rows
        if row["kind"] == "summary" and row["column_title"] == column
    }


def in_period(txn: dict[str, Any], period: tuple[str, str]) -> bool:
    return period[0] <= txn["TxnDate"] <= period[1]


def line_sum(records: dict[str, dict[str, Any]], detail: str, period: tuple[str, str]) -> Decimal:
    """The sum of the ``detail`` lines of the records dated in ``period``, exactly."""
    return sum(
        (
            Decimal(str(line["Amount"]))
            for txn in records.values()
            if in_period(txn, period)
            for line in txn["Line"]
            if line.get("DetailType") == detail
        ),
        Decimal(0),
    )


def report_requests(state: Any, name: str) -> list[Any]:
    return [r for r in state.requests if r.path.endswith(f"/reports/{name}")]


# --------------------------------------------------------------------------- agreement


async def test_profit_and_loss_income_equals_the_synced_sales_lines(make_hub, sandbox):
    hub = await reports_hub(make_hub, sandbox)
    records = await stored_records(hub, "quickbooks", CONNECTION)
    income = (
        line_sum(records["invoices"], "SalesItemLineDetail", MAY)
        + line_sum(records["sales_receipts"], "SalesItemLineDetail", MAY)
        + line_sum(records["deposits"], "DepositLineDetail", MAY)
        - line_sum(records["credit_memos"], "SalesItemLineDetail", MAY)
        - line_sum(records["refund_receipts"], "SalesItemLineDetail", MAY)
    )
    found = totals(await report_rows(hub, "ProfitAndLoss", MAY))
    assert income > 0 and found["Income"] == income
    assert found["NetIncome"] == found["GrossProfit"] - found["Expenses"]
    expenses = sum(
        (
            line_sum(records[stream], "AccountBasedExpenseLineDetail", MAY)
            for stream in ("bills", "purchases")
        ),
        Decimal(0),
    ) - line_sum(records["vendor_credits"], "AccountBasedExpenseLineDetail", MAY)
    journal = sum(
        (
            Decimal(str(txn["TotalAmt"]))
            for txn in records["journal_entries"].values()
            if in_period(txn, MAY)
        ),
        Decimal(0),
    )
    assert found["Expenses"] == expenses + journal  # journal entries debit an expense account


async def test_balance_sheet_balances_and_the_trial_balance_debits_equal_credits(make_hub, sandbox):
    hub = await reports_hub(make_hub, sandbox)
    sheet = totals(await report_rows(hub, "BalanceSheet", MAY))
    assert sheet["TotalAssets"] == sheet["Liabilities"] + sheet["Equity"]
    assert sheet["TotalAssets"] == sheet["TotalLiabilitiesAndEquity"] != 0
    trial = await report_rows(hub, "TrialBalance", MAY)
    grand = [row for row in trial if row["section"] == "GrandTotal"]
    assert [row["column_title"] for row in grand] == ["Debit", "Credit"]
    assert grand[0]["amount"] == grand[1]["amount"]
    data = [row for row in trial if row["kind"] == "data"]
    for side in grand:
        column = [
            Decimal(row["amount"]) for row in data if row["column_title"] == side["column_title"]
        ]
        assert sum(column, Decimal(0)) == Decimal(side["amount"])
    flow = totals(await report_rows(hub, "CashFlow", MAY))
    assert flow["EndingCash"] == sheet["BankAccounts"]  # cash is the bank accounts
    assert flow["EndingCash"] - flow["BeginningCash"] == flow["CashIncrease"]


async def test_general_ledger_rows_carry_their_account_and_agree_with_the_p_and_l(
    make_hub, sandbox
):
    hub = await reports_hub(make_hub, sandbox)
    ledger = await report_rows(hub, "GeneralLedger", MAY)
    services = [r for r in ledger if r["account"] == "Services" and r["column_title"] == "Amount"]
    total = [r for r in services if r["kind"] == "summary"]
    lines = [r for r in services if r["kind"] == "data"]
    assert total and lines and all(r["account_id"] == "9" for r in services)
    assert sum((Decimal(r["amount"]) for r in lines), Decimal(0)) == Decimal(total[0]["amount"])
    assert (
        Decimal(total[0]["amount"])
        == totals(await report_rows(hub, "ProfitAndLoss", MAY))["Income"]
    )
    details = orjson.loads(lines[0]["details"])
    assert details["Date"].startswith("2025-05-") and details["Transaction Type"]


async def test_aged_receivables_total_the_open_invoices(make_hub, sandbox):
    hub = await reports_hub(make_hub, sandbox)
    records = await stored_records(hub, "quickbooks", CONNECTION)
    open_balance = sum(
        (
            Decimal(str(invoice["Balance"]))
            for invoice in records["invoices"].values()
            if invoice["TxnDate"] <= MAY[1]
        ),
        Decimal(0),
    )
    aged = totals(await report_rows(hub, "AgedReceivables", MAY), column="Total")
    assert aged["GrandTotal"] == open_balance > 0


# --------------------------------------------------------------------------- what is read


async def test_every_report_of_every_period_is_stored_with_its_raw_json(make_hub, sandbox):
    hub = await reports_hub(make_hub, sandbox)
    reports = await stored(hub, "reports")
    months = [("2025-03-01", "2025-03-31"), ("2025-04-01", "2025-04-30"), MAY]
    year_ago = ("2024-05-01", "2024-05-31")  # the base of year-over-year growth
    assert {(r["report"], r["start_date"], r["end_date"], r["basis"]) for r in reports} == {
        *((name, *period, "accrual") for name in REPORT_NAMES for period in months),
        ("ProfitAndLoss", *year_ago, "accrual"),
    }
    pnl = next(r for r in reports if r["report"] == "ProfitAndLoss" and r["start_date"] == MAY[0])
    raw = orjson.loads(pnl["raw"])
    assert raw["Header"]["StartPeriod"] == MAY[0] and raw["Header"]["ReportBasis"] == "Accrual"
    assert (pnl["no_data"], pnl["currency"], pnl["period"]) == (0, "USD", "..".join(MAY))
    assert pnl["line_count"] == len(await report_rows(hub, "ProfitAndLoss", MAY)) > 0
    summaries = (await stored_records(hub, "quickbooks", CONNECTION))["reports"]
    assert len(summaries) == len(reports)
    assert summaries[f"ProfitAndLoss|{MAY[0]}|{MAY[1]}|accrual"]["rows"] == pnl["line_count"]
    # Intuit's parameter names: dates and accounting_method; report_date for aging reports
    asked = {
        name: parse_qs(report_requests(sandbox.state, name)[-1].query)
        for name in ("ProfitAndLoss", "CashFlow", "AgedPayables")
    }
    assert asked["ProfitAndLoss"] == {  # the year-ago month is read last
        "start_date": ["2024-05-01"],
        "end_date": ["2024-05-31"],
        "accounting_method": ["Accrual"],
        "minorversion": ["75"],
    }
    assert set(asked["CashFlow"]) == {"start_date", "end_date", "minorversion"}
    assert asked["AgedPayables"] == {
        "report_date": [MAY[1]],
        "aging_method": ["Report_Date"],
        "minorversion": ["75"],
    }


async def test_the_basis_comes_from_preferences_unless_configured(make_hub, sandbox):
    sandbox.state.reports.set_report_basis(REALM, "cash")
    hub = await reports_hub(make_hub, sandbox, reports=["ProfitAndLoss"])
    assert {r["basis"] for r in await stored(hub, "reports")} == {"cash"}
    preferences = (await stored_records(hub, "quickbooks", CONNECTION))["preferences"]
    assert preferences["1"]["ReportPrefs"]["ReportBasis"] == "Cash"
    records = await stored_records(hub, "quickbooks", CONNECTION)
    received = sum(
        (
            Decimal(str(txn["TotalAmt"]))
            for stream in ("payments", "sales_receipts", "deposits")
            for txn in records[stream].values()
            if in_period(txn, MAY)
        ),
        Decimal(0),
    ) - sum(
        (
            Decimal(str(t["TotalAmt"]))
            for t in records["refund_receipts"].values()
            if in_period(t, MAY)
        ),
        Decimal(0),
    )
    assert totals(await report_rows(hub, "ProfitAndLoss", MAY, "cash"))["Income"] == received
    configured = await make_hub(
        config=reports_config(sandbox, reports=["ProfitAndLoss"], report_basis="accrual")
    )
    assert (await configured.engine.run(CONNECTION, full=True)).state == "succeeded"
    assert {r["basis"] for r in await stored(configured, "reports")} == {"accrual"}


def test_periods_follow_the_fiscal_year_and_the_settings():
    july = plan_periods(["months:2", "fiscal_ytd", "last_fiscal_year"], date(2025, 6, 30), 7)
    assert [(p.start.isoformat(), p.end.isoformat()) for p in july] == [
        ("2025-04-01", "2025-04-30"),
        ("2025-05-01", "2025-05-31"),
        ("2024-07-01", "2025-06-30"),
        ("2023-07-01", "2024-06-30"),
    ]
    january = plan_periods(
        ["fiscal_ytd", "last_fiscal_year", "2025-01-01..2025-03-31"], date(2025, 1, 15), 1
    )
    assert [p.key for p in january] == [
        "2025-01-01..2025-01-15",
        "2024-01-01..2024-12-31",
        "2025-01-01..2025-03-31",
    ]
    twelve = plan_periods(["months:12"], date(2025, 1, 15), 1)
    assert (twelve[0].key, twelve[-1].key) == ("2024-01-01..2024-01-31", "2024-12-01..2024-12-31")
    base = comparison_month(twelve)
    assert base is not None and base.key == "2023-12-01..2023-12-31"


async def test_a_bad_report_period_is_a_config_error_naming_the_key(make_hub, sandbox):
    for bad in (["weeks:2"], ["months:0"], ["2025-02-30..2025-03-01"], ["2025-03-01..2025-02-01"]):
        with pytest.raises(ConfigError, match=r"integrations\.quickbooks\.report_periods"):
            await make_hub(config=qb_config(sandbox, report_periods=bad))


async def test_the_fiscal_year_start_comes_from_company_info(make_hub, sandbox):
    sandbox.state.update(REALM, "CompanyInfo", "1", {"FiscalYearStartMonth": "April"})
    hub = await reports_hub(
        make_hub, sandbox, reports=["TrialBalance"], report_periods=["fiscal_ytd"]
    )
    (report,) = await stored(hub, "reports")
    assert (report["start_date"], report["end_date"]) == ("2025-04-01", "2025-06-30")


# --------------------------------------------------------------------------- faults


async def test_an_empty_period_answers_intuits_empty_report_and_stores_no_rows(make_hub, sandbox):
    hub = await reports_hub(make_hub, sandbox, report_periods=["2019-01-01..2019-01-31"])
    reports = await stored(hub, "reports")
    ledger = [r for r in reports if r["report"] in ("ProfitAndLoss", "CashFlow", "GeneralLedger")]
    assert {(r["no_data"], r["line_count"]) for r in ledger} == {(1, 0)}
    raw = orjson.loads(ledger[0]["raw"])
    assert {"Name": "NoReportData", "Value": "true"} in raw["Header"]["Option"]
    assert raw["Rows"] == {} and raw["Columns"]["Column"]
    assert await stored(hub, "report_rows") == []
    (figures,) = await hub.key_figures(CONNECTION)  # a whole month, with nothing in it
    assert set(figures.figures.values()) == {None}
    assert (figures.amounts["revenue"], figures.amounts["current_liabilities"]) == (0, 0)
    assert figures.client_id is None  # no client is linked to the company


async def test_a_throttled_report_waits_and_is_retried(make_hub, sandbox):
    state = sandbox.state
    state.fail_next(429, count=2, path=r"/reports/BalanceSheet$")
    hub = await reports_hub(
        make_hub, sandbox, reports=["BalanceSheet"], report_periods=["months:1"]
    )
    statuses = [r.status for r in report_requests(state, "BalanceSheet")]
    assert statuses == [429, 429, 200]
    (report,) = await stored(hub, "reports")
    assert report["no_data"] == 0 and report["line_count"] > 0


async def test_a_report_throttled_past_its_retries_fails_the_run_and_keeps_the_last_reports(
    make_hub, sandbox
):
    hub = await reports_hub(
        make_hub, sandbox, reports=["ProfitAndLoss"], report_periods=["months:1"]
    )
    before = await stored(hub, "reports")
    sandbox.state.fail_next(429, count=50, path=r"/reports/")
    result = await hub.engine.run(CONNECTION, full=True)
    assert result.state == "failed" and "429" in (result.error or "")
    assert await stored(hub, "reports") == before


async def test_report_calls_are_paced_per_company():
    now = [0.0]
    starts: list[float] = []

    async def sleep(seconds: float) -> None:
        now[0] += seconds

    pacer = ReportPacer(clock=lambda: now[0], sleep=sleep)
    for _ in range(25):
        async with pacer.slot("quickbooks:1/reports", per_minute=10):
            starts.append(now[0])
        async with pacer.slot("quickbooks:2/reports", per_minute=10):
            pass  # another company's pace is its own
    assert most_in_window(starts, 60.0) == 10
    assert min(b - a for a, b in itertools.pairwise(starts)) >= 6.0


# --------------------------------------------------------------------------- schedule, demand


async def test_reports_are_read_daily_after_a_full_sync_and_on_demand(hub_client, sandbox):
    client = await hub_client(config=reports_config(sandbox, reports=["ProfitAndLoss"]))
    hub = hub_of(client)
    await connect(hub, sandbox.state)
    state = sandbox.state
    assert (await hub.engine.run(CONNECTION, full=True)).state == "succeeded"
    calls = len(report_requests(state, "ProfitAndLoss"))
    assert calls == 4  # three months and the year-ago month
    state.advance_clock(3600)
    assert (await hub.engine.run(CONNECTION)).state == "succeeded"  # hourly: not due yet
    assert len(report_requests(state, "ProfitAndLoss")) == calls
    state.advance_clock(86400)
    assert (await hub.engine.run(CONNECTION)).state == "succeeded"  # a day later: due
    assert len(report_requests(state, "ProfitAndLoss")) == 2 * calls
    answer = await client.post("/api/quickbooks/reports", params={"connection": REALM})
    assert answer.status == 202
    run = await wait_for_run(client, (await answer.json())["run_id"])
    assert (run["state"], run["mode"]) == ("succeeded", "full")
    assert len(report_requests(state, "ProfitAndLoss")) == 3 * calls
    assert (await client.post("/api/quickbooks/reports")).status == 400
    assert (await client.post("/api/quickbooks/reports", params={"connection": "9"})).status == 404


# --------------------------------------------------------------------------- key figures


def test_ratios_are_exact_half_even_and_none_without_a_denominator():
    assert ratio(Decimal("1"), Decimal("8")) == Decimal("0.1250")
    assert ratio(Decimal("1"), Decimal("20000")) == Decimal("0.0000")  # 0.00005: to even
    assert ratio(Decimal("3"), Decimal("20000")) == Decimal("0.0002")  # 0.00015: to even
    assert ratio(Decimal("5"), Decimal("0")) is None
    assert ratio(None, Decimal("2")) is None


@pytest.fixture
async def older_sandbox() -> AsyncIterator[RunningSandbox]:
    """The small company with 500 days of history (a year before last month has data)."""
    running = await start_sandbox(sandbox_config(history_days=500))
    yield running
    await running.close()


async def test_financials_are_computed_from_the_stored_reports(hub_client, older_sandbox):
    sandbox = older_sandbox
    client = await hub_client(config=reports_config(sandbox, report_periods=["months:2"]))
    hub = hub_of(client)
    await connect(hub, sandbox.state)
    assert (await hub.engine.run(CONNECTION)).state == "succeeded"
    await hub.store.clients.link(1, "quickbooks", CONNECTION, f"realm:{REALM}")
    answer = await client.get(f"/api/connections/{CONNECTION}/financials")
    assert answer.status == 200
    body = await answer.json()
    assert (body["client_id"], body["company"], body["currency"], body["basis"]) == (
        1,
        "Willow Books",
        "USD",
        "accrual",
    )
    assert body["period"] == {"start": MAY[0], "end": MAY[1]}
    pnl = totals(await report_rows(hub, "ProfitAndLoss", MAY))
    april = totals(await report_rows(hub, "ProfitAndLoss", ("2025-04-01", "2025-04-30")))
    year_ago = totals(await report_rows(hub, "ProfitAndLoss", ("2024-05-01", "2024-05-31")))
    sheet = totals(await report_rows(hub, "BalanceSheet", MAY))
    four = Decimal("0.0001")

    def q(value: Decimal) -> str:
        return str(value.quantize(four))

    assert body["figures"] == {
        "current_ratio": q(sheet["CurrentAssets"] / sheet["CurrentLiabilities"]),
        "quick_ratio": q((sheet["BankAccounts"] + sheet["AR"]) / sheet["CurrentLiabilities"]),
        "debt_to_equity": q(sheet["Liabilities"] / sheet["Equity"]),
        "gross_margin": q(pnl["GrossProfit"] / pnl["Income"]),
        "net_margin": q(pnl["NetIncome"] / pnl["Income"]),
        "revenue_growth_mom": q((pnl["Income"] - april["Income"]) / april["Income"]),
        "revenue_growth_yoy": q((pnl["Income"] - year_ago["Income"]) / year_ago["Income"]),
    }
    assert body["amounts"]["revenue"] == str(pnl["Income"])
    assert body["amounts"]["current_liabilities"] == str(sheet["CurrentLiabilities"])
    assert {(s["report"], s["period"]) for s in body["sources"]} == {
        ("ProfitAndLoss", "2025-05-01..2025-05-31"),
        ("BalanceSheet", "2025-05-01..2025-05-31"),
        ("ProfitAndLoss", "2025-04-01..2025-04-30"),
        ("ProfitAndLoss", "2024-05-01..2024-05-31"),
    }


async def test_financials_without_reports_is_404(hub_client, sandbox):
    client = await hub_client(config=qb_config(sandbox))
    await connect(hub_of(client), sandbox.state)
    answer = await client.get(f"/api/connections/{CONNECTION}/financials")
    assert answer.status == 404


# --------------------------------------------------------------------------- flattening


def test_flatten_keeps_exact_amounts_sections_and_accounts():
    report = {
        "Columns": {
            "Column": [
                {"ColTitle": "", "ColType": "Account"},
                {"ColTitle": "Total", "ColType": "Money"},
            ]
        },
        "Rows": {
            "Row": [
                {
                    "Header": {"ColData": [{"value": "Income"}, {"value": ""}]},
                    "Rows": {
                        "Row": [
                            {
                                "ColData": [{"value": "Services", "id": "9"}, {"value": "0.10"}],
                                "type": "Data",
                            },
                            {
                                "ColData": [{"value": "Fees", "id": "10"}, {"value": "0.20"}],
                                "type": "Data",
                            },
                        ]
                    },
                    "Summary": {"ColData": [{"value": "Total Income"}, {"value": "0.30"}]},
                    "type": "Section",
                    "group": "Income",
                }
            ]
        },
    }
    rows = flatten(report)
    assert [
        (r["line"], r["section"], r["kind"], r["label"], r["account"], r["account_id"], r["amount"])
        for r in rows
    ] == [
        (1, "Income", "data", "Services", "Services", "9", "0.10"),
        (2, "Income", "data", "Fees", "Fees", "10", "0.20"),
        (3, "Income", "summary", "Total Income", None, None, "0.30"),
    ]
    assert sum(Decimal(str(r["amount"])) for r in rows[:2]) == Decimal(str(rows[2]["amount"]))


# --------------------------------------------------------------------------- a real daemon


@pytest.mark.slow
async def test_a_daemon_syncs_reports_on_demand_and_serves_the_key_figures(
    tmp_path, reap_daemons, older_sandbox
):
    sandbox = older_sandbox
    config = sandbox.state.config
    store = Store(tmp_path / "hub.db")  # the daemon reads the tokens from its database
    pair = sandbox.state.issue_tokens(REALM)
    tokens = {"access_token": pair.access_token, "refresh_token": pair.refresh_token}
    await store.connections.upsert(
        "quickbooks", REALM, "Willow", credentials_from(tokens, REALM), "oauth"
    )
    store.close()
    toml = f"""[integrations.quickbooks]
client_id = "{config.client_id}"
base_url = "{sandbox.base_url}"
oauth_base_url = "{sandbox.oauth_base_url}"
sync_on_connect = false
reports = ["ProfitAndLoss", "BalanceSheet"]
report_periods = ["months:2"]
reports_per_minute = 6000
retry_base_delay = 0.01
throttle_wait_s = 0.01
"""
    secret = {"HUB_INTEGRATIONS__QUICKBOOKS__CLIENT_SECRET": config.client_secret}
    sandbox.state.fail_next(429, path=r"/reports/BalanceSheet$")  # one throttled report call
    async with aiohttp.ClientSession() as session:
        daemon = Daemon(tmp_path, toml, secret)
        await daemon.ready(session)
        status, body = await daemon.api(session, "GET", f"/api/connections/{CONNECTION}/financials")
        assert status == 404, body  # nothing synced yet
        status, body = await daemon.api(
            session, "POST", f"/api/quickbooks/reports?connection={REALM}"
        )
        assert status == 202, body
        run = await daemon.wait_run(session, body["run_id"])
        assert (run["state"], run["streams"]) == ("succeeded", ["preferences", "reports"]), run
        status, figures = await daemon.api(
            session, "GET", f"/api/connections/{CONNECTION}/financials"
        )
        assert daemon.stop() == 0
    assert status == 200, figures
    assert figures["period"] == {"start": MAY[0], "end": MAY[1]}
    assert figures["figures"]["current_ratio"] is not None
    assert Decimal(figures["figures"]["gross_margin"]) == Decimal("1.0000")  # no COGS
    statuses = [r.status for r in report_requests(sandbox.state, "BalanceSheet")]
    assert statuses[0] == 429 and statuses[1:] == [200, 200]
    rows = query(daemon.db, "SELECT count(*) FROM plugin_quickbooks__report_rows")
    assert rows[0][0] > 0


async def test_a_preferences_webhook_rereads_the_preferences(hub_client, sandbox):
    client = await hub_client(config=reports_config(sandbox, streams=["preferences"]))
    hub = hub_of(client)
    await connect(hub, sandbox.state)
    assert (await hub.engine.run(CONNECTION)).state == "succeeded"
    sandbox.state.reports.set_report_basis(REALM, "cash")
    change = WebhookEvent(REALM, "Preferences", "1", "Update", sandbox.state.now())
    url = str(client.make_url("/webhooks/quickbooks"))
    delivery = await sandbox.state.send_webhook(url, VERIFIER, events=[change])
    assert delivery.status == 200
    await hub.dispatcher.drain()
    preferences = (await stored_records(hub, "quickbooks", CONNECTION))["preferences"]
    assert preferences["1"]["ReportPrefs"]["ReportBasis"] == "Cash"


async def test_a_report_refused_as_invalid_is_skipped_and_the_others_kept(make_hub, sandbox):
    sandbox.state.fail_next(400, path=r"/reports/CashFlow$")
    hub = await reports_hub(
        make_hub, sandbox, reports=["CashFlow", "TrialBalance"], report_periods=["months:1"]
    )
    assert [r["report"] for r in await stored(hub, "reports")] == ["TrialBalance"]
    cursors = await hub.store.runs.cursors(CONNECTION)
    assert "synced_at" in cursors["reports"].cursor  # done: not read again before it is due
