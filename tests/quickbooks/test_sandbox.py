"""Tests of the QuickBooks Online sandbox: wire shapes, paging, CDC, OAuth, throttling, faults."""

from __future__ import annotations

import asyncio
import base64
import json
import math
import random
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta, timezone
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from plugins.quickbooks._sandbox_data import answer_name
from plugins.quickbooks._sandbox_query import parse_query
from plugins.quickbooks.sandbox import (
    STATE_KEY,
    CompanySpec,
    SandboxConfig,
    SandboxState,
    create_app,
    sign_intuit_webhook,
    start_sandbox,
)
from tests.quickbooks.conftest import FAST, INTUIT_SPECS

TZ = timezone(timedelta(hours=-7))
START = datetime(2025, 6, 30, 9, 0, tzinfo=TZ)
REALM = "9130350000000001"
OTHER_REALM = "9130350000000002"
SMALL = {"Customer": 23, "Invoice": 57, "Vendor": 9, "Item": 5}
REDIRECT = "https://hub.example/callback"
ACCOUNTING = "com.intuit.quickbooks.accounting"
XS = "{http://www.w3.org/2001/XMLSchema}"

Client = TestClient[web.Request, web.Application]


def make_config(**overrides: Any) -> SandboxConfig:
    """A frozen-clock sandbox with two small companies (Intuit's limits, but per second)."""
    companies = (CompanySpec(REALM, counts=SMALL), CompanySpec(OTHER_REALM, seed=7))
    settings: dict[str, Any] = {"companies": companies, "start_time": START, "freeze_clock": True}
    settings["rate_limit_per_second"] = FAST
    return SandboxConfig(**{**settings, **overrides})


def specs_dir() -> Path:
    """Intuit's published schemas and SDK test documents, vendored in ``tests/specs/intuit``."""
    return INTUIT_SPECS


class Api:
    """A QuickBooks API caller bound to a test client, a realm and an access token."""

    def __init__(self, client: Client, realm: str = REALM) -> None:
        self.client = client
        self.state: SandboxState = client.app[STATE_KEY]
        self.realm = realm
        self.token = self.state.issue_tokens(realm).access_token

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}

    async def get(self, path: str, **params: str) -> tuple[int, Any]:
        url = f"/v3/company/{self.realm}/{path}"
        async with self.client.get(url, params=params, headers=self.headers()) as response:
            return response.status, await response.json(content_type=None)

    async def query(self, statement: str) -> tuple[int, Any]:
        return await self.get("query", query=statement, minorversion="75")


@pytest.fixture
async def client(aiohttp_client: Callable[..., Awaitable[Client]]) -> Client:
    return await aiohttp_client(create_app(make_config()))


@pytest.fixture
def api(client: Client) -> Api:
    return Api(client)


async def page_through(api: Api, statement: str, size: int) -> list[dict[str, Any]]:
    """Every row of ``statement`` fetched with STARTPOSITION/MAXRESULTS paging."""
    rows: list[dict[str, Any]] = []
    start = 1
    while True:
        status, body = await api.query(f"{statement} STARTPOSITION {start} MAXRESULTS {size}")
        assert status == 200
        page = body["QueryResponse"]
        if not page:
            return rows
        entity = next(k for k in page if k not in ("startPosition", "maxResults"))
        assert page["startPosition"] == start
        assert page["maxResults"] == len(page[entity]) <= size
        rows.extend(page[entity])
        start += size


# --------------------------------------------------------------------------- query


async def test_paging_returns_every_entity_exactly_once(api: Api) -> None:
    state = api.state
    state.delete(REALM, "Customer", "4")
    state.delete(REALM, "Customer", "5")
    state.update(REALM, "Customer", "9", {"DisplayName": "Renamed Co"})
    created = state.create(REALM, "Customer", {"DisplayName": "Brand New LLC"})
    rows = await page_through(api, "select * from Customer", size=4)
    ids = [int(row["Id"]) for row in rows]
    expected = [i for i in range(1, 24) if i not in (4, 5)] + [int(created["Id"])]
    assert ids == expected
    assert next(r for r in rows if r["Id"] == "9")["DisplayName"] == "Renamed Co"


async def test_paging_by_last_updated_time_and_descending(api: Api) -> None:
    api.state.advance_clock(60)
    api.state.update(REALM, "Customer", "2")
    by_time = await page_through(api, "SELECT * FROM Customer ORDERBY MetaData.LastUpdatedTime", 5)
    assert [r["Id"] for r in by_time][-1] == "2"
    times = [r["MetaData"]["LastUpdatedTime"] for r in by_time]
    assert times == sorted(times)
    descending = await page_through(api, "select * from Customer order by Id desc", 6)
    assert [int(r["Id"]) for r in descending] == list(range(23, 0, -1))


