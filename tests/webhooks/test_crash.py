"""Webhooks under load, then ``kill -9``, then a restart: every request answered 2xx is in the
inbox and processed by each handler in the end; nothing answered 401 is stored."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest
from custom_accounting.sandbox import free_port

SECRET = "crash-secret"
TOKEN = "crash-admin"
PLUGINS = Path(__file__).parent / "crash_plugins"
pytestmark = pytest.mark.slow


def start(folder: Path, port: int) -> subprocess.Popen[bytes]:
    config = folder / "hub.toml"
    config.write_text(
        f'[server]\nport = {port}\n[store]\npath = "{folder / "hub.db"}"\n'
        f'[plugins]\ndir = "{PLUGINS}"\n[webhooks.generic.load]\nsecret = "{SECRET}"\n'
    )
    env = {**os.environ, "HUB_ADMIN__TOKEN": TOKEN, "RECORDER_DB": str(folder / "seen.db")}
    log = (folder / "daemon.log").open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "hub.cli", "serve", "--config", str(config)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


async def wait_ready(session: aiohttp.ClientSession, url: str) -> None:
    for _ in range(200):
        try:
            async with session.get(url + "/healthz") as response:
                if response.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.05)
    raise AssertionError("daemon did not start")


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


def query(db: Path, sql: str) -> list[tuple]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


async def test_kill_9_under_webhook_load_loses_nothing_answered(tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    answers: dict[str, int] = {}
    async with aiohttp.ClientSession() as session:
        daemon = start(tmp_path, port)
        await wait_ready(session, url)
        loader = asyncio.create_task(load(session, url, answers))
        while sum(1 for s in answers.values() if s == 200) < 300:
            await asyncio.sleep(0.01)
        daemon.kill()
        daemon.wait()
        await asyncio.wait_for(loader, 10)

        daemon = start(tmp_path, port)
        await wait_ready(session, url)
        headers = {"Authorization": f"Bearer {TOKEN}"}
        for _ in range(400):
            async with session.get(url + "/api/inbox?state=pending", headers=headers) as r:
                if not (await r.json())["events"]:
                    break
            await asyncio.sleep(0.05)
        daemon.terminate()
        assert daemon.wait(timeout=15) == 0

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
