"""The daemon as a process: kill -9 mid-sync then restart, and a clean SIGTERM stop."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import orjson
import pytest
from custom_accounting.sandbox import RunningSandbox, SandboxConfig, free_port, start_sandbox

from tests.daemon import TOKEN, Daemon, query

TABLE = "records_custom_accounting_transactions"
ROOT = Path(__file__).resolve().parents[1]
"""The checkout whose ``hub`` a daemon started from another working directory imports."""
pytestmark = pytest.mark.slow


@pytest.fixture
async def slow_ledger() -> AsyncIterator[RunningSandbox]:
    """A sandbox slow enough (20 ms a page of 50) to kill the daemon in the middle of a sync."""
    sandbox = await start_sandbox(SandboxConfig(accounts=10, transactions=3000, delay=0.02))
    yield sandbox
    await sandbox.close()


def ledger_daemon(folder: Path, sandbox: RunningSandbox) -> Daemon:
    config = f'[integrations.custom_accounting]\nbase_url = "{sandbox.base_url}"\npage_size = 50\n'
    env = {"HUB_INTEGRATIONS__CUSTOM_ACCOUNTING__API_TOKEN": sandbox.config.token}
    return Daemon(folder, config, env)


def stored(db: Path) -> list[tuple[str, str]]:
    return query(db, f"SELECT id, data FROM {TABLE} WHERE deleted_at IS NULL")


async def wait_for_rows(db: Path, count: int) -> None:
    deadline = time.monotonic() + 30
    while len(stored(db)) < count:
        assert time.monotonic() < deadline, "no batches were committed"
        await asyncio.sleep(0.02)


async def test_kill_9_mid_sync_then_restart_resumes_to_exact_data(
    tmp_path, slow_ledger, reap_daemons
):
    async with aiohttp.ClientSession() as session:
        daemon = ledger_daemon(tmp_path, slow_ledger)
        await daemon.ready(session)
        status, body = await daemon.api(session, "POST", "/api/sync/custom_accounting")
        assert status == 202
        first_run = body["run_id"]
        await wait_for_rows(daemon.db, 600)
        daemon.kill()
        partial = len(stored(daemon.db))
        assert 600 <= partial < 3000

        requests_before = slow_ledger.state.requests
        daemon = ledger_daemon(tmp_path, slow_ledger)
        await daemon.ready(session)
        _, crashed = await daemon.api(session, "GET", f"/api/runs/{first_run}")
        assert crashed["state"] == "interrupted"
        status, body = await daemon.api(session, "POST", "/api/sync/custom_accounting")
        run = await daemon.wait_run(session, body["run_id"])
        assert run["state"] == "succeeded", run
        listing_requests = slow_ledger.state.requests - requests_before
        assert listing_requests < 3000 / 50, "the sync started over instead of resuming"
        assert daemon.stop() == 0

    rows = stored(daemon.db)
    source = slow_ledger.state.live_records("transactions")
    assert len(rows) == len(source) == 3000
    assert {i: orjson.loads(d) for i, d in rows} == source


async def test_sigterm_during_a_sync_exits_0_quickly_with_a_valid_cursor(
    tmp_path, slow_ledger, reap_daemons
):
    async with aiohttp.ClientSession() as session:
        daemon = ledger_daemon(tmp_path, slow_ledger)
        await daemon.ready(session)
        _, body = await daemon.api(session, "POST", "/api/sync/custom_accounting")
        await wait_for_rows(daemon.db, 300)
        started = time.monotonic()
        assert daemon.stop() == 0
        assert time.monotonic() - started < 8

    (state,) = query(daemon.db, "SELECT state FROM sync_runs WHERE id = ?", (body["run_id"],))
    (cursor,) = query(daemon.db, "SELECT cursor FROM cursors WHERE stream = 'transactions'")
    assert state[0] in {"cancelled", "succeeded"}
    # the committed cursor points at the last stored record: resuming from it loses nothing
    after = orjson.loads(cursor[0])["after"]
    index = int(after.split(":")[1])
    assert len(stored(daemon.db)) == index + 1


async def test_sigterm_during_a_scheduled_sync_records_how_it_ended(
    tmp_path, slow_ledger, reap_daemons
):
    toml = (
        f'[integrations.custom_accounting]\nbase_url = "{slow_ledger.base_url}"\n'
        "page_size = 50\nsync_interval = 1\n"
    )
    env = {
        "HUB_INTEGRATIONS__CUSTOM_ACCOUNTING__API_TOKEN": slow_ledger.config.token,
        "HUB_SERVER__SHUTDOWN_TIMEOUT": "0.5",  # the sync cannot finish: it gets cancelled
    }
    async with aiohttp.ClientSession() as session:
        daemon = Daemon(tmp_path, toml, env)
        await daemon.ready(session)
        await wait_for_rows(daemon.db, 100)  # a scheduled sync is under way
        assert daemon.stop() == 0
    runs = query(daemon.db, "SELECT trigger, state FROM sync_runs")
    assert ("schedule", "cancelled") in runs
    assert all(state not in ("queued", "running") for _, state in runs)


async def test_a_second_daemon_on_the_same_database_refuses_to_start(tmp_path, reap_daemons):
    import subprocess
    import sys

    async with aiohttp.ClientSession() as session:
        first = Daemon(tmp_path, "")
        await first.ready(session)
        second = subprocess.run(
            [sys.executable, "-m", "hub.cli", "serve", "--config", str(tmp_path / "hub.toml")],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert second.returncode == 1
        assert "another hub daemon is running" in second.stderr
        assert "Traceback" not in second.stderr
        status, _ = await first.api(session, "GET", "/api/status")
        assert status == 200  # the first one is unaffected


@pytest.mark.parametrize("alias", ["symlink", "relative path with .."])
async def test_a_second_daemon_on_another_name_of_the_database_refuses_to_start(
    tmp_path, reap_daemons, alias
):
    (tmp_path / "a").mkdir()
    other = tmp_path / "b"
    other.mkdir()
    if alias == "symlink":
        (other / "hub.db").symlink_to(tmp_path / "a" / "hub.db")
        database = other / "hub.db"
    else:  # from b/ as its working directory
        database = Path("../b/../a/hub.db")
    config = other / "hub.toml"
    config.write_text(f'[server]\nport = {free_port()}\n[store]\npath = "{database}"\n')
    async with aiohttp.ClientSession() as session:
        first = Daemon(tmp_path / "a", "")
        await first.ready(session)
        second = subprocess.run(
            [sys.executable, "-m", "hub.cli", "serve", "--config", str(config)],
            cwd=other,
            env={**os.environ, "HUB_ADMIN__TOKEN": TOKEN, "PYTHONPATH": str(ROOT)},
            capture_output=True,
            text=True,
            timeout=60,
        )
        real = os.path.realpath(first.db)
        assert second.returncode == 1
        assert second.stderr.splitlines() == [
            f"advisoros-hub: error: another hub daemon is running on {real} (see {real}.lock)"
        ]
        status, _ = await first.api(session, "GET", "/api/status")
        assert status == 200  # the first one is unaffected
