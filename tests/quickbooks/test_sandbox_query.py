"""The sandbox's query language: what Intuit's accepts (projections, filters, orders, counts)
and what it refuses (unknown or unfilterable properties, syntax errors), in Intuit's shapes."""

from __future__ import annotations

import operator
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from hub.errors import ValidationError
from plugins.quickbooks._sandbox_data import answer_name
from plugins.quickbooks._sandbox_query import EXPLICIT_ONLY, FILTERABLE
from plugins.quickbooks.client import page_statement
from plugins.quickbooks.oauth import client_for
from plugins.quickbooks.sandbox import create_app
from tests.quickbooks.conftest import connect, live_rows, qb_config
from tests.quickbooks.test_sandbox import REALM, Api, make_config, xsd_fields

Client = TestClient[web.Request, web.Application]
Row = dict[str, Any]


@pytest.fixture
async def api(aiohttp_client: Callable[..., Awaitable[Client]]) -> Api:
    return Api(await aiohttp_client(create_app(make_config())))


async def rows_of(api: Api, statement: str, entity: str = "Customer") -> list[Row]:
    status, body = await api.query(statement)
    assert status == 200, body
    rows: list[Row] = body["QueryResponse"].get(entity, [])
    return rows


def customers(api: Api) -> list[Row]:
    """Every active customer, in Id order (what ``SELECT * FROM Customer`` ranges over)."""
    rows = live_rows(api.state, "Customer").values()
    return sorted((r for r in rows if r["Active"]), key=lambda r: int(r["Id"]))


def balance(row: Row) -> Decimal:
    return Decimal(str(row["Balance"]))


# --------------------------------------------------------------------------- projections


async def test_a_projection_answers_the_chosen_properties_only(api: Api) -> None:
    rows = await rows_of(api, "SELECT Id, DisplayName FROM Customer MAXRESULTS 1000")
    expected = [
        {"Id": r["Id"], "DisplayName": r["DisplayName"], "domain": "QBO", "sparse": True}
        for r in customers(api)
    ]
    assert rows == expected
    lower = await rows_of(api, "select displayname, id, DISPLAYNAME from customer maxresults 1000")
    assert lower == expected  # names in any case, each answered once under Intuit's spelling


async def test_sku_comes_back_only_when_named(api: Api) -> None:
    plain = await rows_of(api, "SELECT * FROM Item", "Item")
    named = await rows_of(api, "SELECT *, Sku FROM Item", "Item")
    assert plain and all("Sku" not in row for row in plain)
    assert [{k: v for k, v in row.items() if k != "Sku"} for row in named] == plain
    assert all(row["Sku"] == api.state.get(REALM, "Item", row["Id"])["Sku"] for row in named)
    assert EXPLICIT_ONLY == {"Item": ("Sku",)}
    assert await rows_of(api, "SELECT Sku FROM Item WHERE Id = '1'", "Item") == [
        {"Sku": named[0]["Sku"], "domain": "QBO", "sparse": True}
    ]


# --------------------------------------------------------------------------- filters


async def test_display_name_equals_and_like(api: Api) -> None:
    everyone = customers(api)
    name = everyone[3]["DisplayName"]
    assert await rows_of(api, f"SELECT * FROM Customer WHERE DisplayName = '{name}'") == [
        everyone[3]
    ]
    shouted = name.upper().replace("'", "\\'")
    found = await rows_of(api, f"select * from Customer where DisplayName = '{shouted}'")
    assert [r["Id"] for r in found] == [everyone[3]["Id"]]  # strings compare without case
    word = name.split()[1]
    contains = await rows_of(api, f"SELECT * FROM Customer WHERE DisplayName LIKE '%{word}%'")
    assert contains == [r for r in everyone if word.lower() in r["DisplayName"].lower()]
    prefix = name[:3]
    starts = await rows_of(api, f"SELECT * FROM Customer WHERE DisplayName LIKE '{prefix}%'")
    assert starts == [r for r in everyone if r["DisplayName"].lower().startswith(prefix.lower())]
    assert len(starts) < len(everyone)
    underscore = await rows_of(api, "SELECT * FROM Customer WHERE DisplayName LIKE '_%'")
    assert underscore == []  # '%' is the only wildcard: '_' is a plain character