async def test_where_last_updated_time_filters_match_a_brute_force_scan(api: Api) -> None:
    state = api.state
    state.advance_clock(5)
    state.update(REALM, "Invoice", "3")
    every = [state.get(REALM, "Invoice", str(i)) for i in range(1, 58)]
    cut = every[30]["MetaData"]["LastUpdatedTime"]
    keeps: dict[str, Callable[[str], bool]] = {
        ">": lambda t: t > cut,
        ">=": lambda t: t >= cut,
        "<": lambda t: t < cut,
        "<=": lambda t: t <= cut,
    }
    for op, keep in keeps.items():
        rows = await page_through(
            api, f"select * from Invoice where Metadata.LastUpdatedTime {op} '{cut}'", 10
        )
        expected = {r["Id"] for r in every if keep(r["MetaData"]["LastUpdatedTime"])}
        assert {r["Id"] for r in rows} == expected, op
    _, body = await api.query(
        f"select * from Invoice where MetaData.LastUpdatedTime > '{START.date().isoformat()}'"
    )
    assert [r["Id"] for r in body["QueryResponse"]["Invoice"]] == ["3"]


async def test_id_filters_count_and_empty_results(api: Api) -> None:
    _, body = await api.query("select * from Invoice where Id = '7'")
    assert [r["Id"] for r in body["QueryResponse"]["Invoice"]] == ["7"]
    _, body = await api.query("Select * From Invoice Where Id IN ('9', '2', '999')")
    assert [r["Id"] for r in body["QueryResponse"]["Invoice"]] == ["2", "9"]
    _, body = await api.query("select count(*) from Invoice")
    assert body["QueryResponse"] == {"totalCount": 57}
    api.state.delete(REALM, "Invoice", "1")
    _, body = await api.query("select count(*) from Invoice")
    assert body["QueryResponse"] == {"totalCount": 56}
    url = f"/v3/company/{REALM}/query"
    statement = "select * from Invoice where Id = '7'"
    async with api.client.post(url, data=statement, headers=api.headers()) as response:
        assert (await response.json())["QueryResponse"]["Invoice"][0]["Id"] == "7"
    status, body = await api.query("select * from Invoice STARTPOSITION 500")
    assert (status, body["QueryResponse"]) == (200, {})
    assert body["time"].startswith("2025-06-30T09:00:00.000-07:00")


async def test_maxresults_is_capped_at_1000(
    aiohttp_client: Callable[..., Awaitable[Client]],
) -> None:
    config = make_config(companies=(CompanySpec(REALM, counts={"Class": 1200}),))
    api = Api(await aiohttp_client(create_app(config)))
    _, body = await api.query("select * from Class maxresults 1200")
    assert body["QueryResponse"]["maxResults"] == 1000
    assert len(body["QueryResponse"]["Class"]) == 1000


@pytest.mark.parametrize(
    "statement",
    [
        "select * frm Invoice",
        "select from Invoice",
        "select * from Invoice where",
        "delete Invoice",
    ],
)
async def test_malformed_query_answers_intuit_validation_fault(api: Api, statement: str) -> None:
    status, body = await api.query(statement)
    assert status == 400
    error = body["Fault"]["Error"][0]
    assert body["Fault"]["type"] == "ValidationFault"
    assert (error["code"], error["Message"]) == ("4000", "Error parsing query")
    assert error["Detail"].startswith("QueryParserError:")
    assert "time" in body


async def test_read_by_id_company_info_and_object_not_found(api: Api) -> None:
    status, body = await api.get("invoice/12", minorversion="75")
    assert status == 200
    assert body["Invoice"] == api.state.get(REALM, "Invoice", "12")
    status, body = await api.get(f"companyinfo/{REALM}")
    assert status == 200 and body["CompanyInfo"]["Id"] == "1"
    _, queried = await api.query("select * from CompanyInfo")
    assert queried["QueryResponse"]["CompanyInfo"] == [body["CompanyInfo"]]
    api.state.delete(REALM, "Invoice", "12")
    for path in ("invoice/12", "invoice/9999", "customer/abc"):
        status, body = await api.get(path)
        assert status == 400
        error = body["Fault"]["Error"][0]
        assert (error["code"], error["Message"]) == ("610", "Object Not Found")


