"""The repair pass: a document moved behind the hub's back is found again, a deleted one
reported."""

from __future__ import annotations

from azure.storage.blob.aio import BlobServiceClient

from tests.azure_storage.test_documents import PDF, upload


async def test_a_renamed_blob_is_found_and_a_deleted_one_reported(docs, azurite):
    _, moved = await upload(docs, name="moved.pdf")
    _, gone = await upload(docs, name="gone.pdf")
    async with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        container = service.get_container_client(docs.container)
        source = container.get_blob_client(moved["blob_name"])
        properties = await source.get_blob_properties()
        target = container.get_blob_client("firm/acme/renamed.pdf")
        await target.upload_blob(PDF, metadata=properties.metadata)
        await source.delete_blob()
        await container.get_blob_client(gone["blob_name"]).delete_blob()
    report = await (await docs.post("/api/documents/repair")).json()
    assert (report["checked"], report["ok"], report["repaired"], report["failed"]) == (2, 0, 1, 1)
    assert report["failed_documents"][0]["id"] == gone["id"]
    assert report["failed_documents"][0]["reason"].endswith(
        "no soft-deleted copy (soft delete off) and no previous version"
    )
    fixed = await (await docs.get(f"/api/documents/{moved['id']}")).json()
    assert fixed["blob_name"] == "firm/acme/renamed.pdf" and fixed["state"] == "ok"
    assert await (await docs.get(f"/api/documents/{moved['id']}/content")).read() == PDF
    assert (await (await docs.get(f"/api/documents/{gone['id']}")).json())["state"] == "missing"
