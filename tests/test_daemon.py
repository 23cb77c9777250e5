"""The daemon as a process: kill -9 mid-sync then restart, and a clean SIGTERM stop."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import orjson
import pytest
from custom_accounting.sandbox import RunningSandbox, SandboxConfig, free_port, start_sandbox

TOKEN = "daemon-test-token"
TABLE = "records_custom_accounting_transactions"
pytestmark = pytest.mark.slow


@pytest.fixture
async def slow_ledger() -> AsyncIterator[RunningSandbox]:
    """A sandbox slow enough (20 ms a page of 50) to kill the daemon in the middle of a sync."""
    sandbox = await start_sandbox(SandboxConfig(accounts=10, transactions=3000, delay=0.02))
    yield sandbox
    await sandbox.close()


class Daemon:
    """One ``advisoros-hub serve`` child process on a free port."""

    def __init__(self, folder: Path, sandbox: RunningSandbox) -> None:
        self.port = free_port()
        self.db = folder / "hub.db"
        self.config = folder / "hub.toml"
        self.config.write_text(
            f"""
[server]
port = {self.port}
[store]
path = "{self.db}"
[integrations.custom_accounting]
base_url = "{sandbox.base_url}"
page_size = 50
"""
        )
        env = {
            **os.environ,
            "HUB_ADMIN__TOKEN": TOKEN,
            "HUB_INTEGRATIONS__CUSTOM_ACCOUNTING__API_TOKEN": sandbox.config.token,
        }
        self.log = (folder / "daemon.log").open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hub.cli", "serve", "--config", str(self.config)],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.url = f"http://127.0.0.1:{self.port}"

    async def ready(self, session: aiohttp.ClientSession) -> None:
        for _ in range(200):
            try:
                async with session.get(f"{self.url}/healthz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            assert self.proc.poll() is None, "the daemon exited at start"
            await asyncio.sleep(0.05)
        raise AssertionError("the daemon did not become ready")

    async def api(self, session: aiohttp.ClientSession, method: str, path: str, **kw):
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with session.request(method, self.url + path, headers=headers, **kw) as response:
            return response.status, await response.json()

    async def wait_run(self, session: aiohttp.ClientSession, run_id: int) -> dict:
        for _ in range(600):
            _, run = await self.api(session, "GET", f"/api/runs/{run_id}")
            if run["state"] != "running":
                return run
            await asyncio.sleep(0.05)
        raise AssertionError("the sync did not finish")


def stored(db: Path) -> list[tuple[str, str]]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(f"SELECT id, data FROM {TABLE} WHERE deleted_at IS NULL").fetchall()
    except sqlite3.OperationalError:
        return []
    finally:
        conn.close()


async def test_kill_9_mid_sync_then_restart_resumes_to_exact_data(tmp_path, slow_ledger):
    async with aiohttp.ClientSession() as session:
        daemon = Daemon(tmp_path, slow_ledger)
        await daemon.ready(session)
        status, body = await daemon.api(session, "POST", "/api/sync/custom_accounting")
        assert status == 202
        first_run = body["run_id"]
        deadline = time.monotonic() + 30
        while len(stored(daemon.db)) < 600:
            assert time.monotonic() < deadline, "no batches were committed"
            await asyncio.sleep(0.02)
        daemon.proc.kill()  # SIGKILL: no cleanup at all
        daemon.proc.wait()
        partial = len(stored(daemon.db))
        assert 600 <= partial < 3000

        requests_before = slow_ledger.state.requests
        daemon = Daemon(tmp_path, slow_ledger)
        await daemon.ready(session)
        _, crashed = await daemon.api(session, "GET", f"/api/runs/{first_run}")
        assert crashed["state"] == "interrupted"
        status, body = await daemon.api(session, "POST", "/api/sync/custom_accounting")
        run = await daemon.wait_run(session, body["run_id"])
        assert run["state"] == "succeeded", run
        listing_requests = slow_ledger.state.requests - requests_before
        assert listing_requests < 3000 / 50, "the sync started over instead of resuming"
        daemon.proc.send_signal(signal.SIGTERM)
        assert daemon.proc.wait(timeout=10) == 0

    rows = stored(daemon.db)
    source = slow_ledger.state.live_records("transactions")
    assert len(rows) == len(source) == 3000
    assert {i: orjson.loads(d) for i, d in rows} == source


async def test_sigterm_during_a_sync_exits_0_quickly_with_a_valid_cursor(tmp_path, slow_ledger):
    async with aiohttp.ClientSession() as session:
        daemon = Daemon(tmp_path, slow_ledger)
        await daemon.ready(session)
        _, body = await daemon.api(session, "POST", "/api/sync/custom_accounting")
        while len(stored(daemon.db)) < 300:
            await asyncio.sleep(0.02)
        started = time.monotonic()
        daemon.proc.send_signal(signal.SIGTERM)
        assert daemon.proc.wait(timeout=15) == 0
        assert time.monotonic() - started < 8

    conn = sqlite3.connect(daemon.db)
    state = conn.execute("SELECT state FROM sync_runs WHERE id = ?", [body["run_id"]]).fetchone()
    cursor = conn.execute("SELECT cursor FROM cursors WHERE stream = 'transactions'").fetchone()
    conn.close()
    assert state[0] in {"cancelled", "succeeded"}
    # the committed cursor points at the last stored record: resuming from it loses nothing
    after = orjson.loads(cursor[0])["after"]
    index = int(after.split(":")[1])
    assert len(stored(daemon.db)) == index + 1