async def test_list_entities_are_active_only_by_default(api: Api) -> None:
    api.state.deactivate(REALM, "Customer", "2")
    _, body = await api.query("select count(*) from Customer")
    assert body["QueryResponse"]["totalCount"] == 22
    _, body = await api.query("select * from Customer where Active = false")
    assert [r["Id"] for r in body["QueryResponse"]["Customer"]] == ["2"]
    _, body = await api.query("select count(*) from Customer where Active in (true, false)")
    assert body["QueryResponse"]["totalCount"] == 23
    assert (await api.get("customer/2"))[1]["Customer"]["Active"] is False
    with pytest.raises(ValueError):
        api.state.deactivate(REALM, "Invoice", "1")


@pytest.mark.parametrize("seed", range(6))
async def test_query_engine_matches_brute_force_under_mutations(seed: int) -> None:
    rng = random.Random(seed)
    state = SandboxState(make_config())
    for _ in range(rng.randrange(1, 12)):
        state.advance_clock(rng.randrange(1, 5))
        action = rng.choice(("update", "delete", "create"))
        live = [str(i) for i in range(1, 70) if _exists(state, str(i))]
        if action == "create":
            state.create(REALM, "Invoice")
        else:
            getattr(state, action)(REALM, "Invoice", rng.choice(live))
    rows = [state.get(REALM, "Invoice", str(i)) for i in range(1, 80) if _exists(state, str(i))]
    cut = rng.choice(rows)["MetaData"]["LastUpdatedTime"]
    for order, key in (("Id", lambda r: int(r["Id"])), ("MetaData.LastUpdatedTime", _time_key)):
        for direction in ("asc", "desc"):
            statement = f"select * from Invoice where Metadata.LastUpdatedTime >= '{cut}'"
            statement += f" orderby {order} {direction}"
            size = rng.randrange(1, 9)
            plan = parse_query(f"{statement} startposition 1 maxresults 1000", state.tz)
            _, page = state.company(REALM).select(plan)
            expected = sorted(
                (r for r in rows if r["MetaData"]["LastUpdatedTime"] >= cut),
                key=key,
                reverse=direction == "desc",
            )
            got = [state.company(REALM).tables["Invoice"].render(i) for i in page]
            assert got == expected, (order, direction)
            for start in range(1, len(expected) + 2, size):
                plan = parse_query(f"{statement} startposition {start} maxresults {size}", state.tz)
                _, page = state.company(REALM).select(plan)
                assert [str(i + 1) for i in page] == [
                    r["Id"] for r in expected[start - 1 : start - 1 + size]
                ]


def _exists(state: SandboxState, entity_id: str) -> bool:
    try:
        state.get(REALM, "Invoice", entity_id)
    except KeyError:
        return False
    return True


def _time_key(row: dict[str, Any]) -> tuple[str, int]:
    return row["MetaData"]["LastUpdatedTime"], int(row["Id"])


async def test_generation_is_deterministic_and_realm_specific() -> None:
    first, second = SandboxState(make_config()), SandboxState(make_config())
    assert first.get(REALM, "Invoice", "3") == second.get(REALM, "Invoice", "3")
    assert first.get(REALM, "Customer", "3") != first.get(OTHER_REALM, "Customer", "3")
    invoice = first.get(REALM, "Invoice", "3")
    lines = [line for line in invoice["Line"] if line["DetailType"] == "SalesItemLineDetail"]
    assert math.isclose(sum(line["Amount"] for line in lines), invoice["TotalAmt"])
    customer = first.get(REALM, "Customer", invoice["CustomerRef"]["value"])
    assert customer["DisplayName"] == invoice["CustomerRef"]["name"]


async def test_records_minorversion_and_requires_json(api: Api) -> None:
    await api.get("invoice/1", minorversion="65")
    await api.get("invoice/1")
    assert api.state.minor_versions == ["65", None]
    headers = {"Authorization": f"Bearer {api.token}"}
    async with api.client.get(f"/v3/company/{REALM}/invoice/1", headers=headers) as response:
        assert response.status == 406


async def test_prerendered_pages_are_served_and_invalidated(
    aiohttp_client: Callable[..., Awaitable[Client]],
) -> None:
    api = Api(await aiohttp_client(create_app(make_config(prerender=True))))
    assert await api.state.prerender(REALM, "Invoice", page_size=20) == 3
    assert api.state.prerendered_pages == 3
    rows = await page_through(api, "select * from Invoice", 20)
    assert len(rows) == 57 and api.state.prerendered_pages == 4  # + the empty last page
    api.state.update(REALM, "Invoice", "2", {"PrivateNote": "changed"})
    assert api.state.prerendered_pages == 0
    _, body = await api.query("select * from Invoice maxresults 20")
    assert body["QueryResponse"]["Invoice"][1]["PrivateNote"] == "changed"


# --------------------------------------------------------------------------- CDC


