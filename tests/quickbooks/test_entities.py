"""The entities firms use beyond lists and sales: tax rates and agencies, budgets, currencies and
exchange rates, time, credit-card payments, attachments and recurring templates. Each is stored
in Intuit's shape with indexed columns; those Intuit's CDC does not serve are re-read in full
on every incremental run, so their changes and deletions arrive too."""

from __future__ import annotations

from typing import Any

from hub.testing import stored_records, sync_records
from hub.web.keys import HUB
from plugins.quickbooks.sandbox import CompanySpec, start_sandbox
from tests.quickbooks.conftest import (
    REALM,
    SMALL,
    VERIFIER,
    connect,
    live_rows,
    qb_config,
    sandbox_config,
)
from tests.quickbooks.test_sync import CONNECTION, NOT_IN_CDC, cdc_calls, expected, full_reads


async def columns(hub: Any, stream: str, *names: str) -> dict[str, tuple[Any, ...]]:
    """The indexed columns ``names`` of a stream's live records, by record id."""
    table = f"records_quickbooks_{stream}"
    sql = f"SELECT id, {', '.join(names)} FROM [{table}] WHERE deleted_at IS NULL"
    rows = await hub.store.db.read(lambda db: db.execute(sql).fetchall())
    return {row[0]: tuple(row[1:]) for row in rows}


async def test_a_full_sync_stores_the_new_entities_in_intuits_shape(make_hub, sandbox):
    hub = await make_hub(config=qb_config(sandbox))
    await connect(hub, sandbox.state)
    records = await sync_records(hub, "quickbooks")
    assert records == expected(sandbox.state)
    accounts, invoices, bills = records["accounts"], records["invoices"], records["bills"]

    rates = records["exchange_rates"]  # no Id: keyed by currency and date
    assert len(rates) == 12 and all("Id" not in rate for rate in rates.values())
    rate = rates["EUR:2024-06-30"]
    assert (rate["SourceCurrencyCode"], rate["TargetCurrencyCode"]) == ("EUR", "USD")
    assert {r["SourceCurrencyCode"] for r in rates.values()} == {
        c["Code"] for c in records["company_currencies"].values()
    }
    by_rate = await columns(hub, "exchange_rates", "source_currency", "as_of_date", "rate")
    assert by_rate["EUR:2024-06-30"] == ("EUR", "2024-06-30", repr(rate["Rate"]))

    for payment in records["credit_card_payments"].values():  # answered as CreditCardPaymentTxn
        assert accounts[payment["CreditCardAccountRef"]["value"]]["AccountType"] == "Credit Card"
        assert accounts[payment["BankAccountRef"]["value"]]["AccountType"] == "Bank"
    assert len(records["credit_card_payments"]) == 6

    for attachment in records["attachables"].values():  # metadata, never the file or its link
        assert "TempDownloadUri" not in attachment and attachment["FileAccessUri"]
        (link,) = attachment["AttachableRef"]
        target = {"Invoice": invoices, "Bill": bills}[link["EntityRef"]["type"]]
        assert link["EntityRef"]["value"] in target
    attached = await columns(hub, "attachables", "entity_type", "entity_id", "content_type")
    assert attached["1"][0] == "Invoice" and attached["2"][0] == "Bill"

    for time in records["time_activities"].values():
        assert time["EmployeeRef"]["value"] in records["employees"]
        assert time["CustomerRef"]["value"] in records["customers"]
        assert time["ItemRef"]["value"] in records["items"]
    for tax_rate in records["tax_rates"].values():
        assert tax_rate["AgencyRef"]["value"] in records["tax_agencies"]

    templates = records["recurring_transactions"]  # wrapped in their type's key
    assert {next(iter(t)) for t in templates.values()} == {"Invoice", "Bill"}
    recurring = await columns(hub, "recurring_transactions", "txn_type", "name", "interval")
    assert recurring["1"][0] == "Invoice" and recurring["1"][2] == "Monthly"
    assert recurring["1"][1] == templates["1"]["Invoice"]["RecurringInfo"]["Name"]
    budgets = await columns(hub, "budgets", "name", "budget_type", "start_date")
    assert budgets["1"] == ("Operating Budget", "ProfitAndLoss", "2024-01-01")
    assert len(records["budgets"]["1"]["BudgetDetail"]) == 4 * 12  # four accounts, by month


