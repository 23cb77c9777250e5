"""``/api/clients``: the registry, the reviews matching left, and settling one by hand."""

from __future__ import annotations

from hub.store.client_match import Candidate
from hub.web.keys import HUB

SCOPE = ("quickbooks", "quickbooks:2")


async def test_a_person_settles_an_ambiguous_customer_through_the_api(hub_client):
    client = await hub_client()
    clients = client.app[HUB].store.clients
    await clients.match("quickbooks", "quickbooks:1", [Candidate("1", "Acme", "a@acme.test")])
    await clients.match("quickbooks", "quickbooks:1", [Candidate("2", "Bolt", "b@bolt.test")])
    await clients.match(*SCOPE, [Candidate("10", "Acme", "b@bolt.test")])

    status = (await (await client.get("/api/status")).json())["client_reviews"]
    assert status["count"] == 1 and status["oldest"][0]["provider_id"] == "10"
    response = await client.get("/api/clients/reviews")
    assert response.status == 200
    (review,) = (await response.json())["reviews"]
    assert review["provider_id"] == "10" and [c["id"] for c in review["candidates"]] == [1, 2]

    body = {"integration": "quickbooks", "connection": "quickbooks:2", "provider_id": "10"}
    await client.app[HUB].add_connection("quickbooks", "2", "Company 2", {}, origin="test")
    response = await client.post("/api/clients/2/links", json=body)
    assert response.status == 200, await response.text()
    assert (await response.json()) == {"client": 2, "linked": body}
    assert (await (await client.get("/api/clients/reviews")).json()) == {"reviews": []}
    listed = (await (await client.get("/api/clients")).json())["clients"]
    bolt = next(c for c in listed if c["id"] == 2)
    assert {"provider_id": "10", "matched_by": "manual"}.items() <= bolt["links"][-1].items()


async def test_bad_link_requests_get_a_clear_answer(hub_client):
    client = await hub_client()
    await client.app[HUB].add_connection("quickbooks", "2", "Company 2", {}, origin="test")
    body = {"integration": "quickbooks", "connection": "quickbooks:2", "provider_id": "10"}
    elsewhere = {**body, "integration": "stripe"}
    gone = {**body, "connection": "quickbooks:3"}
    for path, payload, status, reason in [
        ("/api/clients/42/links", body, 404, "no such client"),
        ("/api/clients/x/links", body, 404, "no such client"),
        ("/api/clients/1/links", {"integration": "quickbooks"}, 400, "connection, provider_id"),
        ("/api/clients/1/links", [1], 400, "JSON object"),
        ("/api/clients/1/links", gone, 400, "no quickbooks connection 'quickbooks:3'"),
        ("/api/clients/1/links", elsewhere, 400, "no stripe connection 'quickbooks:2'"),
    ]:
        await client.app[HUB].store.clients.match(*SCOPE, [Candidate("1", "Acme")])
        response = await client.post(path, json=payload)
        assert response.status == status, (path, await response.text())
        assert reason in (await response.json())["error"]
    listed = (await (await client.get("/api/clients")).json())["clients"]
    assert [link["provider_id"] for c in listed for link in c["links"]] == ["1"]  # nothing more


async def test_the_registry_needs_the_admin_token(hub_client):
    client = await hub_client(authorized=False)
    for path in ("/api/clients", "/api/clients/reviews"):
        assert (await client.get(path)).status == 401
    assert (await client.post("/api/clients/1/links", json={})).status == 401
