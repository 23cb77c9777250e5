"""Document analysis through the hub against the sandbox: structured answers per type,
validated, checked by the hub, stored and announced; every failure is a clean failed result."""

from __future__ import annotations

import pytest

from tests.openai.conftest import RECEIPT, analyse

RECEIPT_ANSWER = {
    "summary": "A cafe receipt.",
    "confidence": 0.9,
    "recommendations": [],
    "merchant": "Corner Cafe",
    "purchase_date": None,
    "currency": "USD",
    "subtotal": None,
    "tax": "0.80",
    "total": "10.80",
}
TAX_RETURN = {
    "summary": "A return.",
    "confidence": 0.9,
    "recommendations": [],
    "form": "1040",
    "tax_year": 2025,
    "filer_name": "Ann Smith",
    "filing_status": "single",
    "total_income": "85000.00",
    "adjusted_gross_income": "80000.00",
    "taxable_income": "65400.00",
    "total_tax": "9800.00",
    "refund": "200.00",
    "amount_owed": None,
}
INVOICE = {
    "summary": "An invoice for bookkeeping.",
    "confidence": 0.8,
    "recommendations": ["Check the line totals."],
    "invoice_number": "INV-7",
    "vendor": "Ledger Co",
    "customer": "Acme",
    "issue_date": "2026-11-01",
    "due_date": "2026-12-01",
    "currency": "USD",
    "lines": [
        {"description": "Bookkeeping", "quantity": "1", "unit_price": "100.00", "amount": "100.00"},
        {"description": "Payroll", "quantity": "2", "unit_price": "25.00", "amount": "50.00"},
    ],
    "subtotal": "150.00",
    "tax": "15.00",
    "total": "165.00",
}


@pytest.mark.parametrize("api", ["responses", "chat"])
async def test_a_receipt_is_analysed_stored_and_announced(make_client, api):
    client = await make_client(api=api)
    document_id = client.documents.add(RECEIPT)
    analysis = await analyse(client, document_id, "receipt")
    assert analysis["state"] == "analyzed", analysis
    assert analysis["type"] == "receipt" and analysis["model"] == "gpt-4o-mini"
    assert analysis["data"]["total"] == "10.80" and analysis["data"]["tax"] == "0.80"
    assert analysis["summary"] == "A cafe receipt." and analysis["confidence"] == 0.9
    assert analysis["flags"] == [] and isinstance(analysis["recommendations"], list)
    [call] = client.sandbox.state.model_calls()
    assert call.path == ("/v1/responses" if api == "responses" else "/v1/chat/completions")
    [event] = client.documents.events
    assert event.type == "document.analyzed" and event.source == "openai"
    assert event.data["document_id"] == document_id and event.data["client"] == "acme"
    assert event.data["uploader_email"] == "ann@example.com"
    assert event.data["summary"] == "A cafe receipt." and event.data["type"] == "receipt"


async def test_the_type_is_guessed_from_the_name_when_not_given(make_client):
    client = await make_client(models={"receipt": "gpt-4.1-mini"})
    document_id = client.documents.add(RECEIPT, name="Receipt-2026-11.txt")
    analysis = await analyse(client, document_id)
    assert analysis["type"] == "receipt" and analysis["model"] == "gpt-4.1-mini"


async def test_an_invoice_whose_lines_do_not_add_up_is_flagged(make_client):
    client = await make_client()
    client.sandbox.state.script_next({**INVOICE, "subtotal": "160.00", "total": "175.00"})
    analysis = await analyse(client, client.documents.add(b"invoice INV-7"), "invoice")
    assert analysis["state"] == "analyzed"
    [flag] = analysis["flags"]
    assert flag["check"] == "invoice_lines"
    assert (flag["expected"], flag["found"]) == ("150.00", "160.00")
    assert client.documents.events[0].data["flags"] == [flag]


async def test_an_invoice_that_adds_up_has_no_flags(make_client):
    client = await make_client()
    client.sandbox.state.script_next(INVOICE)
    analysis = await analyse(client, client.documents.add(b"invoice INV-7"), "invoice")
    assert analysis["flags"] == [] and analysis["data"]["lines"][1]["amount"] == "50.00"


async def test_a_receipt_whose_tax_is_above_its_total_is_flagged(make_client):
    client = await make_client()
    client.sandbox.state.script_next({**RECEIPT_ANSWER, "tax": "12.00"})
    analysis = await analyse(client, client.documents.add(RECEIPT), "receipt")
    assert [flag["check"] for flag in analysis["flags"]] == ["receipt_tax"]


@pytest.mark.parametrize("year", [2099, 2001])
async def test_an_implausible_tax_year_is_flagged(make_client, year):
    client = await make_client()
    client.sandbox.state.script_next({**TAX_RETURN, "tax_year": year})
    analysis = await analyse(client, client.documents.add(b"Form 1040"), "tax_return")
    assert analysis["state"] == "analyzed"
    assert [flag["check"] for flag in analysis["flags"]] == ["tax_year"]
    assert analysis["flags"][0]["found"] == str(year)


@pytest.mark.parametrize(
    ("fault", "problem"),
    [("invalid_json", "does not conform"), ("missing_field", "does not conform")],
)
async def test_a_nonconforming_answer_is_a_failed_analysis_not_data(make_client, fault, problem):
    client = await make_client()
    client.sandbox.state.fail_next(fault)
    analysis = await analyse(client, client.documents.add(RECEIPT), "receipt")
    assert analysis["state"] == "failed" and analysis["error_class"] == "nonconforming"
    assert problem in analysis["error"]
    assert analysis["data"] is None and analysis["summary"] is None
    [event] = client.documents.events
    assert event.type == "document.analysis_failed"
    assert event.data["error_class"] == "nonconforming" and problem in event.data["error"]
    usage = await (await client.get("/api/openai/usage")).json()
    assert usage["models"][0]["calls"] == 1  # the failed answer's tokens still count


async def test_an_amount_given_as_a_json_number_does_not_conform(make_client):
    client = await make_client()
    client.sandbox.state.script_next({**RECEIPT_ANSWER, "total": 10.8})
    analysis = await analyse(client, client.documents.add(RECEIPT), "receipt")
    assert analysis["state"] == "failed" and "total" in analysis["error"]


async def test_unknown_document_409_when_running_and_400_for_a_bad_type(make_client):
    client = await make_client()
    response = await client.post("/api/documents/doc_none/analyze")
    assert response.status == 404 and "doc_none" in (await response.json())["error"]
    document_id = client.documents.add(RECEIPT)
    response = await client.post(f"/api/documents/{document_id}/analyze", json={"type": "poem"})
    assert response.status == 400 and "type must be one of" in (await response.json())["error"]
    response = await client.post(f"/api/documents/{document_id}/analyze", data=b"[1]")
    assert response.status == 400
    client.sandbox.state.fail_next("slow", delay=0.5)
    first = await client.post(f"/api/documents/{document_id}/analyze")
    second = await client.post(f"/api/documents/{document_id}/analyze")
    assert first.status == 202 and second.status == 409
    assert "already being analysed" in (await second.json())["error"]
    response = await client.get("/api/documents/doc_none/analysis")
    assert response.status == 404
