"""Health diagnostics: the seed's checks, expiry warnings, sync age, and ``check`` output."""

from __future__ import annotations

import asyncio
import sys
import time
from datetime import UTC, datetime, timedelta

from hub.diagnostics import connection_diagnostics
from hub.model import HealthStatus
from hub.store import Store
from plugins.quickbooks.oauth import MAX_GRANT_AGE_S, credentials_from, refresh
from plugins.quickbooks.sandbox import start_sandbox
from tests.quickbooks.conftest import REALM, connect, qb_config, sandbox_config

CONNECTION = f"quickbooks:{REALM}"


def checks(report) -> dict[str, tuple[bool, str]]:
    return {check.name: (check.ok, check.detail) for check in report.checks}


def company_info_requests(sandbox) -> int:
    return sum("/companyinfo/" in r.path for r in sandbox.state.requests)


async def test_a_healthy_company(make_hub, sandbox):
    hub = await make_hub(config=qb_config(sandbox))
    await connect(hub, sandbox.state)
    report = await hub.health.check(CONNECTION)
    assert checks(report)["API reachable"] == (True, "CompanyInfo: Willow Books")
    await hub.engine.run(CONNECTION)
    report = await hub.health.check(CONNECTION)
    assert report.status is HealthStatus.HEALTHY, report
    found = checks(report)
    assert set(found) == {
        "token present",
        "token valid",
        "refresh token",
        "API reachable",
        "last successful sync",
        "last error",
    }
    assert all(ok for ok, _ in found.values())
    assert "rolling expiry" in found["refresh token"][1]


async def test_health_right_after_a_sync_does_not_call_the_api_again(make_hub, sandbox):
    hub = await make_hub(config=qb_config(sandbox))
    await connect(hub, sandbox.state)
    assert (await hub.engine.run(CONNECTION)).state == "succeeded"
    before = len(sandbox.state.requests), company_info_requests(sandbox)
    report = await hub.health.check(CONNECTION)
    assert report.status is HealthStatus.HEALTHY, report
    ok, detail = checks(report)["API reachable"]
    assert ok and detail == f"synced at {hub.connection_state(CONNECTION).last_success_at}"
    assert (len(sandbox.state.requests), company_info_requests(sandbox)) == before

    hub.states.get(CONNECTION).last_success_at = (
        datetime.now(UTC) - timedelta(seconds=hub.settings.health.interval + 1)
    ).isoformat()
    report = await hub.health.check(CONNECTION)  # the sync is too old to prove anything
    assert company_info_requests(sandbox) == before[1] + 1
    assert checks(report)["API reachable"] == (True, "CompanyInfo: Willow Books")


async def test_refresh_token_expiry_warns_ahead_of_time(make_hub):
    async with await start_sandbox(sandbox_config(refresh_token_lifetime=5 * 86400)) as sandbox:
        hub = await make_hub(config=qb_config(sandbox))
        connection = await connect(hub, sandbox.state)
        report = await hub.health.check(CONNECTION)
        assert report.status is HealthStatus.WARNING
        assert checks(report)["refresh token"][0] is False
        assert "expires in 5 days (rolling expiry)" in report.message

        old = time.time() - MAX_GRANT_AGE_S + 3 * 86400  # connected almost five years ago
        await hub.save_credentials(
            connection, {**connection.credentials, "connected_at": old, "refresh_expires_at": None}
        )
        report = await hub.health.check(CONNECTION)
        assert "expires in 3 days (five-year limit, estimated)" in report.message


async def test_the_five_year_limit_is_intuits_figure_once_a_token_answer_stated_it(make_hub):
    config = sandbox_config(refresh_token_max_age=3 * 86400 + 600)
    async with await start_sandbox(config) as sandbox:
        hub = await make_hub(config=qb_config(sandbox))
        connection = await connect(hub, sandbox.state)  # stored without the hard expiry
        sandbox.state.advance_clock(600)  # the grant is older than the hub's connection
        await refresh(hub, connection, rejected=connection.credentials["access_token"])
        report = await hub.health.check(CONNECTION)
        assert report.status is HealthStatus.WARNING
        assert "the refresh token expires in 3 days (five-year limit)" in report.message
        dump = await connection_diagnostics(hub, CONNECTION)
        assert dump["plugin"]["refresh_token_hard_expiry"] == "stated by Intuit"
        assert dump["plugin"]["refresh_token_limit"] == "five-year limit"


async def test_unreachable_api_is_an_error(make_hub, sandbox):
    hub = await make_hub(config=qb_config(sandbox, retry_attempts=2))
    await connect(hub, sandbox.state)
    sandbox.state.fail_next(503, count=2, path="/companyinfo/")
    report = await hub.health.check(CONNECTION)
    assert report.status is HealthStatus.ERROR
    ok, detail = checks(report)["API reachable"]
    assert not ok and detail.startswith("server:")


async def test_stale_sync_and_last_error_warn(make_hub, sandbox):
    hub = await make_hub(config=qb_config(sandbox, cdc_catchup_hours=2, retry_attempts=1))
    await connect(hub, sandbox.state)
    state = hub.states.get(CONNECTION)
    state.last_success_at = (datetime.now(UTC) - timedelta(hours=3)).isoformat()
    report = await hub.health.check(CONNECTION)
    assert report.status is HealthStatus.WARNING and "CDC catch-up overdue" in report.message
    sandbox.state.fail_next(500, count=1, path="/companyinfo/")
    assert (await hub.engine.run(CONNECTION)).state == "failed"
    report = await hub.health.check(CONNECTION)
    assert checks(report)["last error"][0] is False
    assert "the last sync failed (server)" in report.message


async def test_check_command_shows_the_diagnostics(tmp_path, sandbox):
    store = Store(tmp_path / "hub.db")
    pair = sandbox.state.issue_tokens(REALM)
    tokens = {"access_token": pair.access_token, "refresh_token": pair.refresh_token}
    await store.connections.upsert(
        "quickbooks", REALM, "Willow", credentials_from(tokens, REALM), "oauth"
    )
    store.close()
    section = qb_config(sandbox)["integrations"]["quickbooks"]
    lines = [f'{key} = "{value}"' for key, value in section.items() if isinstance(value, str)]
    config = tmp_path / "hub.toml"
    config.write_text(
        f'[store]\npath = "{tmp_path / "hub.db"}"\n[integrations.quickbooks]\n' + "\n".join(lines)
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hub.cli",
        "check",
        "--config",
        str(config),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output = (await proc.communicate())[0].decode()
    assert proc.returncode == 0, output
    assert f"quickbooks         quickbooks:{REALM}  healthy" in output
    for text in ("ok token present", "ok API reachable: CompanyInfo: Willow Books"):
        assert text in output
