"""Client matching in the core: a stream's ``ClientFields``, matched in the batch's
transaction by the engine and by ``write_records``, announced by ``clients.matched``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from typing import Any

import orjson
import pytest

from hub import client_matching, hookimpl, sync_pass
from hub.client_matching import MatchTally
from hub.model import Batch, ClientFields, HubEvent, Integration, Stream
from hub.store.client_match import Candidate, MatchReport, MatchResult
from hub.testing import client_links, stored_records

CONNECTION = "billing:acct"


def tax_values(customer: dict[str, Any]) -> list[str]:
    """Stripe's shape: ``tax_ids.data[].value``."""
    return [t["value"] for t in (customer.get("tax_ids") or {}).get("data", [])]


CUSTOMERS = Stream(
    "customers",
    columns={"name": "name"},
    client=ClientFields(
        name="name", email="email", tax_id=tax_values, when=lambda c: not c.get("test")
    ),
)

ACCOUNTS = Stream(
    "accounts",
    client=replace(
        CUSTOMERS.client, client_id="metadata.client_id", order=("client_id", "email", "name")
    ),
)
"""A stream whose records carry the hub client id, matched by e-mail before name."""


class BillingPlugin:
    """A Stripe-like provider whose sync yields the scripted batches."""

    def __init__(self, script: Sequence[Batch] = ()) -> None:
        self.script = list(script)
        self.seen: list[tuple[HubEvent, int | None]] = []

    @hookimpl
    def register(self) -> Integration:
        return Integration(
            "billing",
            "Billing",
            streams=[CUSTOMERS, ACCOUNTS, Stream("invoices")],
            default_sync_interval=None,
        )

    @hookimpl
    async def sync(self, streams: Sequence[str]) -> AsyncIterator[Batch]:
        for batch in self.script:
            if batch.stream in streams:
                yield batch

    @hookimpl
    async def event(self, event: HubEvent, hub: Any) -> None:
        if event.type == "clients.matched":
            first = event.data["linked"][0]["record"] if event.data["linked"] else "none"
            self.seen.append((event, await hub.clients.client_of("billing", CONNECTION, first)))


def customer(i: int, name: str, email: str | None = None, *tax: str, **more: Any) -> dict:
    data = [{"type": "eu_vat", "value": value} for value in tax]
    return {"id": f"cus_{i}", "name": name, "email": email, "tax_ids": {"data": data}, **more}


async def billing_hub(make_hub, plugin: BillingPlugin):
    hub = await make_hub(plugins=[plugin])
    connection = await hub.add_connection("billing", "acct", "Acct", {}, origin="test")
    return hub, connection


async def matched_events(hub) -> list[dict[str, Any]]:
    await hub.dispatcher.drain()
    rows = await hub.store.db.read(
        lambda db: db.execute(
            "SELECT data FROM events WHERE type = 'clients.matched' ORDER BY id"
        ).fetchall()
    )
    return [orjson.loads(row[0]) for row in rows]


def links(clients: list[dict[str, Any]]) -> dict[str, int]:
    return {link["provider_id"]: c["id"] for c in clients for link in c["links"]}