async def test_cdc_shape_with_updates_and_deletions(api: Api) -> None:
    state = api.state
    state.advance_clock(30)
    state.update(REALM, "Customer", "3", {"DisplayName": "Changed"})
    state.delete(REALM, "Invoice", "5")
    since = (START + timedelta(seconds=1)).isoformat()
    status, body = await api.get("cdc", entities="Invoice,Customer", changedSince=since)
    assert status == 200 and "time" in body
    blocks = body["CDCResponse"][0]["QueryResponse"]
    assert [next(iter(block)) for block in blocks] == ["Invoice", "Customer"]
    assert blocks[0] == {
        "Invoice": [
            {
                "Id": "5",
                "status": "Deleted",
                "domain": "QBO",
                "MetaData": {"LastUpdatedTime": "2025-06-30T09:00:30-07:00"},
            }
        ],
        "startPosition": 1,
        "maxResults": 1,
    }
    assert blocks[1]["Customer"][0]["DisplayName"] == "Changed"
    assert blocks[1]["Customer"][0]["SyncToken"] != "0"
    _, body = await api.get("cdc", entities="Vendor", changedSince=since)
    assert body["CDCResponse"][0]["QueryResponse"] == [{}]


def cdc_rows(body: Any) -> list[tuple[str, dict[str, Any]]]:
    """(entity, object) pairs of a CDC response, in response order."""
    blocks = body["CDCResponse"][0]["QueryResponse"]
    return [
        (name, row)
        for block in blocks
        for name, rows in block.items()
        if isinstance(rows, list)
        for row in rows
    ]


async def test_cdc_orders_and_caps_as_intuit_documents(
    aiohttp_client: Callable[..., Awaitable[Client]],
) -> None:
    counts = {"Invoice": 700, "Customer": 600}
    config = make_config(companies=(CompanySpec(REALM, counts=counts),), history_days=20)
    api = Api(await aiohttp_client(create_app(config)))
    api.state.delete(REALM, "Invoice", "3")  # the oldest change of all, but deleted
    since = (START - timedelta(days=25)).isoformat()
    _, body = await api.get("cdc", entities="Customer,Invoice", changedSince=since)
    got = cdc_rows(body)
    assert len(got) == 1000  # the cap counts over all entities asked
    # grouped by type in the order asked, each by LastUpdatedTime: Customer fills 600 ...
    assert [name for name, _ in got] == ["Customer"] * 600 + ["Invoice"] * 400
    for name in ("Customer", "Invoice"):
        stamps = [row["MetaData"]["LastUpdatedTime"] for n, row in got if n == name]
        assert stamps == sorted(stamps)
    # ... and the deleted Invoice 3 comes after every active one: the cap cut it off
    assert ("Invoice", "3") not in {(name, row["Id"]) for name, row in got}
    _, body = await api.get("cdc", entities="Invoice", changedSince=since)
    got = cdc_rows(body)
    assert len(got) == 700 and got[-1][1] == {
        "Id": "3",
        "status": "Deleted",
        "domain": "QBO",
        "MetaData": {"LastUpdatedTime": START.isoformat()},
    }


async def test_cdc_rejects_changed_since_older_than_30_days(api: Api) -> None:
    since = (START - timedelta(days=29)).isoformat()
    assert (await api.get("cdc", entities="Invoice", changedSince=since))[0] == 200
    status, body = await api.get("cdc", entities="Invoice,TaxCode", changedSince=since)
    assert status == 400 and body["Fault"]["Error"][0]["Message"] == "Unsupported Operation"
    status, body = await api.get("cdc", entities="Invoice", changedSince="last tuesday")
    assert status == 400 and body["Fault"]["Error"][0]["code"] == "2010"
    api.state.set_clock(START + timedelta(days=2))
    api.token = api.state.issue_tokens(REALM).access_token  # the old one expired meanwhile
    status, body = await api.get("cdc", entities="Invoice", changedSince=since)
    assert status == 400
    error = body["Fault"]["Error"][0]
    assert error["code"] == "500" and "older than fixed days" in error["Detail"]
    status, body = await api.get("cdc", entities="Invoice")
    assert status == 400 and body["Fault"]["Error"][0]["code"] == "2020"


