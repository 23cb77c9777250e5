"""Undelete and previous-version recovery, and the health of a protected account, against the
recorded answers of Azure Blob Storage (``recorded.py``: Azurite has neither feature)."""

from __future__ import annotations

import aiohttp
import pytest

from hub.testing import hub_of
from plugins.azure_storage.sandbox import ACCOUNT_KEY
from tests.azure_storage.conftest import BLOCK
from tests.azure_storage.recorded import Account, app
from tests.azure_storage.test_documents import PDF, upload

CONTAINER = "documents"


async def protected(hub_client, aiohttp_server, account: Account, **extra):
    """A hub client configured for the fake account (``client.account``)."""
    server = await aiohttp_server(app(account))
    section = {
        "account_url": f"http://127.0.0.1:{server.port}/devstoreaccount1",
        "account_key": ACCOUNT_KEY,
        "container": CONTAINER,
        "block_size": BLOCK,
        "retry_total": 0,
        "timeout": 10,
        **extra,
    }
    client = await hub_client(config={"integrations": {"azure_storage": section}})
    client.account = account
    return client


async def repair(client) -> dict:
    response = await client.post("/api/documents/repair")
    assert response.status == 200
    return await response.json()


async def test_a_deleted_document_is_undeleted_when_soft_delete_is_on(hub_client, aiohttp_server):
    client = await protected(hub_client, aiohttp_server, Account(versioning=False))
    _, doc = await upload(client)
    client.account.delete(CONTAINER, doc["blob_name"])  # behind the hub's back
    report = await repair(client)
    assert (report["checked"], report["repaired"], report["failed"]) == (1, 1, 0)
    assert "undeleted (soft delete)" in report["repaired_documents"][0]["reason"]
    assert client.account.calls == [f"undelete {doc['blob_name']}"]
    fixed = await (await client.get(f"/api/documents/{doc['id']}")).json()
    assert fixed["state"] == "ok" and "undeleted" in fixed["problem"]
    assert await (await client.get(f"/api/documents/{doc['id']}/content")).read() == PDF


@pytest.mark.parametrize("damage", ["deleted", "overwritten"])
async def test_a_previous_version_is_copied_back_when_versioning_is_on(
    hub_client, aiohttp_server, damage
):
    client = await protected(hub_client, aiohttp_server, Account(soft_delete=True))
    _, doc = await upload(client)
    if damage == "deleted":
        client.account.delete(CONTAINER, doc["blob_name"])
    else:
        await upload_over(client, doc)
    report = await repair(client)
    assert (report["repaired"], report["failed"]) == (1, 0), report
    [repaired] = report["repaired_documents"]
    assert "restored version" in repaired["reason"]
    [call] = client.account.calls
    assert call.startswith(f"copy {doc['blob_name']}?versionid=")
    assert await (await client.get(f"/api/documents/{doc['id']}/content")).read() == PDF
    again = await repair(client)
    assert (again["ok"], again["repaired"]) == (1, 0)


async def upload_over(client, doc) -> None:
    """Another body under the document's name, its metadata kept (an overwrite by a tool)."""
    from tests.azure_storage.recorded import Version

    current = client.account.blob(CONTAINER, doc["blob_name"]).current
    other = Version(PDF[:-1] + b"!", dict(current.metadata), current.content_type)
    client.account.write(CONTAINER, doc["blob_name"], other)


async def test_without_protections_the_report_says_why_nothing_came_back(
    hub_client, aiohttp_server
):
    client = await protected(hub_client, aiohttp_server, Account(False, False))
    _, doc = await upload(client)
    client.account.delete(CONTAINER, doc["blob_name"])
    report = await repair(client)
    [failed] = report["failed_documents"]
    assert failed["reason"] == (
        "missing: no blob under its name; no copy under another name; "
        "no soft-deleted copy (soft delete off) and no previous version"
    )
    assert client.account.calls == []


async def test_health_of_a_protected_account_is_healthy_and_leaves_no_probe(
    hub_client, aiohttp_server
):
    client = await protected(hub_client, aiohttp_server, Account())
    hub = hub_of(client)
    [connection] = await hub.connections("azure_storage")
    report = await hub.check_health(connection)
    checks = {check.name: (check.ok, check.detail) for check in report.checks}
    assert report.status.value == "healthy", report
    assert checks["soft delete"] == (True, "enabled")
    assert checks["versioning"] == (True, "enabled")
    assert checks["write permission"][0] and checks["container reachable"][0]
    probe = client.account.blob(CONTAINER, ".hub-health-probe")
    assert probe.current is None and probe.versions == []  # no version piles up


async def test_a_blob_replaced_mid_download_cuts_the_connection(hub_client, aiohttp_server):
    client = await protected(hub_client, aiohttp_server, Account(), transfer_concurrency=1)
    _, doc = await upload(client)
    client.account.replace_after_first_range = b"%PDF-1.7 another document" * 4000
    response = await client.get(f"/api/documents/{doc['id']}/content")
    assert response.status == 200  # the headers went out with the first range
    with pytest.raises(aiohttp.ClientPayloadError):
        await response.read()  # the next range was refused (its ETag changed): never whole