@pytest.mark.parametrize("op", ["=", "<", ">", "<=", ">="])
async def test_balance_comparisons_are_exact_decimals(api: Api, op: str) -> None:
    everyone = customers(api)
    pivot = sorted(balance(r) for r in everyone)[len(everyone) // 2]
    compare = {"=": operator.eq, "<": operator.lt, ">": operator.gt}
    compare |= {"<=": operator.le, ">=": operator.ge}
    written = f"{pivot:.4f}"  # 1234.5000 is the amount 1234.5
    found = await rows_of(api, f"SELECT * FROM Customer WHERE Balance {op} '{written}'")
    assert found == [r for r in everyone if compare[op](balance(r), pivot)]
    assert found or op in ("<", ">")


async def test_in_and_combined_conditions(api: Api) -> None:
    everyone = customers(api)
    names = [everyone[1]["DisplayName"], everyone[5]["DisplayName"], "Nobody At All"]
    listed = ", ".join("'" + n.replace("'", "\\'") + "'" for n in names)
    found = await rows_of(api, f"SELECT * FROM Customer WHERE DisplayName IN ({listed})")
    assert found == [everyone[1], everyone[5]]
    low = min(balance(everyone[1]), balance(everyone[5]))
    statement = (
        f"SELECT * FROM Customer WHERE DisplayName IN ({listed}) AND Balance > '{low}' "
        f"AND Active = true"
    )
    both = await rows_of(api, statement)
    assert both == [r for r in (everyone[1], everyone[5]) if balance(r) > low]


# --------------------------------------------------------------------------- order, paging


async def test_orderby_several_fields_and_paging(api: Api) -> None:
    everyone = customers(api)
    expected = sorted(everyone, key=lambda r: r["DisplayName"].casefold())
    expected.sort(key=balance, reverse=True)
    statement = "SELECT * FROM Customer ORDERBY Balance DESC, DisplayName ASC"
    assert await rows_of(api, f"{statement} MAXRESULTS 1000") == expected
    page = await rows_of(api, f"{statement} STARTPOSITION 4 MAXRESULTS 5")
    assert page == expected[3:8]
    _, body = await api.query(f"{statement} STARTPOSITION 4 MAXRESULTS 5")
    assert (body["QueryResponse"]["startPosition"], body["QueryResponse"]["maxResults"]) == (4, 5)
    by_name = await rows_of(api, "select * from customer order by displayname desc maxresults 3")
    assert by_name == sorted(everyone, key=lambda r: r["DisplayName"].casefold())[::-1][:3]


async def test_count_answers_the_total_count_only(api: Api) -> None:
    everyone = customers(api)
    _, body = await api.query("SELECT COUNT(*) FROM Customer")
    assert body["QueryResponse"] == {"totalCount": len(everyone)}
    pivot = balance(everyone[0])
    _, body = await api.query(f"select count(*) from Customer where Balance >= '{pivot}'")
    assert body["QueryResponse"] == {"totalCount": sum(balance(r) >= pivot for r in everyone)}


# --------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("statement", "name"),
    [
        ("SELECT * FROM Customer WHERE Nickname = 'x'", "Nickname"),
        ("SELECT * FROM Vendor WHERE PrimaryEmailAddr = 'john@doe.com'", "PrimaryEmailAddr"),
        ("SELECT * FROM Vendor WHERE Balance > '0'", "Balance"),
        ("SELECT Id, Nickname FROM Customer", "Nickname"),
        ("SELECT * FROM Invoice ORDERBY Line", "Line"),
    ],
)
async def test_unknown_or_unfilterable_properties_get_intuits_validation_fault(
    api: Api, statement: str, name: str
) -> None:
    status, body = await api.query(statement)
    assert status == 400
    assert set(body) == {"Fault", "time"} and body["Fault"]["type"] == "ValidationFault"
    assert body["Fault"]["Error"] == [
        {
            "Message": "Invalid query",
            "Detail": f"QueryValidationError: property '{name}' is not queryable",
            "code": "4001",
        }
    ]


@pytest.mark.parametrize(
    "statement",
    [
        "SELECT Id, FROM Customer",
        "SELECT * FROM Customer WHERE DisplayName LIKE",
        "SELECT * FROM Customer WHERE DisplayName = 'a' OR Active = true",
        "SELECT * FROM Customer ORDERBY",
        "SELECT * FROM Customer MAXRESULTS 1.5",
        "SELECT * FROM Customer GROUP BY DisplayName",
    ],
)
async def test_syntax_errors_get_intuits_query_parser_error(api: Api, statement: str) -> None:
    status, body = await api.query(statement)
    assert status == 400 and body["Fault"]["type"] == "ValidationFault"
    error = body["Fault"]["Error"][0]
    assert (error["code"], error["Message"]) == ("4000", "Error parsing query")
    assert error["Detail"].startswith("QueryParserError: Encountered")


async def test_bad_values_and_operators_are_refused(api: Api) -> None:
    for statement, detail in (
        ("SELECT * FROM Customer WHERE Balance > 'lots'", "'lots' is not a valid value"),
        ("SELECT * FROM Customer WHERE Balance LIKE '1%'", "LIKE is not supported"),
        ("SELECT * FROM Invoice WHERE TxnDate >= '2025-13-01'", "'2025-13-01' is not a valid"),
    ):
        status, body = await api.query(statement)
        error = body["Fault"]["Error"][0]
        assert (status, error["code"]) == (400, "4001") and detail in error["Detail"]


def test_filterable_properties_are_the_entities_own() -> None:
    for entity, properties in FILTERABLE.items():
        fields = xsd_fields(answer_name(entity))
        for name in properties:
            assert name.split(".")[0] in fields, f"{entity}.{name} is not in the XSD"


async def test_the_plugin_gets_the_refusal_as_a_validation_error(make_hub, sandbox) -> None:
    hub = await make_hub(config=qb_config(sandbox))
    client = client_for(hub, await connect(hub, sandbox.state))
    statement = "SELECT * FROM Vendor WHERE PrimaryEmailAddr = 'john@doe.com'"
    with pytest.raises(ValidationError, match="property 'PrimaryEmailAddr' is not queryable"):
        await client.query(statement, "Vendor")
    queries = [r for r in sandbox.state.requests if r.path.endswith("/query")]
    assert [r.status for r in queries] == [400]  # refused once, never retried


async def test_prerendered_item_pages_are_the_ones_a_full_sync_asks_for(
    aiohttp_client: Callable[..., Awaitable[Client]],
) -> None:
    api = Api(await aiohttp_client(create_app(make_config(prerender=True))))
    assert await api.state.prerender(REALM, "Item", page_size=2) == 3
    rows = await rows_of(api, page_statement("Item", 1, 2, False), "Item")
    assert [row["Sku"] for row in rows] == ["SKU-00001", "SKU-00002"]
    assert api.state.prerendered_pages == 3  # answered from the cache, nothing rendered anew
