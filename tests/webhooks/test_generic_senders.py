"""Generic senders over a real socket: a replayed body never suppresses a real event, and the
Standard Webhooks scheme signs ids and timestamps (checked with the independent reference)."""

from __future__ import annotations

import time

import orjson
import pytest
from structlog.testing import capture_logs

from hub.config import load_settings
from hub.errors import ConfigError
from hub.store.content import content_hash
from hub.testing import deliver_webhook, generic_signature
from hub.webhooks.signing import new_secret
from tests.webhooks.standard_webhooks_ref import reference_signature
from tests.webhooks.test_inbound import Recorder, rows

HMAC_SECRET = "generic-test-secret"
STANDARD_SECRET = new_secret()
CONFIG = {
    "webhooks": {
        "generic": {
            "zapier": {"secret": HMAC_SECRET},
            "std": {"scheme": "standard", "secret": STANDARD_SECRET},
            "strict": {"scheme": "standard", "secret": STANDARD_SECRET, "tolerance": 60},
        }
    }
}
NEW = (200, {"received": 1, "duplicates": 0})
DUPLICATE = (200, {"received": 0, "duplicates": 1})
ZAPIER = "/webhooks/generic/zapier"
STD = "/webhooks/generic/std"


def hmac_headers(body: bytes, event_id: str) -> dict[str, str]:
    return {"X-Signature": generic_signature(HMAC_SECRET, body), "webhook-id": event_id}