async def test_answers_name_entities_as_intuit_does(api: Api) -> None:
    since = (START - timedelta(days=29)).isoformat()
    for entity in ("CreditCardPayment", "RecurringTransaction", "ExchangeRate"):
        api.state.update(REALM, entity, "1", {})
    _, queried = await api.query("select * from CreditCardPayment")
    _, read = await api.get("creditcardpayment/1")
    _, changed = await api.get("cdc", entities="CreditCardPayment", changedSince=since)
    (block,) = changed["CDCResponse"][0]["QueryResponse"]
    assert "CreditCardPayment" not in queried["QueryResponse"]  # its XSD element's name
    assert queried["QueryResponse"]["CreditCardPaymentTxn"][0] == read["CreditCardPaymentTxn"]
    assert [row["Id"] for row in block["CreditCardPaymentTxn"]] == ["1"]
    _, templates = await api.query("select * from RecurringTransaction")
    first = templates["QueryResponse"]["RecurringTransaction"][0]
    assert list(first) == ["Invoice"] and first["Invoice"]["RecurringInfo"]["Active"] is True
    assert (await api.get("recurringtransaction/1"))[1]["RecurringTransaction"] == first
    _, rates = await api.query("select * from ExchangeRate")
    rate = rates["QueryResponse"]["ExchangeRate"][0]
    assert "Id" not in rate and set(rate["MetaData"]) == {"LastUpdatedTime"}
    status, body = await api.get("exchangerate/1")  # no Id to read an exchange rate by
    assert status == 400 and body["Fault"]["Error"][0]["Message"] == "Unsupported Operation"
    for entity in ("TaxRate", "TaxAgency", "TimeActivity", "TaxCode"):
        status, body = await api.get("cdc", entities=f"Invoice,{entity}", changedSince=since)
        error = body["Fault"]["Error"][0]
        assert (status, error["code"], error["Message"]) == (400, "500", "Unsupported Operation")
        assert error["Detail"] == f"Operation cdc is not supported for entity {entity}."


# --------------------------------------------------------------------------- OAuth


def basic(config: SandboxConfig, secret: str = "") -> dict[str, str]:
    raw = f"{config.client_id}:{secret or config.client_secret}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


