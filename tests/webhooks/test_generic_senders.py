"""Generic senders over a real socket: a replayed body never suppresses a real event."""

from __future__ import annotations

import orjson
from structlog.testing import capture_logs

from hub.store.content import content_hash
from hub.testing import deliver_webhook, generic_signature
from tests.webhooks.test_inbound import Recorder, rows

HMAC_SECRET = "generic-test-secret"
CONFIG = {"webhooks": {"generic": {"zapier": {"secret": HMAC_SECRET}}}}
NEW = (200, {"received": 1, "duplicates": 0})
DUPLICATE = (200, {"received": 0, "duplicates": 1})
ZAPIER = "/webhooks/generic/zapier"


def hmac_headers(body: bytes, event_id: str) -> dict[str, str]:
    return {"X-Signature": generic_signature(HMAC_SECRET, body), "webhook-id": event_id}


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
