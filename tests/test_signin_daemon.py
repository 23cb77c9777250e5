"""Signing in against a real daemon: a short admin token stops it at start; sessions live in
the daemon's memory, so signing out or restarting refuses an old cookie."""

from __future__ import annotations

import os
import subprocess
import sys

import aiohttp
import pytest

from tests.daemon import TOKEN, Daemon

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    ("config", "env", "where"),
    [
        ("", {"HUB_ADMIN__TOKEN": "short-token"}, "environment (HUB_ADMIN__TOKEN): admin.token: "),
        ('[admin]\ntoken = "short-token"\n', {}, "hub.toml: admin.token: "),
    ],
)
def test_a_short_admin_token_is_refused_at_start(tmp_path, config, env, where):
    path = tmp_path / "hub.toml"
    path.write_text(f'[store]\npath = "{tmp_path / "hub.db"}"\n{config}')
    clean = {k: v for k, v in os.environ.items() if not k.upper().startswith("HUB_")}
    started = subprocess.run(
        [sys.executable, "-m", "hub.cli", "serve", "--config", str(path)],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert started.returncode == 1
    (line,) = started.stderr.splitlines()
    assert line.startswith("advisoros-hub: error: ") and where in line
    assert "shorter than 32 characters" in line and "short-token" not in line
    assert not (tmp_path / "hub.db").exists()  # refused before anything was opened


async def test_a_captured_cookie_is_refused_after_logout_and_after_a_restart(
    tmp_path, reap_daemons
):
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar) as browser:
        daemon = Daemon(tmp_path, "")
        await daemon.ready(browser)
        status = f"{daemon.url}/api/status"

        async def sign_in() -> dict[str, str]:
            async with browser.post(
                f"{daemon.url}/admin/login", data={"token": TOKEN}, allow_redirects=False
            ) as response:
                assert response.status == 303
                return {"hub_session": response.cookies["hub_session"].value}

        async def status_with(cookie: dict[str, str]) -> int:
            async with aiohttp.ClientSession(cookies=cookie) as replay, replay.get(status) as r:
                return r.status

        captured = await sign_in()
        assert await status_with(captured) == 200
        async with browser.post(f"{daemon.url}/admin/logout", allow_redirects=False) as out:
            assert out.status == 303
        assert await status_with(captured) == 401

        captured = await sign_in()
        assert daemon.stop() == 0
        daemon = Daemon(tmp_path, "", port=daemon.port)
        await daemon.ready(browser)
        assert await status_with(captured) == 401  # sessions do not survive a restart
