"""Webhooks: signature verification, both payload formats, processing after the answer."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest

from hub.errors import MalformedWebhookError, SignatureError
from hub.testing import stored_records
from hub.web.keys import HUB
from plugins.quickbooks import webhooks
from plugins.quickbooks.sandbox import WebhookEvent as SandboxEvent
from tests.quickbooks.conftest import (
    INTUIT_SPECS,
    OTHER_REALM,
    REALM,
    START,
    VERIFIER,
    connect,
    qb_config,
)

CONNECTION = f"quickbooks:{REALM}"


def vectors() -> dict[str, Any]:
    """Intuit's SDK test vectors, vendored in ``tests/specs/intuit``."""
    result: dict[str, Any] = json.loads((INTUIT_SPECS / "webhook-vectors.json").read_text())
    return result


def test_signatures_match_intuit_sdk_vectors():
    for vector in vectors()["legacy_format"]:
        body = vector["body"].encode()
        webhooks.verify(body, vector["intuit_signature"], vector["verifier_token"])
        assert webhooks.sign(body, vector["verifier_token"]) == vector["intuit_signature"]
        with pytest.raises(SignatureError):
            webhooks.verify(body + b" ", vector["intuit_signature"], vector["verifier_token"])


def test_both_formats_parse_from_intuit_samples():
    data = vectors()
    classic = data["legacy_format"][1]
    events = webhooks.parse(
        classic["body"].encode(), classic["intuit_signature"], classic["verifier_token"]
    )
    assert [(e.type, e.connection_key, e.data["entity_id"]) for e in events] == [
        ("webhook.vendor.updated", "1269959970", "40"),
        ("webhook.customer.created", "1269959970", "43"),
    ]
    body = data["cloudevents_format"][0]["body"].encode()
    (event,) = webhooks.parse(body, webhooks.sign(body, "t"), "t")
    assert event.id == "d1a3aedd-9670-41bf-a4f9-c148a1cc4e03"
    assert (event.type, event.connection_key) == ("webhook.class.created", "310687")
    assert event.data["entity"] == "Class" and event.data["entity_id"] == "1234"
    again = webhooks.parse(
        classic["body"].encode(), classic["intuit_signature"], classic["verifier_token"]
    )
    assert again[0].id == events[0].id  # a classic redelivery gets the same id: deduplicated


def test_bad_payloads_and_missing_configuration():
    with pytest.raises(SignatureError, match="no webhook_verifier_token"):
        webhooks.parse(b"{}", "x", None)
    with pytest.raises(SignatureError, match="not base64"):
        webhooks.parse(b"{}", "***", "t")
    for body in (b"not json", b'{"other": 1}', b'[{"type": "stripe.x"}]'):
        with pytest.raises(MalformedWebhookError):
            webhooks.parse(body, webhooks.sign(body, "t"), "t")


async def test_tampered_or_missing_signatures_get_401(hub_client, sandbox):
    client = await hub_client(config=qb_config(sandbox))
    body = b'{"eventNotifications": []}'
    good = webhooks.sign(body, VERIFIER)
    cases = [
        ({"intuit-signature": good}, body + b" ", 401),
        ({"intuit-signature": webhooks.sign(body, "wrong-token")}, body, 401),
        ({}, body, 401),
        ({"intuit-signature": good}, body, 200),
    ]
    for headers, payload, status in cases:
        response = await client.post("/webhooks/quickbooks", data=payload, headers=headers)
        assert response.status == status, await response.text()
    unconfigured = await hub_client()
    response = await unconfigured.post(
        "/webhooks/quickbooks", data=body, headers={"intuit-signature": good}
    )
    assert response.status == 401


async def hub_events(hub, prefix: str) -> list[tuple[str, dict[str, Any]]]:
    await hub.dispatcher.drain()
    rows = await hub.store.db.read(
        lambda db: db.execute(
            "SELECT type, data FROM events WHERE source = 'quickbooks' AND event_id LIKE 'evt_%' "
            "AND type LIKE ? ORDER BY id",
            [f"{prefix}%"],
        ).fetchall()
    )
    return [(kind, orjson.loads(data)) for kind, data in rows]