async def test_synced_records_are_matched_and_announced_after_the_commit(make_hub):
    plugin = BillingPlugin(
        [
            Batch("customers", [customer(1, "Acme Inc", "ops@acme.test")], cursor={"p": 1}),
            Batch("customers", [customer(2, "ACME", None), customer(3, "Bolt")], cursor={"p": 2}),
            Batch("customers", [customer(4, "Sandbox", test=True)], cursor={"p": 3}),
            Batch("invoices", [{"id": "in_1"}], cursor={"p": 1}),
        ]
    )
    hub, _ = await billing_hub(make_hub, plugin)
    assert (await hub.engine.run(CONNECTION)).state == "succeeded"
    clients = await hub.store.clients.list()
    assert [c["name"] for c in clients] == ["Acme Inc", "Bolt"]
    # cus_2 (same name as cus_1's client) is ambiguous: the client is taken by cus_1 here
    assert links(clients) == {"cus_1": 1, "cus_3": 2}  # cus_4 is no client (``when``)
    (data,) = await matched_events(hub)  # one per run and stream; none for invoices
    assert (data["integration"], data["connection"], data["stream"]) == (
        "billing",
        CONNECTION,
        "customers",
    )
    assert (data["matched"], data["created"], data["ambiguous"]) == (0, 2, 1)
    assert data["linked"] == [
        {"record": "cus_1", "client": 1, "by": "created"},
        {"record": "cus_3", "client": 2, "by": "created"},
    ]
    assert data["ambiguous_records"][0]["record"] == "cus_2"
    assert data["truncated"] is False
    (event, linked_client) = plugin.seen[0]
    assert event.source == "hub" and linked_client == 1  # the link was committed before

    assert (await hub.engine.run(CONNECTION)).state == "succeeded"
    again = (await matched_events(hub))[-1]
    assert (again["matched"], again["created"], again["ambiguous"]) == (2, 0, 1)
    assert again["linked"] == []  # matched by their links: nothing new


async def test_a_batch_that_fails_to_commit_leaves_neither_records_nor_links(make_hub, monkeypatch):
    monkeypatch.setattr(sync_pass, "GROUP_BYTES", 0)  # each batch its own transaction
    plugin = BillingPlugin(
        [
            Batch("customers", [customer(1, "Acme")], cursor={"p": 1}),
            Batch("customers", [customer(2, "Bolt")], cursor={"p": 2}),
        ]
    )
    hub, _ = await billing_hub(make_hub, plugin)
    original = sync_pass.write_cursor

    def write_cursor(db, connection_id, stream, cursor, generation):
        if cursor == {"p": 2}:  # after the batch's records and their matching
            raise RuntimeError("disk full")
        original(db, connection_id, stream, cursor, generation)

    monkeypatch.setattr(sync_pass, "write_cursor", write_cursor)
    assert (await hub.engine.run(CONNECTION)).state == "failed"
    records = await stored_records(hub, "billing", CONNECTION)
    assert set(records["customers"]) == {"cus_1"}
    assert links(await hub.store.clients.list()) == {"cus_1": 1}
    assert (await hub.store.runs.cursors(CONNECTION))["customers"].cursor == {"p": 1}
    (data,) = await matched_events(hub)  # the committed batch is announced all the same
    assert data["created"] == 1 and data["linked"][0]["record"] == "cus_1"


async def test_matching_that_fails_rolls_its_records_back(make_hub, monkeypatch):
    hub, connection = await billing_hub(make_hub, BillingPlugin())

    def broken(*args: Any) -> MatchReport:
        raise RuntimeError("matching failed")

    monkeypatch.setattr(client_matching, "match_candidates", broken)
    with pytest.raises(RuntimeError, match="matching failed"):
        await hub.write_records(connection, "customers", [customer(1, "Acme")])
    assert (await stored_records(hub, "billing", CONNECTION))["customers"] == {}
    assert await hub.store.clients.list() == []


async def test_write_records_matches_like_a_sync(make_hub):
    hub, connection = await billing_hub(make_hub, BillingPlugin())
    await hub.write_records(connection, "customers", [customer(7, "Webhook Co", "w@co.test")])
    await hub.write_records(connection, "invoices", [{"id": "in_1"}])
    assert links(await hub.store.clients.list()) == {"cus_7": 1}
    assert await hub.api.clients.client_of("billing", CONNECTION, "cus_7") == 1
    (data,) = await matched_events(hub)
    assert data["created"] == 1 and data["stream"] == "customers"


