"""Health and diagnostics against Azurite: the container created and written, soft delete and
versioning off (a warning), a read-only credential, an unreachable account."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from azure.storage.blob import AccountSasPermissions, ResourceTypes, generate_account_sas

from hub.testing import hub_of
from plugins.azure_storage.sandbox import ACCOUNT, ACCOUNT_KEY, free_port
from tests.azure_storage.conftest import azure_config
from tests.azure_storage.test_documents import blob_service, upload

CONNECTION = f"azure_storage:{ACCOUNT}"


async def health(client):
    hub = hub_of(client)
    [connection] = await hub.connections("azure_storage")
    report = await hub.check_health(connection)
    return report, {check.name: (check.ok, check.detail) for check in report.checks}


async def test_azurite_is_reachable_and_writable_with_a_warning_for_the_protections(docs, azurite):
    report, checks = await health(docs)
    assert report.status.value == "warning"
    assert report.message == "soft delete is off; versioning is off"
    assert checks["container reachable"] == (True, f"{ACCOUNT}/{docs.container}")
    assert checks["write permission"][0]
    assert checks["soft delete"] == (False, "disabled")
    assert checks["versioning"] == (False, "disabled")
    async with blob_service(azurite) as service:
        container = service.get_container_client(docs.container)
        assert await container.exists()  # created by the check
        assert [blob.name async for blob in container.list_blobs()] == []  # no probe left


async def test_diagnostics_show_the_protections_and_the_last_repair(docs):
    await upload(docs)
    await docs.post("/api/documents/repair")
    dump = (await (await docs.get(f"/api/connections/{CONNECTION}/diagnostics")).json())["plugin"]
    assert dump["authentication"] == "connection string"
    storage = dump["storage"]
    assert (storage["reachable"], storage["writable"]) == (True, True)
    assert (storage["soft_delete"], storage["versioning"]) == (False, False)
    assert (dump["last_repair"]["checked"], dump["last_repair"]["ok"]) == (1, 1)


async def test_a_read_only_credential_is_reachable_but_cannot_write(
    hub_client, azurite, container_name
):
    async with blob_service(azurite) as service:
        await service.create_container(container_name)
    sas = generate_account_sas(
        ACCOUNT,
        ACCOUNT_KEY,
        ResourceTypes(service=True, container=True, object=True),
        AccountSasPermissions(read=True, list=True),
        expiry=datetime.now(UTC) + timedelta(hours=1),
    )
    reading = f"BlobEndpoint={azurite.blob_url};SharedAccessSignature={sas}"
    client = await hub_client(
        config=azure_config(azurite, container_name, connection_string=reading)
    )
    report, checks = await health(client)
    assert report.status.value == "error"
    assert report.message.startswith("cannot write: ")
    assert checks["container reachable"][0]
    assert checks["write permission"][0] is False
    assert "403" in checks["write permission"][1]


async def test_an_unreachable_account_is_an_error(hub_client, azurite, container_name):
    nowhere = azurite.connection_string.replace(str(azurite.port), str(free_port()))
    client = await hub_client(
        config=azure_config(azurite, container_name, connection_string=nowhere)
    )
    report, checks = await health(client)
    assert report.status.value == "error"
    assert report.message.startswith("storage unreachable: network")
    assert checks["container reachable"][0] is False