@pytest.mark.parametrize("format", ["classic", "cloudevents"])
async def test_changes_are_refetched_tombstoned_and_announced(hub_client, sandbox, format):
    client = await hub_client(config=qb_config(sandbox))
    hub = client.server.app[HUB]
    await connect(hub, sandbox.state)
    assert (await hub.engine.run(CONNECTION)).state == "succeeded"
    state = sandbox.state
    state.advance_clock(30)
    state.update(REALM, "Invoice", "3", {"PrivateNote": "paid in cash"})
    state.delete(REALM, "Invoice", "4")
    created = state.create(REALM, "Customer", {"DisplayName": "Webhook Co"})
    url = str(client.make_url("/webhooks/quickbooks"))
    delivery = await state.send_webhook(url, VERIFIER, format=format)
    assert delivery.status == 200 and json.loads(delivery.response_body)["received"] == 3
    announced = dict(await hub_events(hub, "quickbooks."))  # processed concurrently
    assert sorted(announced) == [
        "quickbooks.customer.created",
        "quickbooks.invoice.deleted",
        "quickbooks.invoice.updated",
    ]
    assert announced["quickbooks.invoice.updated"]["record"]["PrivateNote"] == "paid in cash"
    deleted = announced["quickbooks.invoice.deleted"]
    assert deleted["deleted"] == ["4"] and deleted["record"] is None
    records = await stored_records(hub, "quickbooks", CONNECTION)
    assert records["invoices"]["3"]["PrivateNote"] == "paid in cash"
    assert "4" not in records["invoices"]
    assert records["customers"][created["Id"]]["DisplayName"] == "Webhook Co"
    links = [link for c in await hub.store.clients.list() for link in c["links"]]
    assert any(link["provider_id"] == created["Id"] for link in links)
    again = await state.send_webhook(url, VERIFIER, events=[], format=format)
    assert again.status == 200


@pytest.mark.parametrize("format", ["classic", "cloudevents"])
async def test_merge_tombstones_the_merged_away_customer(hub_client, sandbox, format):
    client = await hub_client(config=qb_config(sandbox))
    hub = client.server.app[HUB]
    await connect(hub, sandbox.state)
    await hub.engine.run(CONNECTION)
    sandbox.state.merge(REALM, "Customer", "7", "5")
    url = str(client.make_url("/webhooks/quickbooks"))
    delivery = await sandbox.state.send_webhook(url, VERIFIER, format=format)
    assert delivery.status == 200
    (merged,) = await hub_events(hub, "quickbooks.customer.")
    assert merged[0] == "quickbooks.customer.merged"
    assert merged[1]["deleted"] == ["7"] and merged[1]["record"]["Id"] == "5"
    records = await stored_records(hub, "quickbooks", CONNECTION)
    assert "7" not in records["customers"] and "5" in records["customers"]


async def test_unknown_realm_and_unsynced_entities_are_accepted(hub_client, sandbox):
    client = await hub_client(config=qb_config(sandbox, streams=["invoices"]))
    hub = client.server.app[HUB]
    await connect(hub, sandbox.state)
    events = [
        SandboxEvent(OTHER_REALM, "Invoice", "1", "Update", START),
        SandboxEvent(REALM, "TimeActivity", "8", "Create", START),
        SandboxEvent(REALM, "Customer", "2", "Update", START),
    ]
    url = str(client.make_url("/webhooks/quickbooks"))
    delivery = await sandbox.state.send_webhook(url, VERIFIER, events=events)
    assert delivery.status == 200
    announced = await hub_events(hub, "quickbooks.")
    assert sorted(kind for kind, _ in announced) == [
        "quickbooks.customer.updated",
        "quickbooks.timeactivity.created",
    ]
    assert all(data["record"] is None for _, data in announced)
    states = await hub.store.db.read(
        lambda db: db.execute("SELECT state FROM deliveries WHERE handler = 'process'").fetchall()
    )
    assert [s for (s,) in states] == ["done", "done", "done"]
    assert not (await stored_records(hub, "quickbooks", CONNECTION))["customers"]