async def test_tax_id_matches_first_and_is_kept_on_the_client(make_hub):
    hub, connection = await billing_hub(make_hub, BillingPlugin())
    await hub.store.clients.match(
        "ledger", "ledger:1", [Candidate("9", "Acme Holdings", "a@acme.test", ("DE 123-456-789",))]
    )
    await hub.write_records(
        connection,
        "customers",
        [customer(1, "ACME Europe GmbH", "billing@acme.eu", "DE123456789", "ATU12345678")],
    )
    (client,) = await hub.store.clients.list()
    assert links([client]) == {"9": 1, "cus_1": 1}
    assert [link["matched_by"] for link in client["links"]] == ["tax_id", "created"]
    assert client["tax_ids"] == ["ATU12345678", "DE123456789"]


async def test_ambiguous_records_wait_for_review_until_tombstoned(make_hub):
    hub, connection = await billing_hub(make_hub, BillingPlugin())
    await hub.store.clients.match("ledger", "ledger:1", [Candidate("1", "Acme")])
    await hub.store.clients.match("ledger", "ledger:2", [Candidate("1", "Bolt", "ops@bolt.test")])
    await hub.write_records(
        connection, "customers", [customer(1, "Acme", "ops@bolt.test"), customer(2, "Bolt")]
    )
    (review,) = await hub.store.clients.reviews()
    assert (review["provider_id"], review["candidates"][0]["name"]) == ("cus_1", "Acme")
    (data,) = await matched_events(hub)
    assert data["ambiguous_records"] == [
        {"record": "cus_1", "reason": review["reason"], "clients": [1, 2]}
    ]
    await hub.write_records(connection, "customers", [], deleted=["cus_1", "cus_2"])
    assert await hub.store.clients.reviews() == []  # nothing left to settle
    assert links(await hub.store.clients.list())["cus_2"] == 2  # links stay


async def test_a_full_sync_sweep_drops_the_reviews_of_what_it_tombstoned(make_hub):
    plugin = BillingPlugin([Batch("customers", [customer(1, "Acme"), customer(2, "Acme")])])
    hub, _ = await billing_hub(make_hub, plugin)
    await hub.engine.run(CONNECTION)
    assert [r["provider_id"] for r in await hub.store.clients.reviews()] == ["cus_2"]
    plugin.script = [Batch("customers", [customer(1, "Acme")])]
    assert (await hub.engine.run(CONNECTION, full=True)).state == "succeeded"
    assert await hub.store.clients.reviews() == []


def test_the_event_lists_a_bounded_number_of_records():
    results = [MatchResult(str(i), "created", i, "created") for i in range(150)]
    results += [MatchResult("x", "ambiguous", None, None, "twins", (1, 2))]
    data = MatchTally.of(MatchReport(results)).event_data("billing", CONNECTION, "customers")
    assert (data["created"], data["ambiguous"]) == (150, 1)
    assert len(data["linked"]) == client_matching.MAX_IDS and data["truncated"] is True
    assert data["ambiguous_records"] == [{"record": "x", "reason": "twins", "clients": [1, 2]}]


def test_client_fields_need_at_least_one_field():
    with pytest.raises(ValueError, match="at least one"):
        ClientFields(when=lambda record: True)


async def add_clients(hub, *names_and_emails: tuple[str, str]) -> None:
    """Clients 1, 2, ... as another integration's match creates them."""
    candidates = [
        Candidate(str(i), name, email) for i, (name, email) in enumerate(names_and_emails)
    ]
    await hub.store.clients.match("ledger", "ledger:1", candidates)


def account(i: int, name: str, email: str | None, client_id: Any = None, *tax: str) -> dict:
    return customer(i, name, email, *tax, metadata={"client_id": client_id} if client_id else {})


