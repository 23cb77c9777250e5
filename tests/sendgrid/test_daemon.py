"""From outside the process: a real daemon, a signed Event Webhook batch over a real socket,
the suppression it causes honoured by a notification sent through the daemon's API."""

from __future__ import annotations

import asyncio

import aiohttp
import orjson
import pytest

from tests.daemon import Daemon

pytestmark = pytest.mark.slow


async def test_a_bounce_posted_to_the_daemon_suppresses_the_address(
    tmp_path, sandbox, reap_daemons
):
    config = (
        "[integrations.sendgrid]\n"
        f'base_url = "{sandbox.base_url}"\n'
        'from_email = "hub@demo.test"\n'
        f'event_webhook_public_key = "{sandbox.state.public_key}"\n'
    )
    daemon = Daemon(
        tmp_path, config, {"HUB_INTEGRATIONS__SENDGRID__API_KEY": sandbox.state.config.api_key}
    )
    async with aiohttp.ClientSession() as session:
        await daemon.ready(session, "/readyz")
        body, headers = sandbox.state.signed_events(
            [{"email": "gone@client.test", "event": "bounce", "sg_event_id": "e1"}]
        )
        async with session.post(f"{daemon.url}/webhooks/sendgrid", data=body, headers=headers) as r:
            assert r.status == 200
        bad = {**headers, "X-Twilio-Email-Event-Webhook-Signature": "AAAA"}
        async with session.post(f"{daemon.url}/webhooks/sendgrid", data=body, headers=bad) as r:
            assert r.status == 401
        for _ in range(600):  # poll for up to 30 s: the machine may be busy
            _, listed = await daemon.api(session, "GET", "/api/notifications/suppressions")
            if listed["total"]:
                break
            await asyncio.sleep(0.05)
        emails = [row["email"] for row in listed["suppressions"]]
        assert emails == ["gone@client.test"], daemon.output()[-6000:]
        status, answer = await daemon.api(
            session,
            "POST",
            "/api/notifications",
            json={
                "recipients": ["gone@client.test", "ok@client.test"],
                "subject": "s",
                "text": "t",
            },
        )
        assert (status, answer["suppressed"]) == (202, 1)
        for _ in range(600):  # poll for up to 30 s: the machine may be busy
            if sandbox.state.sends:
                break
            await asyncio.sleep(0.05)
    daemon.stop()
    [send] = sandbox.state.sends
    assert [p["to"][0]["email"] for p in send["body"]["personalizations"]] == ["ok@client.test"]
    assert orjson.loads(sandbox.state.requests[-1].body)["from"] == {"email": "hub@demo.test"}
