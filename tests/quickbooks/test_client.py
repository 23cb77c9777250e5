"""The API client: minorversion, Faults inside a 200, read by id, CDC shape, limits."""

from __future__ import annotations

import asyncio

import pytest
from structlog.testing import capture_logs

from hub.errors import (
    AuthenticationError,
    AuthorizationError,
    RateLimitError,
    ServerError,
    ValidationError,
)
from hub.http import Response
from hub.testing import most_in_window, sync_records
from plugins.quickbooks.client import check_fault, fault_error, page_statement
from plugins.quickbooks.oauth import client_for
from plugins.quickbooks.sandbox import start_sandbox
from tests.quickbooks.conftest import (
    REALM,
    START,
    connect,
    live_rows,
    qb_config,
    sandbox_config,
)


async def api(make_hub, sandbox, **settings):
    hub = await make_hub(config=qb_config(sandbox, **settings))
    connection = await connect(hub, sandbox.state)
    return hub, client_for(hub, connection)


async def test_minorversion_is_sent_on_every_call(make_hub, sandbox):
    hub, client = await api(make_hub, sandbox, minor_version=65)
    assert (await hub.engine.run(f"quickbooks:{REALM}")).state == "succeeded"
    await client.read("Invoice", "1")
    await client.cdc(["Invoice"], START)
    versions = sandbox.state.minor_versions
    assert len(versions) > 25 and set(versions) == {"65"}


async def test_read_by_id_and_not_found(make_hub, sandbox):
    _, client = await api(make_hub, sandbox)
    invoice = await client.read("Invoice", "2")
    assert invoice == sandbox.state.get(REALM, "Invoice", "2")
    sandbox.state.delete(REALM, "Invoice", "2")
    assert await client.read("Invoice", "2") is None
    assert await client.read("Invoice", "99999") is None
    info, now = await client.company_info()
    assert info["CompanyName"] == "Willow Books" and now == START


async def test_cdc_groups_changes_by_entity(make_hub, sandbox):
    _, client = await api(make_hub, sandbox)
    sandbox.state.advance_clock(10)
    sandbox.state.update(REALM, "Customer", "3")
    sandbox.state.delete(REALM, "Invoice", "5")
    found, _ = await client.cdc(["Invoice", "Customer", "Vendor"], START)
    assert [row["Id"] for row in found["Customer"]] == ["3"]
    assert found["Invoice"][0]["status"] == "Deleted"
    assert found["Vendor"] == []


async def test_a_fault_inside_a_200_is_an_error(make_hub, sandbox):
    _, client = await api(make_hub, sandbox)
    sandbox.state.fault_next(count=2, path="/query")  # SystemFault: retried, then data
    rows = await client.query(page_statement("Invoice", 1, 5, False), "Invoice")
    assert [row["Id"] for row in rows] == ["1", "2", "3", "4", "5"]
    statuses = [r.status for r in sandbox.state.requests if r.path.endswith("/query")]
    assert statuses == [200, 200, 200]  # two of them carried a Fault
    body = b'{"Fault":{"Error":[{"Message":"Invalid","Detail":"bad","code":"2010"}],'
    body += b'"type":"ValidationFault"},"time":"2025-06-30T09:00:00-07:00"}'
    with pytest.raises(ValidationError, match="bad"):
        check_fault(Response(200, {}, body, "https://x/query?q=1"))
    check_fault(Response(200, {}, b'{"QueryResponse":{"Fault":1}}', "https://x"))


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        ({"type": "AuthenticationFault", "Error": [{"code": "3200"}]}, AuthenticationError),
        ({"type": "AuthorizationFault", "Error": [{"code": "3100"}]}, AuthorizationError),
        ({"type": "ValidationFault", "Error": [{"code": "3001"}]}, RateLimitError),
        ({"type": "SystemFault", "Error": [{"code": "10000"}]}, ServerError),
        ({"type": "ValidationFault", "Error": [{"code": "6000"}]}, ValidationError),
    ],
)
def test_faults_are_classified(fault, error):
    assert type(fault_error(fault, "GET /x")) is error


async def test_at_most_ten_calls_in_flight_per_company(make_hub, sandbox):
    _, client = await api(make_hub, sandbox, requests_per_minute=5000)
    sandbox.state.delay_next(0.05, count=40)
    await asyncio.gather(*(client.read("Customer", str(i % 20 + 1)) for i in range(40)))
    assert {r.status for r in sandbox.state.requests} == {200}  # Intuit's 429 never came


async def test_a_sync_keeps_every_intuit_limit(make_hub):
    async with await start_sandbox(sandbox_config(rate_limit_per_second=10)) as sandbox:
        settings = {"requests_per_second": 10, "page_size": 4, "streams": ["customers", "invoices"]}
        hub, _ = await api(make_hub, sandbox, **settings)
        records = await sync_records(hub, "quickbooks")
        assert records["invoices"] == live_rows(sandbox.state, "Invoice")
        calls = [r for r in sandbox.state.requests if r.path.startswith("/v3/")]
    assert len(calls) > 25 and {r.status for r in calls} == {200}  # no 429 came
    arrivals = [r.at for r in calls]
    assert most_in_window(arrivals, 1.0) <= 10
    assert most_in_window(arrivals, 60.0) <= 500


async def test_a_429_pauses_the_company_for_the_throttle_wait(make_hub, sandbox):
    hub, _ = await api(make_hub, sandbox, streams=["invoices"], throttle_wait_s=0.3)
    sandbox.state.fail_next(429, path="/query$")
    await sync_records(hub, "quickbooks")
    calls = [r for r in sandbox.state.requests if r.path.startswith("/v3/")]
    assert [r.status for r in calls] == [200, 429, 200]
    assert calls[2].at - calls[1].at >= 0.3  # not the 0.01 s backoff of retry_base_delay


async def test_a_failed_call_quotes_intuit_tid_in_its_log_and_the_last_error(make_hub, sandbox):
    hub, _ = await api(make_hub, sandbox, streams=["invoices"], retry_attempts=2)
    sandbox.state.fail_next(500, count=2, path="/query$")
    with capture_logs() as logs:
        result = await hub.engine.run(f"quickbooks:{REALM}")
    assert result.state == "failed"
    tids = [r.intuit_tid for r in sandbox.state.requests if r.status == 500]
    assert len(tids) == 2 and all(tids)
    calls = ("retrying provider call", "provider call failed")
    assert [line["request_id"] for line in logs if line["event"] in calls] == tids
    last_error = hub.states.get(f"quickbooks:{REALM}").last_error
    assert last_error is not None and f"[intuit_tid {tids[-1]}]" in last_error.message