async def test_the_client_id_a_record_carries_links_it_before_other_evidence(make_hub):
    hub, connection = await billing_hub(make_hub, BillingPlugin())
    await add_clients(hub, ("Acme", "ops@acme.test"), ("Bolt", "ops@bolt.test"))
    await hub.write_records(
        connection,
        "customers",  # the default order: client id, tax id, name, e-mail
        [{**customer(1, "Acme", "ops@acme.test"), "client_id": "2"}],
    )
    assert await client_links(hub, "billing") == {"cus_1": (1, "name")}  # no field
    await hub.write_records(
        connection, "accounts", [account(2, "Acme", "ops@acme.test", " 2 ", "DE123456789")]
    )
    assert (await client_links(hub, "billing"))["cus_2"] == (2, "client_id")
    (client,) = [c for c in await hub.store.clients.list() if c["id"] == 2]
    assert client["tax_ids"] == ["DE123456789"]  # kept on the client it names
    await hub.write_records(connection, "accounts", [account(2, "Bolt", None, "1")])
    assert (await client_links(hub, "billing"))["cus_2"] == (2, "client_id")  # stays


async def test_a_client_id_naming_no_client_falls_back_with_a_note(make_hub):
    hub, connection = await billing_hub(make_hub, BillingPlugin())
    await add_clients(hub, ("Acme", "ops@acme.test"))
    await hub.write_records(
        connection,
        "accounts",
        [account(1, "Acme", "ops@acme.test", "99"), account(2, "Bolt", None, "seven")],
    )
    assert await client_links(hub, "billing") == {
        "cus_1": (1, "email"),
        "cus_2": (2, "created"),
    }
    (data,) = await matched_events(hub)
    assert data["notes"] == [
        {"record": "cus_1", "note": "its client id '99' names no client"},
        {"record": "cus_2", "note": "its client id 'seven' names no client"},
    ]


async def test_a_client_named_by_id_already_linked_in_the_connection_is_ambiguous(make_hub):
    hub, connection = await billing_hub(make_hub, BillingPlugin())
    await add_clients(hub, ("Acme", "ops@acme.test"))
    await hub.write_records(
        connection, "accounts", [account(1, "Acme", None, "1"), account(2, "Acme 2", None, "1")]
    )
    assert await client_links(hub, "billing") == {"cus_1": (1, "client_id")}
    (review,) = await hub.store.clients.reviews()
    assert review["provider_id"] == "cus_2" and "already linked to cus_1" in review["reason"]


async def test_a_stream_order_puts_e_mail_before_name_and_leaves_out_tax_ids(make_hub):
    hub, connection = await billing_hub(make_hub, BillingPlugin())
    await add_clients(hub, ("Acme", "ops@acme.test"), ("Bolt", "ops@bolt.test"))
    await hub.store.clients.match(
        "ledger", "ledger:2", [Candidate("7", "Cedar", None, ("AT1234",))]
    )
    await hub.write_records(
        connection,
        "accounts",
        [
            account(1, "Acme", "ops@acme.test"),  # both point at client 1: e-mail first
            account(2, "Acme", "ops@bolt.test"),  # they disagree: a person decides
            account(3, "Someone", "ops@bolt.test", None, "AT1234"),  # tax ids are no evidence
        ],
    )
    assert await client_links(hub, "billing") == {
        "cus_1": (1, "email"),
        "cus_3": (2, "email"),
    }
    default = await hub.store.clients.match(
        "other", "other:1", [Candidate("4", "Acme", "ops@acme.test")]
    )
    assert default.results[0].matched_by == "name"  # the default order: name before e-mail
    (review,) = await hub.store.clients.reviews()
    assert review["provider_id"] == "cus_2" and review["reason"] == (
        "the business name and the e-mail address point at different clients"
    )


def test_client_fields_order_lists_known_evidence_once():
    assert ClientFields(client_id="metadata.client_id").order == (
        "client_id",
        "tax_id",
        "name",
        "email",
    )
    for order in [(), ("email", "email"), ("phone",)]:
        with pytest.raises(ValueError, match=r"ClientFields\.order must list some of"):
            ClientFields(name="name", order=order)
