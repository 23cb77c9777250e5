"""Test support: ``advisoros-hub serve`` as a child process, for crash and signal tests."""

from __future__ import annotations

import asyncio
import functools
import os
import resource
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from custom_accounting.sandbox import free_port

from hub.store.runs import ACTIVE_RUN_STATES

TOKEN = "daemon-test-token-of-32-characters"
_started: list[subprocess.Popen[bytes]] = []


class Daemon:
    """One daemon on a free port, its database and log in ``folder``.

    :param config: TOML appended after the ``[server]`` and ``[store]`` sections.
    :param env: extra environment (secrets go here, as in production).
    :param port: the port to listen on (default: a free one).
    :param umask: the process's umask (default: this one's).
    :param open_files: the daemon's open-file limit (``RLIMIT_NOFILE``, soft and hard).
    """

    def __init__(
        self,
        folder: Path,
        config: str,
        env: dict[str, str] | None = None,
        port: int = 0,
        umask: int = -1,
        open_files: int | None = None,
    ) -> None:
        self.port = port or free_port()
        self.db = folder / "hub.db"
        self.url = f"http://127.0.0.1:{self.port}"
        path = folder / "hub.toml"
        path.write_text(f'[server]\nport = {self.port}\n[store]\npath = "{self.db}"\n{config}')
        self.log = (folder / "daemon.log").open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hub.cli", "serve", "--config", str(path)],
            env={**os.environ, "HUB_ADMIN__TOKEN": TOKEN, **(env or {})},
            stdout=self.log,
            stderr=subprocess.STDOUT,
            umask=umask,
            preexec_fn=None if open_files is None else functools.partial(_limit_files, open_files),
        )
        _started.append(self.proc)

    def output(self) -> str:
        """What the daemon has written so far (stdout and stderr: its log)."""
        return Path(self.log.name).read_text(errors="replace")

    async def ready(self, session: aiohttp.ClientSession, path: str = "/healthz") -> None:
        """Wait until ``path`` answers 200 (fails if the process exits first)."""
        for _ in range(300):
            try:
                async with session.get(f"{self.url}{path}") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            assert self.proc.poll() is None, "the daemon exited at start"
            await asyncio.sleep(0.05)
        raise AssertionError("the daemon did not become ready")

    async def api(
        self, session: aiohttp.ClientSession, method: str, path: str, **kwargs: Any
    ) -> tuple[int, Any]:
        """Call the admin API with the token; return (status, JSON)."""
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with session.request(method, self.url + path, headers=headers, **kwargs) as r:
            return r.status, await r.json()

    async def wait_run(self, session: aiohttp.ClientSession, run_id: int) -> dict[str, Any]:
        """Poll a sync run until it is no longer running."""
        for _ in range(600):
            _, run = await self.api(session, "GET", f"/api/runs/{run_id}")
            if run["state"] not in ACTIVE_RUN_STATES:
                return dict(run)
            await asyncio.sleep(0.05)
        raise AssertionError("the sync did not finish")

    def kill(self) -> None:
        """SIGKILL: no cleanup at all."""
        self.proc.kill()
        self.proc.wait()

    def stop(self, timeout: float = 15) -> int:
        """SIGTERM and the exit code."""
        self.proc.terminate()
        return self.proc.wait(timeout=timeout)


def _limit_files(limit: int) -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))


@pytest.fixture
def reap_daemons() -> Iterator[None]:
    """Kill any daemon a failing test left running."""
    yield
    while _started:
        proc = _started.pop()
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def query(db: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Rows of ``sql`` on a database another process writes ([] if the table is not there)."""
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql, params).fetchall()
    except sqlite3.OperationalError:
        return []
    finally:
        conn.close()


def alive(pid: int) -> bool:
    """True while process ``pid`` runs (a zombie nobody reaped yet counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"
