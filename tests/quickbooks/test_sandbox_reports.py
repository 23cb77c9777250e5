"""The sandbox's Reports API and Preferences: Intuit's shape (checked against the vendored
``Report.xsd``), totals that hold, the empty report, throttling and bad parameters."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from decimal import Decimal
from typing import Any

import aiohttp
import pytest

from plugins.quickbooks.settings import REPORT_NAMES
from tests.quickbooks.conftest import INTUIT_SPECS, REALM

XS = "{http://www.w3.org/2001/XMLSchema}"


class Schema:
    """Each complexType of Report.xsd (and NameValue of IntuitBaseTypes.xsd): its child
    elements (name -> type, and which repeat) and attribute names; the enumerations."""

    def __init__(self) -> None:
        self.elements: dict[str, dict[str, str]] = {}
        self.repeated: dict[str, set[str]] = {}
        self.attributes: dict[str, set[str]] = {}
        self.enums: dict[str, set[str]] = {}
        for name in ("Report.xsd", "IntuitBaseTypes.xsd"):
            root = ET.parse(INTUIT_SPECS / "xsd" / name).getroot()
            for ctype in root.iter(f"{XS}complexType"):
                if (type_name := ctype.get("name")) is None:
                    continue
                children = [e for e in ctype.iter(f"{XS}element") if e.get("name")]
                self.elements[type_name] = {
                    str(e.get("name")): str(e.get("type")) for e in children
                }
                self.repeated[type_name] = {
                    str(e.get("name")) for e in children if e.get("maxOccurs") == "unbounded"
                }
                self.attributes[type_name] = {
                    str(a.get("name")) for a in ctype.iter(f"{XS}attribute")
                }
            for stype in root.iter(f"{XS}simpleType"):
                values = {str(e.get("value")) for e in stype.iter(f"{XS}enumeration")}
                self.enums[str(stype.get("name"))] = values

    def check(self, value: Any, type_name: str, where: str = "Report") -> int:
        """Fail unless ``value`` uses only the names ``type_name`` allows; the count of
        objects checked."""
        assert isinstance(value, dict), f"{where} is not an object"
        checked = 1
        for key, item in value.items():
            if key in self.attributes[type_name]:
                assert isinstance(item, str), f"{where}.{key} is not a string"
                continue
            assert key in self.elements[type_name], f"{where}.{key}: not an element of {type_name}"
            child = self.elements[type_name][key]
            repeated = key in self.repeated[type_name]
            assert isinstance(item, list) == repeated, f"{where}.{key}: list iff it repeats"
            for one in item if repeated else [item]:
                if child in self.elements:
                    checked += self.check(one, child, f"{where}.{key}")
                elif child in self.enums:
                    assert one in self.enums[child], f"{where}.{key}: {one!r} not in {child}"
                else:
                    assert isinstance(one, str), f"{where}.{key} is not a string"
        if type_name == "Row" and "type" in value:
            assert value["type"] in self.enums["RowTypeEnum"]
        return checked


@pytest.fixture(scope="module")
def schema() -> Schema:
    return Schema()


async def get(sandbox: Any, path: str, **params: str) -> tuple[int, Any]:
    token = sandbox.state.issue_tokens(REALM).access_token
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            f"{sandbox.base_url}/v3/company/{REALM}/{path}", params=params, headers=headers
        ) as answer,
    ):
        return answer.status, await answer.json()


PERIODS = (
    {"start_date": "2025-05-01", "end_date": "2025-05-31"},
    {"start_date": "2024-07-01", "end_date": "2025-06-30", "accounting_method": "Cash"},
    {"start_date": "2019-01-01", "end_date": "2019-01-31"},  # before the company's history
    {"report_date": "2025-05-31"},
    {},
)


@pytest.mark.parametrize("name", REPORT_NAMES)
async def test_every_report_has_intuits_shape(sandbox, schema, name):
    for params in PERIODS:
        status, report = await get(sandbox, f"reports/{name}", **params)
        assert status == 200, report
        assert schema.check(report, "Report") > 3
        header = report["Header"]
        assert header["ReportName"] == name and header["Currency"] == "USD"
        assert {o["Name"] for o in header["Option"]} >= {"NoReportData"}
        assert report["Columns"]["Column"], "columns even when empty"


async def test_a_period_without_transactions_is_intuits_empty_report(sandbox, schema):
    status, report = await get(
        sandbox, "reports/ProfitAndLoss", start_date="2019-01-01", end_date="2019-01-31"
    )
    assert status == 200
    assert {"Name": "NoReportData", "Value": "true"} in report["Header"]["Option"]
    assert report["Rows"] == {}
    status, full = await get(
        sandbox, "reports/ProfitAndLoss", start_date="2025-05-01", end_date="2025-05-31"
    )
    assert {"Name": "NoReportData", "Value": "false"} in full["Header"]["Option"]
    groups = [row.get("group") for row in full["Rows"]["Row"]]
    assert groups == ["Income", "GrossProfit", "Expenses", "NetOperatingIncome", "NetIncome"]


def summaries(rows: list[dict[str, Any]]) -> dict[str, Decimal]:
    """Every section's total by group, however deep."""
    found: dict[str, Decimal] = {}
    for row in rows:
        if row.get("type") == "Section":
            found |= summaries(row.get("Rows", {}).get("Row", []))
            values = row["Summary"]["ColData"]
            if row.get("group") and len(values) == 2:
                found[row["group"]] = Decimal(values[1]["value"])
    return found


