"""The documents API against Azurite: upload, list, metadata, content, link, delete."""

from __future__ import annotations

import hashlib

import aiohttp
from azure.storage.blob.aio import BlobServiceClient

from hub.testing import hub_of
from tests.azure_storage.conftest import BLOCK

PDF = b"%PDF-1.7\n" + bytes(range(256)) * 700  # crosses two block boundaries


def form(data: bytes, name: str = "return.pdf", client: str = "acme", **kwargs) -> aiohttp.FormData:
    body = aiohttp.FormData()
    body.add_field("client", client)
    body.add_field(
        "file", data, filename=name, content_type=kwargs.get("type", "application/octet-stream")
    )
    return body


async def upload(docs, data: bytes = PDF, **kwargs):
    response = await docs.post(
        "/api/documents", data=form(data, **kwargs), headers=kwargs.get("headers", {})
    )
    return response.status, await response.json()


def blob_service(azurite) -> BlobServiceClient:
    return BlobServiceClient.from_connection_string(azurite.connection_string)


async def test_an_upload_is_stored_recorded_and_announced(docs, azurite):
    hub = hub_of(docs)
    status, doc = await upload(docs, headers={"X-Uploaded-By": "ann@example.com"})
    assert status == 201, doc
    assert doc["size"] == len(PDF) > 2 * BLOCK
    assert doc["sha256"] == hashlib.sha256(PDF).hexdigest()
    assert doc["content_type"] == "application/pdf"  # sniffed, not the declared octet-stream
    assert doc["blob_name"].startswith("firm/acme/") and doc["blob_name"].endswith("_return.pdf")
    assert doc["state"] == "ok" and doc["analysis_state"] == "pending"
    async with blob_service(azurite) as service:
        blob = service.get_blob_client(docs.container, doc["blob_name"])
        properties = await blob.get_blob_properties()
        assert properties.metadata == {
            "document_id": doc["id"],
            "client": "acme",
            "sha256": doc["sha256"],
        }
        assert properties.content_settings.content_type == "application/pdf"
        assert properties.etag == doc["etag"]
    await hub.dispatcher.drain()
    [event] = docs.events
    assert event.type == "document.uploaded" and event.source == "azure_storage"
    assert dict(event.data) == {
        "id": doc["id"],
        "client": "acme",
        "name": "return.pdf",
        "content_type": "application/pdf",
        "size": len(PDF),
        "sha256": doc["sha256"],
        "uploaded_by": "ann@example.com",
    }


async def test_list_metadata_content_and_delete(docs, azurite):
    _, first = await upload(docs, client="acme")
    _, second = await upload(docs, b"a,b\n1,2\n", name="t.csv", client="beta")
    listed = await (await docs.get("/api/documents?client=acme")).json()
    assert [d["id"] for d in listed["documents"]] == [first["id"]]
    everything = await (await docs.get("/api/documents")).json()
    assert {d["id"] for d in everything["documents"]} == {first["id"], second["id"]}
    assert (await (await docs.get(f"/api/documents/{second['id']}")).json())[
        "content_type"
    ] == "text/csv"

    response = await docs.get(f"/api/documents/{first['id']}/content")
    assert response.status == 200
    assert await response.read() == PDF
    assert response.headers["Content-Type"] == "application/pdf"

    response = await docs.delete(f"/api/documents/{first['id']}")
    assert response.status == 200
    assert (await docs.get(f"/api/documents/{first['id']}")).status == 404
    async with blob_service(azurite) as service:
        names = [b.name async for b in service.get_container_client(docs.container).list_blobs()]
    assert names == [second["blob_name"]]
