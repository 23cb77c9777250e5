"""Sending: v3 mail send through the hub's HTTP client, recorded in the ``sends`` table,
retried on 429 after ``X-RateLimit-Reset`` and on 5xx, refused sends recorded with SendGrid's
reason, suppressed addresses never sent to, unsent messages resent by the background pass."""

from __future__ import annotations

import time

import orjson

from plugins.sendgrid.message import Message, Recipient

from .conftest import assert_valid_mail_requests, running, sg_config


def note(*emails: str, template: str | None = None) -> Message:
    return Message(
        kind="notification",
        subject="Quarterly update",
        text="Hello",
        recipients=tuple(Recipient(e, "Name") for e in emails),
        template_id=template,
        data={"quarter": "Q3"},
    )


async def test_a_send_is_recorded_with_sendgrids_message_id(make_hub, sandbox):
    hub = await make_hub(config=sg_config(sandbox))
    mailer = running(hub).mailer
    [row] = await mailer.send(note("a@client.test", "b@client.test", template="d-welcome"))
    assert row["status"] == "sent"
    assert row["transport"] == "sendgrid"
    assert row["message_id"] == sandbox.state.sends[0]["message_id"]
    stored = await mailer.tables.get("sends", row["id"])
    assert stored["attempts"] == 1 and stored["payload"] is None
    assert orjson.loads(stored["recipients"]) == ["a@client.test", "b@client.test"]
    body = sandbox.state.sends[0]["body"]
    assert body["template_id"] == "d-welcome"
    assert body["personalizations"][0]["dynamic_template_data"] == {"quarter": "Q3"}
    assert body["personalizations"][1]["custom_args"] == {"hub_send": row["id"]}
    assert assert_valid_mail_requests(sandbox) == 1


async def test_a_429_is_retried_after_the_reset_time(make_hub, sandbox):
    hub = await make_hub(config=sg_config(sandbox, request_max_delay=2.0))
    reset = int(time.time()) + 2  # over a second away: later than any first backoff (<= 0.5 s)
    sandbox.state.fail_next(
        429, headers={"X-RateLimit-Reset": str(reset), "X-RateLimit-Remaining": "0"}
    )
    [row] = await running(hub).mailer.send(note("a@client.test"))
    assert row["status"] == "sent"
    first, second = sandbox.state.requests
    assert (first.status, second.status) == (429, 202)
    assert len(sandbox.state.sends) == 1
    assert time.time() >= reset


async def test_5xx_is_retried_with_backoff(make_hub, sandbox):
    hub = await make_hub(config=sg_config(sandbox))
    sandbox.state.fail_next(503, count=2)
    [row] = await running(hub).mailer.send(note("a@client.test"))
    assert row["status"] == "sent"
    assert [r.status for r in sandbox.state.requests] == [503, 503, 202]


async def test_an_unknown_template_fails_with_sendgrids_reason_recorded(make_hub, sandbox):
    hub = await make_hub(config=sg_config(sandbox))
    mailer = running(hub).mailer
    [row] = await mailer.send(note("a@client.test", template="d-missing"))
    stored = await mailer.tables.get("sends", row["id"])
    assert stored["status"] == "failed"
    assert "The template_id d-missing is not a valid template ID" in stored["last_error"]
    assert "field template_id" in stored["last_error"]
    assert len(sandbox.state.requests) == 1  # a refusal is not retried


async def test_a_suppressed_address_is_never_sent_to(make_hub, sandbox):
    hub = await make_hub(config=sg_config(sandbox))
    mailer = running(hub).mailer
    await mailer.suppress([("Bounced@Client.test", "550 no such user", "bounce")])
    [row] = await mailer.send(note("bounced@client.test", "ok@client.test"))
    sent = sandbox.state.sends[0]["body"]["personalizations"]
    assert [p["to"][0]["email"] for p in sent] == ["ok@client.test"]
    assert orjson.loads(row["recipients"]) == ["ok@client.test"]
    [only] = await mailer.send(note("BOUNCED@client.test"))
    assert only["status"] == "suppressed"
    assert len(sandbox.state.sends) == 1


async def test_a_message_sendgrid_could_not_take_is_kept_and_resent_later(make_hub, sandbox):
    hub = await make_hub(config=sg_config(sandbox, request_attempts=2))
    mailer = running(hub).mailer
    sandbox.state.fail_next(500, count=2)
    [row] = await mailer.send(note("a@client.test"))
    assert row["status"] == "retrying"
    stored = await mailer.tables.get("sends", row["id"])
    assert stored["payload"] and "server" in stored["last_error"]
    mailer.clock = lambda: time.time() + 3600
    assert await mailer.tick() == 1
    stored = await mailer.tables.get("sends", row["id"])
    assert (stored["status"], stored["attempts"]) == ("sent", 2)
    assert len(sandbox.state.sends) == 1


async def test_after_max_attempts_a_message_is_marked_failed_not_dropped(make_hub, sandbox):
    hub = await make_hub(config=sg_config(sandbox, request_attempts=1, max_attempts=2))
    mailer = running(hub).mailer
    sandbox.state.fail_next(500, count=5)
    [row] = await mailer.send(note("a@client.test"))
    mailer.clock = lambda: time.time() + 3600
    await mailer.tick()
    stored = await mailer.tables.get("sends", row["id"])
    assert (stored["status"], stored["attempts"]) == ("failed", 2)
    assert "server" in stored["last_error"]


async def test_a_send_left_queued_by_a_crash_is_sent_by_the_next_pass(make_hub, sandbox):
    hub = await make_hub(config=sg_config(sandbox))
    mailer = running(hub).mailer
    [row] = await mailer.record([note("a@client.test")])
    assert not sandbox.state.sends
    mailer.clock = lambda: time.time() + 3600
    assert await mailer.tick() == 1
    assert (await mailer.tables.get("sends", row["id"]))["status"] == "sent"


async def test_old_finished_sends_are_pruned_and_unsent_ones_kept(make_hub, sandbox):
    hub = await make_hub(config=sg_config(sandbox, history_days=30, request_attempts=1))
    mailer = running(hub).mailer
    [done] = await mailer.send(note("a@client.test"))
    sandbox.state.fail_next(500)
    [waiting] = await mailer.send(note("b@client.test"))
    await mailer.tables.upsert(
        "recipient_status",
        [
            {
                "message_id": done["message_id"],
                "email": "a@client.test",
                "status": "delivered",
                "at": 1,
            }
        ],
    )
    sandbox.state.fail_next(500, count=1)
    mailer.clock = lambda: time.time() + 31 * 86400
    await mailer.tick()
    assert await mailer.tables.get("sends", done["id"]) is None
    assert (await mailer.tables.get("sends", waiting["id"]))["status"] == "retrying"
    assert await mailer.count("recipient_status") == 0