async def test_the_balance_sheet_balances_on_both_bases(sandbox):
    for basis in ("Accrual", "Cash"):
        _, report = await get(
            sandbox,
            "reports/BalanceSheet",
            start_date="2025-01-01",
            end_date="2025-04-30",
            accounting_method=basis,
        )
        assert report["Header"]["ReportBasis"] == basis
        totals = summaries(report["Rows"]["Row"])
        assert totals["TotalAssets"] == totals["Liabilities"] + totals["Equity"] != 0


async def test_a_mutation_changes_the_next_report(sandbox):
    params = {"start_date": "2025-06-01", "end_date": "2025-06-30"}
    _, before = await get(sandbox, "reports/ProfitAndLoss", **params)
    line = {"Amount": 100.25, "DetailType": "DepositLineDetail"}
    line["DepositLineDetail"] = {"AccountRef": {"value": "9"}}
    sandbox.state.create(
        REALM,
        "Deposit",
        {"TxnDate": "2025-06-15", "DepositToAccountRef": {"value": "1"}, "Line": [line]},
    )
    _, after = await get(sandbox, "reports/ProfitAndLoss", **params)
    change = summaries(after["Rows"]["Row"])["Income"] - summaries(before["Rows"]["Row"])["Income"]
    assert change == Decimal("100.25")


async def test_report_paths_can_be_throttled_and_bad_parameters_are_refused(sandbox):
    sandbox.state.fail_next(429, path=r"/reports/")
    status, body = await get(sandbox, "reports/TrialBalance")
    assert status == 429 and body["Fault"]["Error"][0]["code"] == "3001"
    assert body["Fault"]["type"] == "SERVICE"
    assert (await get(sandbox, "reports/TrialBalance"))[0] == 200
    status, body = await get(sandbox, "reports/ProfitAndLoss", start_date="2025-13-01")
    assert status == 400 and body["Fault"]["type"] == "ValidationFault"
    status, body = await get(sandbox, "reports/ProfitAndLoss", accounting_method="Both")
    assert status == 400 and "accounting_method" in body["Fault"]["Error"][0]["Detail"]
    assert (await get(sandbox, "reports/NoSuchReport"))[0] == 400
    status, body = await get(
        sandbox, "reports/ProfitAndLoss", start_date="2025-05-02", end_date="2025-05-01"
    )
    assert status == 400


async def test_preferences_answer_the_report_basis_and_the_fiscal_year(sandbox):
    status, body = await get(sandbox, "preferences")
    assert status == 200 and body["Preferences"]["ReportPrefs"]["ReportBasis"] == "Accrual"
    sandbox.state.reports.set_report_basis(REALM, "cash")
    sandbox.state.update(REALM, "CompanyInfo", "1", {"FiscalYearStartMonth": "October"})
    _, body = await get(sandbox, "preferences")
    preferences = body["Preferences"]
    assert preferences["ReportPrefs"]["ReportBasis"] == "Cash"
    assert preferences["AccountingInfoPrefs"]["FirstMonthOfFiscalYear"] == "October"
    assert preferences["CurrencyPrefs"]["HomeCurrency"] == {"value": "USD"}
    _, report = await get(sandbox, "reports/ProfitAndLoss")
    header = report["Header"]
    assert (header["ReportBasis"], header["StartPeriod"]) == ("Cash", "2024-10-01")
