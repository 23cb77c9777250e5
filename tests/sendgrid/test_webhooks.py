"""The Event Webhook: ECDSA signature over timestamp + raw body with any configured key, a
5-minute window, SendGrid's published vector; events deduplicated by ``sg_event_id``;
suppressing events fill the suppression list; delivery events advance the send's status."""

from __future__ import annotations

import time

import orjson
import pytest

from hub.errors import SignatureError
from hub.testing import deliver_webhook, hub_of
from plugins.sendgrid import webhooks
from plugins.sendgrid.message import Message, Recipient
from plugins.sendgrid.sandbox import SandboxConfig, SandboxState

from .conftest import SPECS, running, sg_config

VECTOR = orjson.loads((SPECS / "event-webhook-vector.json").read_bytes())
URL = "/webhooks/sendgrid"


def event(kind: str, email: str, n: int, **extra):
    return {"email": email, "event": kind, "sg_event_id": f"evt-{n}", "timestamp": 1, **extra}


def test_sendgrids_published_vector_verifies():
    body = VECTOR["body"].encode()
    webhooks.verify(
        body,
        VECTOR["signature"],
        VECTOR["timestamp"],
        [VECTOR["public_key_b64_der"]],
        tolerance=300,
        now=int(VECTOR["timestamp"]) + 10,
    )
    [parsed] = webhooks.parse(body)
    assert parsed.id == "ZHJvcC0xMDk5NDkxOS1MUnpYbF9OSFN0T0doUTRrb2ZTbV9BLTA"
    assert parsed.type == "event.dropped"


@pytest.mark.parametrize(
    ("keys", "signature", "body", "now"),
    [
        ("wrong_key", "signature", "body", 10),
        ("key", "wrong_signature", "body", 10),
        ("key", "signature", "tampered", 10),
        ("key", "signature", "body", 301),
        ("key", "not base64!", "body", 10),
        ("none", "signature", "body", 10),
    ],
)
def test_the_vector_fails_when_anything_is_off(keys, signature, body, now):
    negative = VECTOR["negative"]
    key = {
        "key": [VECTOR["public_key_b64_der"]],
        "wrong_key": [negative["wrong_public_key_b64_der"]],
        "none": [],
    }[keys]
    sig = {"signature": VECTOR["signature"], "wrong_signature": negative["wrong_signature"]}.get(
        signature, signature
    )
    raw = VECTOR["body"].encode() + (b" " if body == "tampered" else b"")
    with pytest.raises(SignatureError):
        webhooks.verify(raw, sig, VECTOR["timestamp"], key, 300, int(VECTOR["timestamp"]) + now)


async def test_the_single_key_setting_verifies_too(hub_client, sandbox):
    config = sg_config(sandbox, event_webhook_public_keys=[])
    config["integrations"]["sendgrid"]["event_webhook_public_key"] = sandbox.state.public_key
    client = await hub_client(config=config)
    body, headers = sandbox.state.signed_events([event("bounce", "x@client.test", 1)])
    assert (await deliver_webhook(client, URL, body, headers))[0] == 200


def test_any_configured_key_may_sign():
    other = SandboxState(SandboxConfig())
    body = VECTOR["body"].encode()
    keys = [other.public_key, VECTOR["public_key_b64_der"]]
    ts = int(VECTOR["timestamp"])
    webhooks.verify(body, VECTOR["signature"], VECTOR["timestamp"], keys, 300, ts)


@pytest.mark.parametrize("fault", ["bad", "missing", "old", "malformed_base64", "other_key"])
async def test_a_bad_missing_or_old_signature_is_401_and_nothing_is_stored(
    hub_client, sandbox, fault
):
    client = await hub_client(config=sg_config(sandbox))
    body, headers = sandbox.state.signed_events([event("bounce", "x@client.test", 1)])
    if fault == "bad":
        headers = sandbox.state.sign(body + b"x") | {"Content-Type": "application/json"}
    elif fault == "missing":
        headers = {"Content-Type": "application/json"}
    elif fault == "old":
        body, headers = sandbox.state.signed_events(
            [event("bounce", "x@client.test", 1)], timestamp=int(time.time()) - 301
        )
    elif fault == "malformed_base64":
        headers[webhooks.SIGNATURE_HEADER] = "%%%not-base64%%%"
    else:
        body, headers = SandboxState(SandboxConfig()).signed_events(
            [event("bounce", "x@client.test", 1)]
        )
    status, answer = await deliver_webhook(client, URL, body, headers)
    assert status == 401, answer
    inbox = await (await client.get("/api/inbox")).json()
    assert inbox["events"] == []
    mailer = running(hub_of(client)).mailer
    assert await mailer.count("suppressions") == 0


async def test_malformed_json_is_400(hub_client, sandbox):
    client = await hub_client(config=sg_config(sandbox))
    for body in (b"{not json", b'{"event": "bounce"}', b'[{"event": "bounce"}]'):
        status, _ = await deliver_webhook(client, URL, body, sandbox.state.sign(body))
        assert status == 400
    assert (await (await client.get("/api/inbox")).json())["events"] == []


async def test_suppressing_events_fill_the_list_once_per_event_id(hub_client, sandbox):
    client = await hub_client(config=sg_config(sandbox))
    events = [
        event("bounce", "Bounce@Client.test", 1, reason="550 5.1.1 no such user"),
        event("dropped", "drop@client.test", 2, reason="Bounced Address"),
        event("spamreport", "spam@client.test", 3),
        event("unsubscribe", "unsub@client.test", 4),
        event("group_unsubscribe", "group@client.test", 5, asm_group_id=7),
        event("delivered", "fine@client.test", 6),
    ]
    body, headers = sandbox.state.signed_events(events)
    status, answer = await deliver_webhook(client, URL, body, headers)
    assert status == 200 and answer["received"] == 6
    pending = await (await client.get("/api/inbox?state=pending")).json()
    assert pending["events"] == []  # every event was processed at the first attempt
    status, answer = await deliver_webhook(client, URL, body, sandbox.state.sign(body))
    assert answer["duplicates"] == 6
    listed = await (await client.get("/api/notifications/suppressions")).json()
    assert listed["total"] == 5
    by_email = {row["email"]: row for row in listed["suppressions"]}
    assert by_email["bounce@client.test"]["reason"] == "550 5.1.1 no such user"
    assert by_email["group@client.test"]["source"] == "group_unsubscribe"
    mailer = running(hub_of(client)).mailer
    [row] = await mailer.send(Message("notification", "s", "t", (Recipient("bounce@client.test"),)))
    assert row["status"] == "suppressed" and not sandbox.state.sends


async def test_delivered_open_click_advance_the_sends_status(hub_client, sandbox):
    client = await hub_client(config=sg_config(sandbox))
    mailer = running(hub_of(client)).mailer
    [row] = await mailer.send(Message("notification", "s", "t", (Recipient("a@client.test"),)))
    sg_id = f"{row['message_id']}.filterdrecv-1"
    for n, kind in enumerate(["delivered", "click", "open"]):
        body, headers = sandbox.state.signed_events(
            [event(kind, "a@client.test", n, sg_message_id=sg_id, hub_send=row["id"])]
        )
        assert (await deliver_webhook(client, URL, body, headers))[0] == 200
    stored = await mailer.tables.get("sends", row["id"])
    assert stored["status"] == "clicked"  # the later open does not move it back
    recipient = await mailer.tables.get("recipient_status", (row["message_id"], "a@client.test"))
    assert recipient["status"] == "opened"
