"""Honest readiness of a real daemon: ``/readyz`` answers 503 while its database cannot be
written and is ready again once a write succeeds; a damaged database is reported by
``/readyz`` and by ``advisoros-hub check``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from hub.testing import generic_signature
from tests.daemon import TOKEN, Daemon, query
from tests.damage import damaged_copy, fill_connections

pytestmark = pytest.mark.slow
FAULTS = Path(__file__).parent / "fault_plugins"
SECRET = "readiness-secret"
SENDER = {"HUB_WEBHOOKS__GENERIC__ZAP__SECRET": SECRET}


async def readyz(session: aiohttp.ClientSession, daemon: Daemon) -> tuple[int, dict[str, object]]:
    async with session.get(f"{daemon.url}/readyz") as response:
        return response.status, await response.json()


async def post_webhook(
    session: aiohttp.ClientSession, daemon: Daemon, body: bytes
) -> tuple[int, dict[str, str], dict[str, object]]:
    headers = {"X-Signature": generic_signature(SECRET, body), "Content-Type": "application/json"}
    async with session.post(
        f"{daemon.url}/webhooks/generic/zap", data=body, headers=headers
    ) as response:
        return response.status, dict(response.headers), await response.json()


async def test_readyz_is_503_while_the_disk_is_full_and_ready_after_a_write_succeeds(
    tmp_path, reap_daemons
):
    daemon = Daemon(tmp_path, f'[plugins]\ndir = "{FAULTS}"\n', SENDER)
    big = b'{"pad": "' + b"x" * 200_000 + b'"}'  # needs new pages, whatever the free list holds
    async with aiohttp.ClientSession() as session:
        await daemon.ready(session, "/readyz")
        async with session.post(f"{daemon.url}/faults/max-page-count?value=0") as response:
            assert response.status == 200

        status, headers, answer = await post_webhook(session, daemon, big)
        assert status == 503, answer
        assert headers["Retry-After"] == "5"
        assert "database or disk is full" in str(answer["error"])
        status, ready = await readyz(session, daemon)
        assert status == 503
        assert ready["reasons"] == ["database: cannot be written: database or disk is full"]
        status, _ = await readyz(session, daemon)  # a probe's small write proves nothing here
        assert status == 503

        async with session.post(f"{daemon.url}/faults/max-page-count?value=4294967294") as r:
            assert r.status == 200
        status, _, answer = await post_webhook(session, daemon, big)
        assert (status, answer) == (200, {"received": 1, "duplicates": 0})
        assert await readyz(session, daemon) == (200, {"status": "ready"})
    assert daemon.stop() == 0
    assert len(query(daemon.db, "SELECT id FROM webhook_requests")) == 1


async def test_a_damaged_database_is_reported_by_readyz_and_check(tmp_path, reap_daemons):
    damaged_copy(tmp_path)
    daemon = Daemon(tmp_path, "")
    async with aiohttp.ClientSession() as session:
        await daemon.ready(session)  # alive: it serves, and says why it is not ready
        status, ready = await readyz(session, daemon)
    assert status == 503
    (reason,) = ready["reasons"]
    assert str(reason).startswith("database: damaged: "), reason
    assert daemon.stop() == 0

    check = subprocess.run(
        [sys.executable, "-m", "hub.cli", "check", "--config", str(tmp_path / "hub.toml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.returncode == 1, check.stdout + check.stderr
    (line,) = [line for line in check.stdout.splitlines() if line.startswith("database:")]
    assert line.startswith("database: damaged: ") and line.endswith(f"({tmp_path / 'hub.db'})")


def test_a_database_damaged_where_the_start_reads_is_one_line_not_a_traceback(tmp_path):
    damaged_copy(tmp_path, fill_connections)
    (tmp_path / "hub.toml").write_text(f'[store]\npath = "{tmp_path / "hub.db"}"\n')
    for command in ("check", "serve"):
        run = subprocess.run(
            [sys.executable, "-m", "hub.cli", command, "--config", str(tmp_path / "hub.toml")],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "HUB_ADMIN__TOKEN": TOKEN, "HUB_LOGGING__LEVEL": "error"},
        )
        assert run.returncode == 1, run.stdout + run.stderr
        assert "Traceback" not in run.stderr
        (line,) = [e for e in run.stderr.splitlines() if e.startswith("advisoros-hub:")]
        assert line.startswith(f"advisoros-hub: error: {tmp_path / 'hub.db'}: damaged"), line
