"""Notifications: hub events to uploaders and the billing contact, and the
``/api/notifications`` routes (welcome, bulk chunked at SendGrid's limits, suppressions)."""

from __future__ import annotations

import pytest

from hub.testing import hub_of
from plugins.sendgrid.message import MAX_PERSONALIZATIONS

from .conftest import assert_valid_mail_requests, running, sg_config, until


async def wait_batch(client, batch: str, requests: int) -> dict:
    url = f"/api/notifications/batches/{batch}"

    async def done():
        counts = await (await client.get(url)).json()
        return sum(counts["requests"].get(s, 0) for s in ("sent", "failed")) == requests

    await until(done)
    return await (await client.get(url)).json()


async def test_document_events_mail_the_uploader_once(make_hub, sandbox):
    config = sg_config(sandbox, templates={"document_processed": "d-document-ok"})
    hub = await make_hub(config=config)
    data = {
        "uploader_email": "sam@client.test",
        "uploader_name": "Sam",
        "document_id": "doc-1",
        "document_name": "2025 W-2.pdf",
        "client_name": "Acme",
    }
    event = await hub.emit("document.analyzed", data)
    await hub.dispatcher.drain()
    [send] = sandbox.state.sends
    body = send["body"]
    assert body["template_id"] == "d-document-ok"
    assert body["personalizations"][0]["to"] == [{"email": "sam@client.test", "name": "Sam"}]
    assert body["personalizations"][0]["dynamic_template_data"]["document_name"] == "2025 W-2.pdf"
    from plugins.sendgrid import notifications

    await notifications.on_event(event, running(hub).mailer)  # a redelivery
    assert len(sandbox.state.sends) == 1


@pytest.mark.parametrize("configured", [False, True])
async def test_events_reach_the_plugin_only_when_email_is_configured(make_hub, sandbox, configured):
    hub = await make_hub(config=sg_config(sandbox) if configured else None)
    await hub.emit("x.y", {})
    await hub.dispatcher.drain()
    (event,) = await hub.store.inbox.events(None)
    handlers = [d["handler"] for d in event["deliveries"]]
    assert ("event:sendgrid" in handlers) is configured


async def test_a_failed_analysis_says_why_in_plain_text(make_hub, sandbox):
    hub = await make_hub(config=sg_config(sandbox))
    await hub.emit(
        "document.analysis_failed",
        {"uploader_email": "sam@client.test", "document_name": "scan.pdf", "error": "unreadable"},
    )
    await hub.dispatcher.drain()
    body = sandbox.state.sends[0]["body"]
    assert body["subject"] == "scan.pdf could not be processed"
    assert "unreadable" in body["content"][0]["value"]


async def test_an_event_without_an_uploader_sends_nothing(make_hub, sandbox):
    hub = await make_hub(config=sg_config(sandbox))
    await hub.emit("document.analyzed", {"document_id": "doc-1"})
    await hub.dispatcher.drain()
    assert not sandbox.state.requests


async def test_a_failed_payment_goes_to_the_billing_contact(make_hub, sandbox):
    hub = await make_hub(config=sg_config(sandbox, billing_contact="billing@firm.test"))
    invoice = {"id": "in_1", "amount_due": 12345, "currency": "usd", "customer_name": "Acme"}
    await hub.emit("stripe.invoice.payment_failed", {"invoice": invoice}, source="stripe")
    await hub.dispatcher.drain()
    body = sandbox.state.sends[0]["body"]
    assert body["personalizations"][0]["to"] == [{"email": "billing@firm.test"}]
    assert "123.45 USD by Acme failed (invoice in_1)" in body["content"][0]["value"]


async def test_a_welcome_uses_the_welcome_template(hub_client, sandbox):
    client = await hub_client(config=sg_config(sandbox, templates={"welcome": "d-welcome"}))
    response = await client.post(
        "/api/notifications",
        json={
            "kind": "welcome",
            "recipients": [{"email": "new@client.test", "name": "New", "data": {"code": "X1"}}],
            "subject": "Welcome",
            "text": "Welcome aboard",
        },
    )
    assert response.status == 202
    answer = await response.json()
    assert (answer["requests"], answer["recipients"]) == (1, 1)
    await wait_batch(client, answer["batch"], 1)
    body = sandbox.state.sends[0]["body"]
    assert body["template_id"] == "d-welcome"
    assert body["personalizations"][0]["dynamic_template_data"] == {"code": "X1"}


async def test_a_bulk_notification_is_chunked_within_sendgrids_limits(hub_client, sandbox):
    client = await hub_client(config=sg_config(sandbox))
    mailer = running(hub_of(client)).mailer
    await mailer.suppress([("user7@client.test", "bounced", "bounce")])
    addresses = [f"user{n}@client.test" for n in range(2500)] + ["USER1@client.test"]
    response = await client.post(
        "/api/notifications",
        json={"recipients": addresses, "subject": "Tax season", "text": "Hello"},
    )
    answer = await response.json()
    assert answer["requests"] == 3 and answer["recipients"] == 2499
    assert answer["suppressed"] == 1
    counts = await wait_batch(client, answer["batch"], 3)
    assert counts["recipients"]["sent"] == 2499
    sizes = sorted(len(s["body"]["personalizations"]) for s in sandbox.state.sends)
    assert sizes == [499, MAX_PERSONALIZATIONS, MAX_PERSONALIZATIONS]
    seen = [
        p["to"][0]["email"].lower()
        for s in sandbox.state.sends
        for p in s["body"]["personalizations"]
    ]
    assert len(seen) == len(set(seen)) and "user7@client.test" not in seen
    assert assert_valid_mail_requests(sandbox) == 3


async def test_bad_notification_requests_are_400_with_the_reason(hub_client, sandbox):
    client = await hub_client(config=sg_config(sandbox))
    for body, where in (
        ({"recipients": ["not-an-address"], "subject": "s", "text": "t"}, "recipients"),
        ({"recipients": [], "subject": "s", "text": "t"}, "recipients"),
        ({"recipients": ["a@b.test"], "text": "t"}, "subject"),
    ):
        response = await client.post("/api/notifications", json=body)
        assert response.status == 400
        assert (await response.json())["error"].startswith(where)
    response = await client.post("/api/notifications", data=b"{not json")
    assert response.status == 400


async def test_the_api_needs_the_admin_token(hub_client, sandbox):
    client = await hub_client(config=sg_config(sandbox), authorized=False)
    assert (await client.get("/api/notifications/suppressions")).status == 401
    response = await client.post("/api/notifications", json={})
    assert response.status == 401


async def test_a_suppression_is_listed_and_removed_here_and_at_sendgrid(hub_client, sandbox):
    client = await hub_client(config=sg_config(sandbox))
    mailer = running(hub_of(client)).mailer
    sandbox.state.add_suppression("bounces", "gone@client.test")
    await mailer.suppress([("gone@client.test", "550", "bounce")])
    listed = await (await client.get("/api/notifications/suppressions")).json()
    assert [row["email"] for row in listed["suppressions"]] == ["gone@client.test"]
    response = await client.delete("/api/notifications/suppressions/Gone@client.test")
    assert (await response.json()) == {"removed": "gone@client.test", "sendgrid_list": "bounces"}
    assert sandbox.state.suppressions["bounces"] == {}
    assert (await client.delete("/api/notifications/suppressions/gone@client.test")).status == 404
    assert (await client.get("/api/notifications/suppressions")).status == 200
