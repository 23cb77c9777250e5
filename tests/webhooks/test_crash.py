"""Webhooks under load, then ``kill -9``, then a restart: every request answered 2xx is in the
inbox and processed by each handler in the end; nothing answered 401 is stored."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from pathlib import Path

import aiohttp
import pytest

from tests.daemon import Daemon, query

SECRET = "crash-secret"
PLUGINS = Path(__file__).parent / "crash_plugins"
pytestmark = pytest.mark.slow


def start(folder: Path) -> Daemon:
    config = f'[plugins]\ndir = "{PLUGINS}"\n[webhooks.generic.load]\nsecret = "{SECRET}"\n'
    return Daemon(folder, config, {"RECORDER_DB": str(folder / "seen.db")})


async def load(session: aiohttp.ClientSession, url: str, answers: dict[str, int]) -> None:
    """Post signed requests (and every 7th one badly signed) until the daemon dies."""
    counter = 0

    async def worker(number: int) -> None:
        nonlocal counter
        while True:
            counter += 1
            bad = counter % 7 == 0
            event_id = f"{'bad' if bad else 'ok'}-{number}-{counter}"
            body = f'{{"n": {counter}, "worker": {number}}}'.encode()
            signature = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
            headers = {"X-Signature": "0" * 64 if bad else signature, "webhook-id": event_id}
            try:
                async with session.post(
                    url + "/webhooks/generic/load", data=body, headers=headers
                ) as response:
                    answers[event_id] = response.status
            except (TimeoutError, aiohttp.ClientError):
                return

    await asyncio.gather(*(worker(n) for n in range(16)))


async def test_kill_9_under_webhook_load_loses_nothing_answered(tmp_path, reap_daemons):
    answers: dict[str, int] = {}
    async with aiohttp.ClientSession() as session:
        daemon = start(tmp_path)
        await daemon.ready(session, "/readyz")
        loader = asyncio.create_task(load(session, daemon.url, answers))
        deadline = asyncio.get_running_loop().time() + 60
        while sum(1 for s in answers.values() if s == 200) < 300:
            assert asyncio.get_running_loop().time() < deadline, (
                f"fewer than 300 accepted in 60 s: {sorted(set(answers.values()))}"
            )
            await asyncio.sleep(0.01)
        daemon.kill()
        await asyncio.wait_for(loader, 10)

        daemon = start(tmp_path)
        await daemon.ready(session, "/readyz")
        for _ in range(400):
            _, pending = await daemon.api(session, "GET", "/api/inbox?state=pending")
            if not pending["events"]:
                break
            await asyncio.sleep(0.05)
        assert daemon.stop() == 0

    accepted = {i for i, status in answers.items() if status == 200}
    rejected = {i for i, status in answers.items() if status == 401}
    assert len(accepted) >= 300 and rejected
    assert all(i.startswith("ok-") for i in accepted)
    assert all(i.startswith("bad-") for i in rejected)
    stored = {
        row[0].removeprefix("load:")  # generic event ids are namespaced by sender
        for row in query(
            tmp_path / "hub.db", "SELECT event_id FROM events WHERE source = 'generic'"
        )
    }
    assert accepted <= stored, f"{len(accepted - stored)} answered requests were lost"
    assert not any(i.startswith("bad-") for i in stored)
    states = query(
        tmp_path / "hub.db",
        "SELECT d.state, count(*) FROM deliveries d JOIN events e ON e.id = d.event "
        "WHERE e.source = 'generic' GROUP BY d.state",
    )
    assert dict(states) == {"done": len(stored)}
    seen = {
        row[0].removeprefix("load:") for row in query(tmp_path / "seen.db", "SELECT id FROM seen")
    }
    assert seen == stored  # every stored event processed by the handler, none invented
