"""The clients registry: deterministic matching reported as matched / created / ambiguous."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
import sqlite_utils

from hub.store import Store
from hub.store.client_match import (
    Candidate,
    match_candidates,
    normalise_email,
    normalise_name,
    normalise_tax_id,
)
from hub.store.clients import UnknownConnection

QBO = ("quickbooks", "quickbooks:1")


@pytest.fixture
def store(tmp_path: Path):
    opened = Store(tmp_path / "hub.db")
    yield opened
    opened.close()


def outcomes(report) -> list[tuple[str, str, str | None]]:
    return [(r.provider_id, r.outcome, r.matched_by) for r in report.results]


def test_names_and_emails_are_normalised():
    assert normalise_name("The Acme Co., Inc.") == normalise_name("ACME co")
    assert normalise_name("Acme & Sons, L.L.C.") == "acme and sons"
    assert normalise_name("Café Müller GmbH") == "cafe muller"
    assert normalise_name("Inc") == "inc"  # a name is never reduced to nothing
    assert normalise_email("  Bob@Example.COM ") == "bob@example.com"
    assert normalise_email("not an address") == ""


async def test_created_then_matched_by_link_idempotently(store):
    candidates = [Candidate("2", "Beta LLC", "b@beta.test"), Candidate("1", "Acme Inc.")]
    first = await store.clients.match(*QBO, candidates)
    assert outcomes(first) == [("1", "created", "created"), ("2", "created", "created")]
    again = await store.clients.match(*QBO, candidates)
    assert outcomes(again) == [("1", "matched", "link"), ("2", "matched", "link")]
    assert [r.client_id for r in again.results] == [r.client_id for r in first.results]
    clients = await store.clients.list()
    assert [(c["name"], c["email"]) for c in clients] == [
        ("Acme Inc.", None),
        ("Beta LLC", "b@beta.test"),
    ]


async def test_another_company_matches_by_name_then_by_email(store):
    await store.clients.match(*QBO, [Candidate("1", "Acme Inc.", "ops@acme.test")])
    await store.clients.match(*QBO, [Candidate("2", "Zeta Partners", "hello@zeta.test")])
    report = await store.clients.match(
        "quickbooks",
        "quickbooks:2",
        [Candidate("77", "ACME, Inc"), Candidate("78", "Zeta & Co", "Hello@Zeta.test")],
    )
    assert outcomes(report) == [("77", "matched", "name"), ("78", "matched", "email")]
    assert report.counts() == {"matched": 2, "created": 0, "ambiguous": 0}
    clients = await store.clients.list()
    assert len(clients) == 2 and len(clients[0]["links"]) == 2


async def test_unclear_evidence_is_ambiguous_never_merged(store):
    await store.clients.match(*QBO, [Candidate("1", "Acme", "a@acme.test")])
    await store.clients.match(*QBO, [Candidate("2", "Bolt", "b@bolt.test")])
    report = await store.clients.match(
        "quickbooks",
        "quickbooks:2",
        [
            Candidate("10", "Acme", "b@bolt.test"),  # name -> Acme, e-mail -> Bolt
            Candidate("11", "Bolt"),  # Bolt: one client, free in this company
            Candidate("12", "Bolt Ltd"),  # Bolt again: already linked to 11 here
        ],
    )
    assert outcomes(report) == [
        ("10", "ambiguous", None),
        ("11", "matched", "name"),
        ("12", "ambiguous", None),
    ]
    assert "different clients" in report.results[0].reason
    assert report.results[0].candidates == (1, 2)
    assert "already linked to 11" in report.results[2].reason
    assert len(await store.clients.list()) == 2  # nothing was created for them

    await store.db.write(  # a second "Acme" entered by hand
        lambda db: db.execute(
            "INSERT INTO clients (name, name_key, created_at, updated_at) "
            "VALUES ('ACME', 'acme', '', '')"
        )
    )
    twins = await store.clients.match("stripe", "stripe:x", [Candidate("cus_1", "Acme Corp")])
    assert outcomes(twins) == [("cus_1", "ambiguous", None)]
    assert "several clients" in twins.results[0].reason and twins.results[0].candidates == (1, 3)
    await store.connections.upsert("stripe", "x", "Stripe x", {}, "test")
    await store.clients.link(3, "stripe", "stripe:x", "cus_1")  # a person settles it
    settled = await store.clients.match("stripe", "stripe:x", [Candidate("cus_1", "Acme Corp")])
    assert outcomes(settled) == [("cus_1", "matched", "link")]
    assert settled.results[0].client_id == 3


async def test_manual_link_needs_an_existing_client(store):
    with pytest.raises(LookupError):
        await store.clients.link(42, "quickbooks", "quickbooks:1", "9")


async def test_manual_link_needs_an_existing_connection_of_its_integration(store):
    await store.clients.match(*QBO, [Candidate("1", "Acme")])
    await store.connections.upsert("quickbooks", "1", "Company 1", {}, "test")
    for integration, connection in [("quickbooks", "quickbooks:2"), ("stripe", "quickbooks:1")]:
        with pytest.raises(UnknownConnection, match=f"no {integration} connection"):
            await store.clients.link(1, integration, connection, "9")
    (client,) = await store.clients.list()
    assert [link["connection_id"] for link in client["links"]] == ["quickbooks:1"]  # no other


async def test_ambiguous_candidates_wait_for_review_until_settled(store):
    await store.clients.match(*QBO, [Candidate("1", "Acme", "a@acme.test")])
    await store.clients.match(*QBO, [Candidate("2", "Bolt", "b@bolt.test")])
    scope = ("quickbooks", "quickbooks:2")
    await store.clients.match(*scope, [Candidate("10", "Acme", "b@bolt.test")])
    (review,) = await store.clients.reviews()
    assert (review["connection_id"], review["provider_id"], review["email"]) == (
        "quickbooks:2",
        "10",
        "b@bolt.test",
    )
    assert "different clients" in review["reason"]
    assert review["candidates"] == [{"id": 1, "name": "Acme"}, {"id": 2, "name": "Bolt"}]

    await store.clients.match(*scope, [Candidate("10", "Acme", "b@bolt.test")])
    assert len(await store.clients.reviews()) == 1  # seen again: still one review

    await store.connections.upsert("quickbooks", "2", "Company 2", {}, "test")
    await store.clients.link(2, *scope, "10")  # a person settles it
    assert await store.clients.reviews() == []
    again = await store.clients.match(*scope, [Candidate("10", "Acme", "b@bolt.test")])
    assert outcomes(again) == [("10", "matched", "link")]
    assert await store.clients.reviews() == []


async def test_a_review_goes_when_matching_settles_it_later(store):
    scope = ("stripe", "stripe:x")
    await store.clients.match(*QBO, [Candidate("1", "Acme")])
    await store.clients.match("quickbooks", "quickbooks:9", [Candidate("5", "Acme Inc")])
    await store.db.write(
        lambda db: db.execute(
            "INSERT INTO clients (name, name_key, created_at, updated_at) "
            "VALUES ('ACME', 'acme', '', '')"
        )
    )
    await store.clients.match(*scope, [Candidate("cus_1", "Acme")])
    assert [r["provider_id"] for r in await store.clients.reviews()] == ["cus_1"]
    await store.db.write(lambda db: db.execute("DELETE FROM clients WHERE name = 'ACME'"))
    settled = await store.clients.match(*scope, [Candidate("cus_1", "Acme")])
    assert outcomes(settled) == [("cus_1", "matched", "name")]
    assert await store.clients.reviews() == []


async def test_reviews_are_listed_oldest_first_up_to_a_limit(store):
    await store.clients.match(*QBO, [Candidate("1", "Acme")])
    await store.db.write(
        lambda db: db.execute(
            "INSERT INTO clients (name, name_key, created_at, updated_at) "
            "VALUES ('ACME', 'acme', '', '')"
        )
    )
    others = [Candidate(str(n), "Acme") for n in range(20, 25)]
    await store.clients.match("stripe", "stripe:x", others)
    assert await store.clients.review_count() == 5
    listed = await store.clients.reviews(limit=2)
    assert [r["provider_id"] for r in listed] == ["20", "21"]


def test_tax_ids_are_normalised_and_masked_ones_ignored():
    assert normalise_tax_id(" de 123-456.789 ") == "DE123456789"
    assert normalise_tax_id("12-3456789") == "123456789"
    assert normalise_tax_id("XXXXX6789") == normalise_tax_id("***-**-6789") == ""
    assert normalise_tax_id("N/A") == normalise_tax_id("NONE") == normalise_tax_id("12") == ""


async def test_a_tax_id_matches_first_whatever_the_name(store):
    await store.clients.match(*QBO, [Candidate("1", "Acme Inc", "a@acme.test", ("12-3456789",))])
    await store.clients.match(*QBO, [Candidate("2", "Bolt", "b@bolt.test")])
    report = await store.clients.match(
        "stripe", "stripe:x", [Candidate("cus_1", "Bolt", "b@bolt.test", ("123456789",))]
    )
    assert outcomes(report) == [("cus_1", "matched", "tax_id")]
    assert report.results[0].client_id == 1


async def test_unclear_tax_ids_are_ambiguous(store):
    await store.clients.match(*QBO, [Candidate("1", "Acme", None, ("DE111111111",))])
    await store.clients.match(*QBO, [Candidate("2", "Acme Two", None, ("DE222222222",))])
    report = await store.clients.match(
        "stripe",
        "stripe:x",
        [
            Candidate("cus_1", "Zeta", None, ("DE111111111", "DE222222222")),  # two clients
            Candidate("cus_2", "Acme", None, ("DE999999999",)),  # Acme has another tax id
            Candidate("cus_3", "Acme Two"),  # no tax id given: the name decides
        ],
    )
    assert outcomes(report) == [
        ("cus_1", "ambiguous", None),
        ("cus_2", "ambiguous", None),
        ("cus_3", "matched", "name"),
    ]
    assert "several clients have this tax id" in report.results[0].reason
    assert report.results[0].candidates == (1, 2)
    assert "another tax id" in report.results[1].reason
    reviews = {r["provider_id"]: r for r in await store.clients.reviews()}
    assert reviews["cus_2"]["tax_ids"] == ["DE999999999"]


async def test_a_linked_record_teaches_its_client_a_tax_id(store):
    await store.clients.match(*QBO, [Candidate("1", "Acme")])
    await store.clients.match(*QBO, [Candidate("1", "Acme", None, ("GB 123 4567 89",))])
    report = await store.clients.match(
        "stripe", "stripe:x", [Candidate("c", "A", None, ("GB123456789",))]
    )
    assert outcomes(report) == [("c", "matched", "tax_id")]
    (client,) = await store.clients.list()
    assert client["tax_ids"] == ["GB123456789"]


class CountingConnection:
    """An sqlite3 connection that counts the statements sent to it (``executemany`` once)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn, self.statements = conn, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.conn, name)

    def execute(self, *args: Any) -> sqlite3.Cursor:
        self.statements += 1
        return self.conn.execute(*args)

    def executemany(self, *args: Any) -> sqlite3.Cursor:
        self.statements += 1
        return self.conn.executemany(*args)


async def test_creating_clients_costs_the_same_few_statements_however_many(store):
    def created_with(db: sqlite_utils.Database, count: int, start: int) -> tuple[int, list[int]]:
        counting = CountingConnection(db.conn)
        proxy = sqlite_utils.Database(counting)  # type: ignore[arg-type]
        names = [Candidate(str(start + n), f"Client {start + n} LLC") for n in range(count)]
        report = match_candidates(proxy, *QBO, names)
        return counting.statements, [r.client_id or 0 for r in report.results]

    few, first_ids = await store.db.write(created_with, 2, 1)
    many, ids = await store.db.write(created_with, 128, 100)  # 128 rows: one statement each
    assert few == many  # not a statement or two per created client
    assert ids == list(range(first_ids[-1] + 1, first_ids[-1] + 129))  # as SQLite numbers them
    listed = await store.clients.list()
    assert [c["id"] for c in listed] == [*first_ids, *ids]
    assert listed[-1]["name"] == "Client 227 LLC"