async def authorize(client: Client, scope: str = ACCOUNTING) -> dict[str, str]:
    config = client.app[STATE_KEY].config
    params = {
        "client_id": config.client_id,
        "response_type": "code",
        "scope": scope,
        "redirect_uri": REDIRECT,
        "state": "xyz",
    }
    async with client.get("/connect/oauth2", params=params, allow_redirects=False) as response:
        assert response.status == 302
        location = urlsplit(response.headers["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == REDIRECT
    return {k: v[0] for k, v in parse_qs(location.query).items()}


async def token_call(client: Client, form: dict[str, str], secret: str = "") -> tuple[int, Any]:
    headers = basic(client.app[STATE_KEY].config, secret)
    async with client.post("/oauth2/v1/tokens/bearer", data=form, headers=headers) as response:
        return response.status, await response.json()


async def test_authorization_code_exchange_matches_intuit_shape(client: Client) -> None:
    redirect = await authorize(client, f"{ACCOUNTING} openid")
    assert redirect["state"] == "xyz" and redirect["realmId"] == REALM
    form = {"grant_type": "authorization_code", "code": redirect["code"], "redirect_uri": REDIRECT}
    status, body = await token_call(client, form)
    assert status == 200
    sample = json.loads((specs_dir() / "oauth" / "success_token_response.json").read_text())
    assert set(body) == set(sample)
    assert body["token_type"] == "bearer" and body["expires_in"] == 3600
    assert isinstance(body["x_refresh_token_expires_in"], int)
    assert (await token_call(client, form))[1]["error"] == "invalid_grant"  # code reused
    redirect = await authorize(client)
    form["code"] = redirect["code"]
    status, body = await token_call(client, form)
    assert status == 200 and set(body) == set(sample) - {"id_token"}
    status, body = await token_call(client, form, secret="wrong")
    assert (status, body["error"]) == (401, "invalid_client")


async def test_authorize_page_errors_and_realm_choice(client: Client) -> None:
    state = client.app[STATE_KEY]
    state.authorize_realm = OTHER_REALM
    assert (await authorize(client))["realmId"] == OTHER_REALM
    state.authorize_error = "access_denied"
    assert await authorize(client) == {"state": "xyz", "error": "access_denied"}
    params = {"client_id": "someone-else", "redirect_uri": REDIRECT, "response_type": "code"}
    async with client.get("/connect/oauth2", params=params, allow_redirects=False) as response:
        assert response.status == 400


async def test_refresh_rotation_reuse_revoke_and_counting(client: Client) -> None:
    state = client.app[STATE_KEY]
    first = state.issue_tokens(REALM)
    status, body = await token_call(
        client, {"grant_type": "refresh_token", "refresh_token": first.refresh_token}
    )
    assert status == 200 and body["refresh_token"] != first.refresh_token
    reused = await token_call(
        client, {"grant_type": "refresh_token", "refresh_token": first.refresh_token}
    )
    assert (reused[0], reused[1]["error"]) == (400, "invalid_grant")
    assert [r.grant_type for r in state.token_requests] == ["refresh_token", "refresh_token"]
    api = Api(client)
    api.token = body["access_token"]
    assert (await api.get("invoice/1"))[0] == 200
    headers = {**basic(state.config), "Content-Type": "application/json"}
    payload = json.dumps({"token": body["refresh_token"]})
    async with client.post("/v2/oauth2/tokens/revoke", data=payload, headers=headers) as response:
        assert response.status == 200
    assert (await api.get("invoice/1"))[0] == 401
    after = await token_call(
        client, {"grant_type": "refresh_token", "refresh_token": body["refresh_token"]}
    )
    assert after == (
        400,
        {"error": "invalid_grant", "error_description": "The refresh token was revoked"},
    )


async def test_expired_and_unknown_tokens_get_authentication_fault(api: Api) -> None:
    api.state.advance_clock(3601)
    status, body = await api.get("invoice/1")
    assert status == 401
    error = body["fault"]["error"][0]
    assert body["fault"]["type"] == "AUTHENTICATION"
    assert error["message"] == "message=AuthenticationFailed; errorCode=003200; statusCode=401"
    assert error["code"] == "3200" and error["detail"].startswith("Token expired")
    api.token = api.state.issue_tokens(REALM).access_token
    assert (await api.get("invoice/1"))[0] == 200
    api.state.expire_access_tokens()
    assert (await api.get("invoice/1"))[0] == 401
    api.token = "not-a-token"
    assert (await api.get("invoice/1"))[0] == 401
    api.token = api.state.issue_tokens(OTHER_REALM).access_token
    status, body = await api.get("invoice/1")
    assert status == 403 and body["fault"]["error"][0]["code"] == "3100"


# --------------------------------------------------------------------------- throttling


async def test_more_than_ten_concurrent_requests_are_throttled(api: Api) -> None:
    api.state.delay_next(0.3, count=10, path="/query")
    results = await asyncio.gather(*(api.query("select * from Term") for _ in range(12)))
    statuses = sorted(status for status, _ in results)
    assert statuses == [200] * 10 + [429] * 2
    fault = next(body for status, body in results if status == 429)["Fault"]
    assert fault["Error"][0]["code"] == "3001" and fault["type"] == "SERVICE"
    assert "ThrottleExceeded" in fault["Error"][0]["Message"]


async def test_more_than_ten_requests_in_a_second_are_throttled(
    aiohttp_client: Callable[..., Awaitable[Client]],
) -> None:
    api = Api(await aiohttp_client(create_app(make_config(rate_limit_per_second=10))))
    statuses = [(await api.get("term/1"))[0] for _ in range(11)]
    assert statuses == [200] * 10 + [429]
    requests = [r for r in api.state.requests if r.path.startswith("/v3/")]
    assert requests[-1].at - requests[0].at < 1  # all eleven arrived within one second


async def test_per_minute_limit_and_switching_throttling_off(
    aiohttp_client: Callable[..., Awaitable[Client]],
) -> None:
    limited = Api(await aiohttp_client(create_app(make_config(rate_limit_per_minute=5))))
    statuses = [(await limited.get("term/1"))[0] for _ in range(6)]
    assert statuses == [200] * 5 + [429]
    free = Api(await aiohttp_client(create_app(make_config(throttle=False))))
    free.state.delay_next(0.2, count=15)
    results = await asyncio.gather(*(free.get("term/1") for _ in range(15)))
    assert {status for status, _ in results} == {200}


# --------------------------------------------------------------------------- fault injection


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_injected_server_errors(api: Api, status: int) -> None:
    api.state.fail_next(status, count=2, path="/invoice/")
    assert (await api.get("customer/1"))[0] == 200
    url = f"/v3/company/{REALM}/invoice/1"
    for _ in range(2):
        async with api.client.get(url, headers=api.headers()) as response:
            assert response.status == status
    assert (await api.get("invoice/1"))[0] == 200


async def test_injected_429_with_retry_after(api: Api) -> None:
    api.state.fail_next(429, retry_after=2)
    async with api.client.get(f"/v3/company/{REALM}/term/1", headers=api.headers()) as response:
        assert response.status == 429 and response.headers["Retry-After"] == "2"
        body = await response.json()
    assert body["Fault"]["Error"][0]["code"] == "3001"


async def test_injected_delay_drop_and_fault_body(api: Api) -> None:
    api.state.delay_next(0.2)
    began = time.monotonic()
    assert (await api.get("term/1"))[0] == 200
    assert time.monotonic() - began >= 0.2
    api.state.drop_next(path="/oauth2/")
    assert (await api.get("term/1"))[0] == 200
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await token_call(api.client, {"grant_type": "refresh_token", "refresh_token": "x"})
    assert api.state.token_requests[-1].status is None
    api.state.fail_next(500, count=5)
    api.state.clear_faults()
    assert (await api.get("term/1"))[0] == 200
    api.state.fault_next()
    status, body = await api.get("term/1")
    assert status == 200 and body["Fault"]["type"] == "SystemFault"
    assert (await api.get("term/1"))[1]["Term"]["Id"] == "1"


async def test_dropped_connection_on_a_real_server() -> None:
    async with await start_sandbox(make_config()) as sandbox:
        token = sandbox.state.issue_tokens(REALM).access_token
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        url = f"{sandbox.base_url}/v3/company/{REALM}/term/1"
        async with aiohttp.ClientSession() as session:
            sandbox.state.drop_next()  # aiohttp retries an idempotent request once by itself
            async with session.get(url, headers=headers) as response:
                assert response.status == 200
            sandbox.state.drop_next(count=2)
            with pytest.raises(aiohttp.ServerDisconnectedError):
                await session.get(url, headers=headers)
        statuses = [record.status for record in sandbox.state.requests]
        assert statuses == [None, 200, None, None]


async def test_api_and_oauth_live_on_separate_base_urls() -> None:
    async with await start_sandbox(make_config()) as sandbox, aiohttp.ClientSession() as session:
        assert sandbox.base_url != sandbox.oauth_base_url
        assert sandbox.token_url == f"{sandbox.oauth_base_url}/oauth2/v1/tokens/bearer"
        assert sandbox.authorize_url == f"{sandbox.oauth_base_url}/connect/oauth2"
        assert sandbox.revoke_url == f"{sandbox.oauth_base_url}/v2/oauth2/tokens/revoke"
        refresh = sandbox.state.issue_tokens(REALM).refresh_token
        form = {"grant_type": "refresh_token", "refresh_token": refresh}
        headers = basic(sandbox.state.config)
        wrong = f"{sandbox.base_url}/oauth2/v1/tokens/bearer"
        async with session.post(wrong, data=form, headers=headers) as response:
            assert response.status == 404
        async with session.post(sandbox.token_url, data=form, headers=headers) as response:
            assert response.status == 200
            token = (await response.json())["access_token"]
        api_headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        for base, expected in ((sandbox.oauth_base_url, 404), (sandbox.base_url, 200)):
            url = f"{base}/v3/company/{REALM}/term/1"
            async with session.get(url, headers=api_headers) as response:
                assert response.status == expected


# --------------------------------------------------------------------------- webhooks


def test_signature_matches_intuit_vectors() -> None:
    vectors = json.loads((specs_dir() / "webhook-vectors.json").read_text())
    for vector in vectors["legacy_format"]:
        body = vector["body"].encode()
        assert sign_intuit_webhook(body, vector["verifier_token"]) == vector["intuit_signature"]


async def test_send_webhook_classic_and_cloudevents(
    api: Api, aiohttp_server: Callable[..., Awaitable[TestServer]]
) -> None:
    received: list[tuple[bytes, str]] = []

    async def hook(request: web.Request) -> web.Response:
        received.append((await request.read(), request.headers["intuit-signature"]))
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", hook)
    server = await aiohttp_server(app)
    url = str(server.make_url("/hook"))
    api.state.update(REALM, "Invoice", "3")
    delivery = await api.state.send_webhook(url, "verifier-1")
    assert delivery.status == 200 and delivery.response_body == "ok"
    body, signature = received[0]
    assert signature == sign_intuit_webhook(body, "verifier-1")
    entity = json.loads(body)["eventNotifications"][0]["dataChangeEvent"]["entities"][0]
    assert json.loads(body)["eventNotifications"][0]["realmId"] == REALM
    assert (entity["name"], entity["id"], entity["operation"]) == ("Invoice", "3", "Update")
    api.state.create(REALM, "Class")
    await api.state.send_webhook(url, "verifier-2", format="cloudevents")
    body, signature = received[1]
    assert signature == sign_intuit_webhook(body, "verifier-2")
    vectors = json.loads((specs_dir() / "webhook-vectors.json").read_text())
    sample = json.loads(vectors["cloudevents_format"][0]["body"])[0]
    event = json.loads(body)[0]
    assert set(sample) <= set(event)
    assert (event["type"], event["intuitaccountid"], event["specversion"]) == (
        "qbo.class.created.v1",
        REALM,
        "1.0",
    )


# --------------------------------------------------------------------------- schema


@cache
def xsd_types() -> dict[str, ET.Element]:
    types: dict[str, ET.Element] = {}
    for path in (specs_dir() / "xsd").glob("*.xsd"):
        for node in ET.parse(path).getroot().findall(f"{XS}complexType"):
            types[node.attrib["name"]] = node
    return types


def xsd_fields(type_name: str) -> dict[str, str]:
    """Element and attribute names of a complex type (with its bases) mapped to their types."""
    node = xsd_types()[type_name]
    fields: dict[str, str] = {}
    extension = node.find(f".//{XS}extension")
    if extension is not None:
        base = extension.attrib["base"]
        if base in xsd_types():
            fields.update(xsd_fields(base))
        elif node.find(f"{XS}simpleContent") is not None:
            fields["value"] = base
    for child in node.iter(f"{XS}element"):
        # a reference (<xs:element ref="Invoice"/>) is named after what it refers to
        fields[child.attrib.get("name") or child.attrib["ref"]] = child.attrib.get("type", "")
    for child in node.iter(f"{XS}attribute"):
        fields[child.attrib["name"]] = child.attrib.get("type", "")
    return fields


def assert_matches_xsd(value: Any, type_name: str, where: str) -> None:
    if type_name not in xsd_types():
        return
    if isinstance(value, list):
        for item in value:
            assert_matches_xsd(item, type_name, where)
        return
    assert isinstance(value, dict), where
    fields = xsd_fields(type_name)
    for key, item in value.items():
        assert key in fields, f"{where}.{key} is not in the XSD type {type_name}"
        assert_matches_xsd(item, fields[key], f"{where}.{key}")


def test_generated_entities_use_xsd_field_names() -> None:
    state = SandboxState(make_config())
    company = state.company(REALM)
    for entity, table in company.tables.items():
        for entity_id in ("1", str(table.count)):
            row, kind = state.get(REALM, entity, entity_id), answer_name(entity)
            if entity == "RecurringTransaction":  # the template inside its own type's key
                ((kind, row),) = row.items()
                assert "RecurringInfo" in row
            assert_matches_xsd(row, kind, entity)
    customer = state.get(REALM, "Customer", "1")
    assert {"DisplayName", "CompanyName", "PrimaryEmailAddr"} <= set(customer)
    invoice = state.get(REALM, "Invoice", "1")
    assert {"TxnDate", "TotalAmt", "CustomerRef", "Line", "Balance"} <= set(invoice)
    assert isinstance(invoice["TotalAmt"], float)
    assert invoice["MetaData"]["CreateTime"].endswith("-07:00")
    assert (invoice["domain"], invoice["sparse"]) == ("QBO", False)


# --------------------------------------------------------------------------- command line


def test_command_line_serves_and_prints_tokens() -> None:
    command = [
        sys.executable,
        "-m",
        "plugins.quickbooks.sandbox",
        "--port",
        "0",
        "--oauth-port",
        "0",
    ]
    command += ["--companies", f"{REALM}:Invoice=10,Customer=3", "--no-throttle"]
    root = Path(__file__).resolve().parents[2]
    with subprocess.Popen(command, cwd=root, stdout=subprocess.PIPE, text=True) as process:
        try:
            assert process.stdout is not None
            lines: list[str] = []
            while not lines or lines[-1] != "}\n":
                lines.append(process.stdout.readline())
            summary = json.loads("".join(lines))
        finally:
            process.terminate()
    assert summary["base_url"].startswith("http://127.0.0.1:")
    assert summary["tokens"][REALM]["access_token"]


def test_merge_deletes_the_loser_and_reports_one_event() -> None:
    state = SandboxState(make_config())
    state.take_events()
    survivor = state.merge(REALM, "Customer", "7", "5")
    assert survivor["Id"] == "5" and survivor["SyncToken"] != "0"
    with pytest.raises(KeyError):
        state.get(REALM, "Customer", "7")
    (event,) = state.take_events()
    assert (event.operation, event.entity_id, event.deleted_id) == ("Merge", "5", "7")
    with pytest.raises(ValueError, match="list entities"):
        state.merge(REALM, "Invoice", "1", "2")


async def test_every_answer_carries_an_intuit_tid(api: Api) -> None:
    api.state.fail_next(502, path="/invoice/")
    seen = []
    for path, headers in (
        ("term/1", api.headers()),
        ("invoice/1", api.headers()),  # the gateway's HTML page
        ("term/1", {"Authorization": f"Bearer {api.token}"}),  # 406: not asking for JSON
        ("term/1", {"Accept": "application/json"}),  # 401: no token
    ):
        async with api.client.get(f"/v3/company/{REALM}/{path}", headers=headers) as response:
            seen.append((response.status, response.headers.get("intuit_tid")))
    assert [status for status, _ in seen] == [200, 502, 406, 401]
    tids = [tid for _, tid in seen]
    assert all(tids) and len(set(tids)) == 4
    assert [r.intuit_tid for r in api.state.requests] == tids
