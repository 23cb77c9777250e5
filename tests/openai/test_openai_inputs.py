"""What of a document reaches the model: a PDF's text layer, an image for the vision model;
and the documents that cannot be analysed, each a clear failed result without a model call."""

from __future__ import annotations

import pytest

from tests.openai.conftest import RECEIPT, analyse
from tests.openai.pdfs import blank_pdf, text_pdf

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


def user_text(call) -> str:
    """The text the model was sent in a Responses API request."""
    return call.body["input"][0]["content"][0].get("text", "")


async def test_a_pdf_is_analysed_from_its_text_layer(make_client):
    client = await make_client()
    pdf = text_pdf([line.decode() for line in RECEIPT.splitlines()])
    document_id = client.documents.add(pdf, name="receipt.pdf", kind="application/pdf")
    analysis = await analyse(client, document_id, "receipt")
    assert analysis["state"] == "analyzed" and analysis["data"]["total"] == "10.80"
    [call] = client.sandbox.state.model_calls()
    assert "merchant: Corner Cafe" in user_text(call)


async def test_a_pdf_without_text_is_a_no_text_result_not_a_crash(make_client):
    client = await make_client()
    document_id = client.documents.add(blank_pdf(), name="scan.pdf", kind="application/pdf")
    analysis = await analyse(client, document_id, "receipt")
    assert analysis["state"] == "failed" and analysis["error_class"] == "no_text"
    assert analysis["error"].startswith("no text: the PDF (2 pages) has no text layer")
    assert client.sandbox.state.model_calls() == []
    [event] = client.documents.events
    assert event.type == "document.analysis_failed" and event.data["error_class"] == "no_text"


@pytest.mark.parametrize(
    ("content", "kind", "reason"),
    [
        (b"%PDF-1.4\nnot really", "application/pdf", "not a readable PDF"),
        (PNG, "image/png", "no vision_model is configured"),
        (b"PK\x03\x04zip", "application/zip", "are not analysed"),
    ],
)
async def test_a_document_the_hub_cannot_read_fails_with_the_reason(
    make_client, content, kind, reason
):
    client = await make_client()
    analysis = await analyse(client, client.documents.add(content, kind=kind), "receipt")
    assert analysis["state"] == "failed" and analysis["error_class"] == "unreadable"
    assert reason in analysis["error"]
    assert client.sandbox.state.model_calls() == []


async def test_an_image_goes_to_the_vision_model(make_client):
    client = await make_client(vision_model="gpt-4o")
    client.sandbox.state.script_next(
        {
            "summary": "A photographed receipt.",
            "confidence": 0.7,
            "recommendations": [],
            "merchant": "Corner Cafe",
            "purchase_date": "2026-11-30",
            "currency": "USD",
            "subtotal": "10.00",
            "tax": "0.80",
            "total": "10.80",
        }
    )
    analysis = await analyse(client, client.documents.add(PNG, kind="image/png"), "receipt")
    assert analysis["state"] == "analyzed" and analysis["model"] == "gpt-4o"
    [call] = client.sandbox.state.model_calls()
    part = call.body["input"][0]["content"][0]
    assert call.body["model"] == "gpt-4o" and part["type"] == "input_image"
    assert part["image_url"].startswith("data:image/png;base64,")


async def test_a_document_over_the_size_limit_is_not_read(make_client):
    client = await make_client(max_document_bytes=1024)
    analysis = await analyse(client, client.documents.add(b"x" * 2000), "generic")
    assert analysis["state"] == "failed" and analysis["error_class"] == "too_large"
    assert "more than max_document_bytes (1024)" in analysis["error"]


async def test_a_document_whose_content_cannot_be_read_fails_with_the_storage_reason(make_client):
    client = await make_client()
    document_id = client.documents.add(RECEIPT)
    client.documents.broken.add(document_id)
    analysis = await analyse(client, document_id, "receipt")
    assert analysis["state"] == "failed" and analysis["error_class"] == "storage"
    assert "blob is missing" in analysis["error"]


async def test_a_long_text_is_cut_at_max_input_chars_and_flagged(make_client):
    client = await make_client(max_input_chars=1000)
    analysis = await analyse(client, client.documents.add(RECEIPT + b"x" * 5000), "receipt")
    assert analysis["state"] == "analyzed"
    assert [flag["check"] for flag in analysis["flags"]] == ["text_truncated"]
    [call] = client.sandbox.state.model_calls()
    assert len(user_text(call)) == 1000