def standard_headers(
    body: bytes, msg_id: str, timestamp: int | None = None, signature: str | None = None
) -> dict[str, str]:
    """Headers signed by the reference implementation (not the hub's own signing code)."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    signed = "v1," + reference_signature(STANDARD_SECRET, msg_id, stamp, body)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": stamp,
        "webhook-signature": signed if signature is None else signature,
    }


def generic_events(client) -> list[tuple[str, str]]:
    return rows(client, "SELECT event_id, data FROM events WHERE source = 'generic' ORDER BY id")


# ---------------------------------------------------------------- replay under a reused id


async def test_a_body_replayed_under_a_future_id_does_not_suppress_the_real_event(hub_client):
    recorder = Recorder()
    client = await hub_client(plugins=[recorder], config=CONFIG, authorized=False)
    captured_data = {"invoice": "INV-1", "status": "paid"}
    real_data = {"invoice": "INV-2", "status": "paid", "amount": "99.00"}
    captured, real = orjson.dumps(captured_data), orjson.dumps(real_data)
    first = await deliver_webhook(client, ZAPIER, captured, hmac_headers(captured, "evt-1"))
    assert first == NEW

    with capture_logs() as logs:
        # someone who saw evt-1 re-sends its signed body under the id the sender uses next
        replayed = await deliver_webhook(client, ZAPIER, captured, hmac_headers(captured, "evt-2"))
        genuine = await deliver_webhook(client, ZAPIER, real, hmac_headers(real, "evt-2"))

    assert replayed == NEW
    assert genuine == NEW  # not swallowed as a duplicate
    stored_as = "zapier:evt-2#" + content_hash(real_data)[:32]
    assert [e.data for e in recorder.seen] == [captured_data, captured_data, real_data]
    assert recorder.seen[-1].id == stored_as  # distinct from the replay's "zapier:evt-2"
    assert [(event_id, orjson.loads(data)) for event_id, data in generic_events(client)] == [
        ("zapier:evt-1", captured_data),
        ("zapier:evt-2", captured_data),
        (stored_as, real_data),
    ]
    (warning,) = [line for line in logs if line["log_level"] == "warning"]
    assert warning["source"] == "generic"
    assert warning["event_id"] == "zapier:evt-2" and warning["stored_as"] == stored_as
    assert "INV-2" not in repr(logs) and "99.00" not in repr(logs)  # never the body

    # each of the two, sent again, is a duplicate
    for body in (captured, real):
        again = await deliver_webhook(client, ZAPIER, body, hmac_headers(body, "evt-2"))
        assert again == DUPLICATE
    assert len(recorder.seen) == 3
    assert len(generic_events(client)) == 3


async def test_the_same_body_under_the_same_id_is_still_a_duplicate(hub_client):
    recorder = Recorder()
    client = await hub_client(plugins=[recorder], config=CONFIG, authorized=False)
    body = b'{"a": 1, "b": [1, 2]}'
    reformatted = b'{ "b": [1,2], "a": 1 }'  # the same content: key order and spaces differ
    with capture_logs() as logs:
        for sent, answer in ((body, NEW), (body, DUPLICATE), (reformatted, DUPLICATE)):
            assert await deliver_webhook(client, ZAPIER, sent, hmac_headers(sent, "e1")) == answer
    assert len(recorder.seen) == 1
    assert not [line for line in logs if line["log_level"] == "warning"]


# ---------------------------------------------------------------- Standard Webhooks scheme


async def test_a_standard_signature_is_accepted_and_its_replay_is_a_duplicate(hub_client):
    recorder = Recorder()
    client = await hub_client(plugins=[recorder], config=CONFIG, authorized=False)
    body = b'{"invoice": "INV-7"}'
    headers = standard_headers(body, "msg_2xJ7abc")
    assert await deliver_webhook(client, STD, body, headers) == NEW
    # the same id, timestamp and body again: a duplicate, handled once
    assert await deliver_webhook(client, STD, body, headers) == DUPLICATE
    (event,) = recorder.seen
    assert (event.id, event.type, event.data) == (
        "std:msg_2xJ7abc",
        "generic.std.received",
        {"invoice": "INV-7"},
    )
    # the sender's own retry: a new timestamp, same id and body
    retry = standard_headers(body, "msg_2xJ7abc", int(time.time()) + 1)
    assert await deliver_webhook(client, STD, body, retry) == DUPLICATE
    assert len(recorder.seen) == 1


async def test_one_valid_entry_among_several_signatures_is_enough(hub_client):
    client = await hub_client(config=CONFIG, authorized=False)
    body = b'{"n": 1}'
    valid = standard_headers(body, "msg_rotating")["webhook-signature"]
    other = "v1," + reference_signature(new_secret(), "msg_rotating", str(int(time.time())), body)
    # during a secret rotation: an old secret's entry, another scheme's, and the valid one
    signatures = f"{other} v1a,c2lnbmF0dXJl {valid}"
    headers = standard_headers(body, "msg_rotating", signature=signatures)
    assert await deliver_webhook(client, STD, body, headers) == NEW


def _wrong_secret(body: bytes) -> dict[str, str]:
    stamp = str(int(time.time()))
    return {
        "webhook-id": "msg_1",
        "webhook-timestamp": stamp,
        "webhook-signature": "v1," + reference_signature(new_secret(), "msg_1", stamp, body),
    }


def _another_id(body: bytes) -> dict[str, str]:
    # a captured request re-sent under another id: the id is signed
    return {**standard_headers(body, "msg_1"), "webhook-id": "msg_2"}


def _hmac_only(body: bytes) -> dict[str, str]:
    # a standard sender does not accept the body-only HMAC
    return {"X-Signature": generic_signature(STANDARD_SECRET, body), "webhook-id": "msg_1"}


def _without(name: str):
    def headers(body: bytes) -> dict[str, str]:
        signed = standard_headers(body, "msg_1")
        del signed[name]
        return signed

    return headers


def _at(offset: int):
    return lambda body: standard_headers(body, "msg_1", int(time.time()) + offset)


@pytest.mark.parametrize(
    ("path", "make_headers", "reason"),
    [
        (STD, _wrong_secret, "no matching webhook signature"),
        (STD, _another_id, "no matching webhook signature"),
        (STD, _hmac_only, "missing webhook header(s): webhook-timestamp, webhook-signature"),
        (STD, _without("webhook-signature"), "missing webhook header(s): webhook-signature"),
        (STD, _without("webhook-id"), "missing webhook header(s): webhook-id"),
        (STD, _at(-400), "webhook-timestamp is too old"),
        (STD, _at(400), "webhook-timestamp is too new"),
        ("/webhooks/generic/strict", _at(-120), "webhook-timestamp is too old"),
        ("/webhooks/generic/strict", _at(120), "webhook-timestamp is too new"),
    ],
)
async def test_standard_rejections_are_401_with_a_reason_and_store_nothing(
    hub_client, path, make_headers, reason
):
    client = await hub_client(config=CONFIG, authorized=False)
    body = b'{"n": 1}'
    response = await client.post(path, data=body, headers=make_headers(body))
    assert response.status == 401
    assert reason in (await response.json())["error"]
    assert rows(client, "SELECT count(*) FROM events") == [(0,)]
    assert rows(client, "SELECT count(*) FROM webhook_requests") == [(0,)]


async def test_the_tolerance_is_the_senders_setting(hub_client):
    client = await hub_client(config=CONFIG, authorized=False)
    body = b'{"n": 2}'
    # 120 s old: within the default 5 minutes, outside "strict"'s 60 s
    headers = standard_headers(body, "msg_late", int(time.time()) - 120)
    assert (await client.post(STD, data=body, headers=headers)).status == 200
    assert (await client.post("/webhooks/generic/strict", data=body, headers=headers)).status == 401


@pytest.mark.parametrize("secret", ["whsec_not*base64", "plain words"])
def test_a_standard_secret_that_is_not_base64_is_a_config_error(secret):
    sender = {"scheme": "standard", "secret": secret}
    with pytest.raises(ConfigError) as exc:
        load_settings(overrides={"webhooks": {"generic": {"x": sender}}}, read_default=False)
    (line,) = str(exc.value).splitlines()
    assert "webhooks.generic.x.secret" in line and "whsec_<base64>" in line
    assert secret not in line
    # the same secret is fine for the default hmac scheme
    sender.pop("scheme")
    load_settings(overrides={"webhooks": {"generic": {"x": sender}}}, read_default=False)