async def test_an_incremental_run_re_reads_what_cdc_does_not_serve_and_tombstones(
    make_hub, sandbox
):
    hub = await make_hub(config=qb_config(sandbox))
    await connect(hub, sandbox.state)
    await sync_records(hub, "quickbooks")
    state = sandbox.state
    state.advance_clock(120)
    state.delete(REALM, "TimeActivity", "3")  # re-read in full: Intuit's CDC refuses these
    state.update(REALM, "TaxRate", "1", {"RateValue": 7.5})
    state.update(REALM, "TaxAgency", "2", {"TaxRegistrationNumber": "SR-1"})
    state.delete(REALM, "RecurringTransaction", "2")  # re-read in full: no Id to page by
    state.update(REALM, "ExchangeRate", "1", {"Rate": 1.2})
    state.update(REALM, "CreditCardPayment", "2", {"Memo": "paid early"})  # through CDC
    state.update(REALM, "Attachable", "1", {"Note": "re-scanned"})
    state.deactivate(REALM, "Budget", "2")
    state.create(REALM, "CompanyCurrency", {"Code": "CHF", "Name": "Swiss Franc"})
    before = len(state.requests)
    result = await hub.engine.run(CONNECTION)
    assert result.state == "succeeded", result.error
    assert (result.created, result.updated, result.deleted) == (1, 6, 2)
    records = await stored_records(hub, "quickbooks", CONNECTION)
    assert records == expected(state)
    assert "3" not in records["time_activities"] and "2" not in records["recurring_transactions"]
    assert records["tax_rates"]["1"]["RateValue"] == 7.5
    assert records["credit_card_payments"]["2"]["Memo"] == "paid early"
    assert records["budgets"]["2"]["Active"] is False
    assert "TempDownloadUri" not in records["attachables"]["1"]
    (entities,) = cdc_calls(state, before)
    assert {"Budget", "CompanyCurrency", "CreditCardPayment", "Attachable"} <= set(
        entities.split(",")
    )
    assert not NOT_IN_CDC & set(entities.split(","))
    assert full_reads(state, before) == NOT_IN_CDC


async def test_a_company_without_multicurrency_syncs_no_currencies(make_hub):
    counts = {**SMALL, "CompanyCurrency": 0, "ExchangeRate": 0}
    config = sandbox_config(companies=(CompanySpec(REALM, name="Home Only", counts=counts),))
    async with await start_sandbox(config) as sandbox:
        hub = await make_hub(config=qb_config(sandbox))
        await connect(hub, sandbox.state)
        records = await sync_records(hub, "quickbooks")
    assert records["company_currencies"] == records["exchange_rates"] == {}
    assert records["invoices"] == live_rows(sandbox.state, "Invoice")


async def test_webhooks_refetch_the_new_entities_as_syncs_store_them(hub_client, sandbox):
    client = await hub_client(config=qb_config(sandbox))
    hub = client.server.app[HUB]
    await connect(hub, sandbox.state)
    assert (await hub.engine.run(CONNECTION)).state == "succeeded"
    state = sandbox.state
    state.advance_clock(30)
    state.update(REALM, "Attachable", "3", {"Note": "signed copy"})
    state.update(REALM, "CreditCardPayment", "1", {"Memo": "autopay"})
    state.update(REALM, "RecurringTransaction", "1", {"PrivateNote": "new rate"})
    delivery = await state.send_webhook(str(client.make_url("/webhooks/quickbooks")), VERIFIER)
    assert delivery.status == 200
    await hub.dispatcher.drain()
    records = await stored_records(hub, "quickbooks", CONNECTION)
    assert records["attachables"]["3"] == live_rows(state, "Attachable")["3"]
    assert records["attachables"]["3"]["Note"] == "signed copy"
    assert "TempDownloadUri" not in records["attachables"]["3"]
    assert records["credit_card_payments"]["1"]["Memo"] == "autopay"
    assert records["recurring_transactions"]["1"]["Invoice"]["PrivateNote"] == "new rate"
