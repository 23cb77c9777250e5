"""python-quickbooks, the Intuit ecosystem's Python client, reads the sandbox for every entity
the plugin syncs: its OAuth client (intuit-oauth) refreshes a token at the sandbox's token
endpoint, found through the sandbox's discovery document, and its entity classes query, read
by id and ask CDC over real sockets, from another process, as they would ask Intuit."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from plugins.quickbooks.sandbox import RunningSandbox, start_sandbox
from plugins.quickbooks.sync import SPECS
from tests.quickbooks.conftest import REALM, START, live_rows, sandbox_config

CLIENT = Path(__file__).with_name("intuit_client.py")
READ = [spec for spec in SPECS if spec.kind != "info"]
"""Every stream's entity but CompanyInfo (read by id in its own test)."""


@pytest.fixture
async def sandbox() -> AsyncIterator[RunningSandbox]:
    """The sandbox without throttling (python-quickbooks does not retry a 429)."""
    running = await start_sandbox(sandbox_config(throttle=False))
    yield running
    await running.close()


async def python_quickbooks(sandbox: RunningSandbox, *calls: list[Any]) -> list[dict[str, Any]]:
    """Make ``calls`` ([entity, method, args, kwargs]) with python-quickbooks in a child
    process, against ``sandbox``; one result per call (``ok`` or ``error``)."""
    state = sandbox.state
    job = {
        "discovery": f"{sandbox.oauth_base_url}/.well-known/openid_sandbox_configuration/",
        "api": f"{sandbox.base_url}/v3",
        "client_id": state.config.client_id,
        "client_secret": state.config.client_secret,
        "refresh_token": state.issue_tokens(REALM).refresh_token,
        "realm": REALM,
        "calls": calls,
    }
    # requests-oauthlib refuses plain http unless told it talks to a local test server.
    env = {**os.environ, "OAUTHLIB_INSECURE_TRANSPORT": "1"}
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        str(CLIENT),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    out, err = await child.communicate(json.dumps(job).encode())
    assert child.returncode == 0, err.decode()
    results: list[dict[str, Any]] = json.loads(out)
    return results


def answers(results: list[dict[str, Any]]) -> list[Any]:
    """The ``ok`` answers of ``results``, failing on any error."""
    assert all("ok" in r for r in results), [r for r in results if "ok" not in r]
    return [r["ok"] for r in results]


def stored_key(spec: Any, row: dict[str, Any]) -> str:
    """A python-quickbooks row's id as the hub keys the entity's records."""
    if spec.template:  # {"Invoice": {...}}, as Intuit wraps a recurring template
        ((_, row),) = row.items()
    elif not spec.by_id:
        return f"{row['SourceCurrencyCode']}:{row['AsOfDate']}"
    return str(row["Id"])


async def test_every_synced_entity_is_read_whole_counted_and_by_id(sandbox):
    calls = [
        [spec.entity, "where", [""], {"start_position": 1, "max_results": 1000}] for spec in READ
    ]
    calls += [[spec.entity, "count", [], {}] for spec in READ]
    calls += [[spec.entity, "get", [1], {}] for spec in READ if spec.by_id]
    calls += [["CompanyInfo", "get", [REALM], {}]]
    results = answers(await python_quickbooks(sandbox, *calls))
    rows, counts = results[: len(READ)], results[len(READ) : 2 * len(READ)]
    for spec, got, count in zip(READ, rows, counts, strict=True):
        expected = live_rows(sandbox.state, spec.entity)
        assert {stored_key(spec, row) for row in got} == set(expected), spec.entity
        assert count == len(got) > 0, spec.entity
    by_id = results[2 * len(READ) : -1]
    assert [row["Id"] for row in by_id] == ["1"] * len(by_id)
    assert results[-1]["CompanyName"] == "Willow Books"
    assert [r.grant_type for r in sandbox.state.token_requests] == ["refresh_token"]


async def test_filters_ordering_and_paging(sandbox):
    sandbox.state.deactivate(REALM, "Customer", "4")
    inactive, newest, page, chosen, active = answers(
        await python_quickbooks(
            sandbox,
            ["Customer", "filter", [], {"Active": False}],
            [
                "Invoice",
                "where",
                [""],
                {"order_by": "MetaData.LastUpdatedTime DESC", "max_results": 3},
            ],
            ["Invoice", "where", [""], {"order_by": "Id", "start_position": 11, "max_results": 5}],
            ["Vendor", "choose", [["2", "5"]], {}],
            ["Customer", "all", [], {}],
        )
    )
    assert [c["Id"] for c in inactive] == ["4"]
    assert [i["Id"] for i in newest] == ["57", "56", "55"]
    assert [i["Id"] for i in page] == ["11", "12", "13", "14", "15"]
    assert sorted(v["Id"] for v in chosen) == ["2", "5"]
    assert "4" not in {c["Id"] for c in active}  # default queries leave inactive rows out


async def test_cdc_serves_the_new_entities_and_refuses_what_intuit_does_not_serve(sandbox):
    state = sandbox.state
    state.advance_clock(60)
    state.update(REALM, "Budget", "1", {"Name": "Revised Budget"})
    state.update(REALM, "Attachable", "2", {"Note": "re-scanned"})
    state.create(REALM, "CompanyCurrency", {"Code": "CHF", "Name": "Swiss Franc"})
    since = (START + timedelta(seconds=30)).isoformat()
    refusals = [
        ["", "cdc", [[entity], since], {}] for entity in ("TaxRate", "TaxAgency", "TimeActivity")
    ]
    changed, *refused = await python_quickbooks(
        sandbox, ["", "cdc", [["Budget", "Attachable", "CompanyCurrency"], since], {}], *refusals
    )
    assert {name: [row["Id"] for row in rows] for name, rows in changed["ok"].items()} == {
        "Budget": ["1"],
        "Attachable": ["2"],
        "CompanyCurrency": ["4"],
    }
    for entity, answer in zip(("TaxRate", "TaxAgency", "TimeActivity"), refused, strict=True):
        assert answer["error"] == "UnsupportedException", answer
        assert answer["code"] == 500
        assert answer["detail"] == f"Operation cdc is not supported for entity {entity}."
