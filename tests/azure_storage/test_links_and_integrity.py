"""Read-only SAS links (Azurite enforces them) and downloads verified against the checksum."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import aiohttp
import pytest
from azure.storage.blob.aio import BlobServiceClient

from plugins.azure_storage.links import read_link
from tests.azure_storage.test_documents import PDF, upload


async def test_a_link_reads_the_document_and_nothing_else(docs):
    _, doc = await upload(docs)
    answer = await (await docs.get(f"/api/documents/{doc['id']}/link")).json()
    expires = datetime.fromisoformat(answer["expires_at"]) - datetime.now(UTC)
    assert timedelta(minutes=59) < expires <= timedelta(minutes=60)
    async with aiohttp.ClientSession() as http:
        async with http.get(answer["url"]) as response:
            assert response.status == 200
            assert await response.read() == PDF
        put = {"x-ms-blob-type": "BlockBlob"}
        async with http.put(answer["url"], data=b"evil", headers=put) as response:
            assert response.status == 403  # the link may read, never write
        async with http.delete(answer["url"]) as response:
            assert response.status == 403
    long = await (await docs.get(f"/api/documents/{doc['id']}/link?minutes=100000")).json()
    capped = datetime.fromisoformat(long["expires_at"]) - datetime.now(UTC)
    assert timedelta(hours=23) < capped <= timedelta(hours=24)  # sas_max_minutes
    assert (await docs.get(f"/api/documents/{doc['id']}/link?minutes=0")).status == 400


async def test_an_expired_link_is_refused_by_the_storage(docs, azurite):
    _, doc = await upload(docs)
    async with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        url = await read_link(
            service, docs.container, doc["blob_name"], datetime.now(UTC) - timedelta(seconds=1)
        )
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        assert response.status == 403


async def overwrite(azurite, container: str, name: str, data: bytes) -> None:
    async with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        await service.get_blob_client(container, name).upload_blob(data, overwrite=True)


async def test_a_changed_blob_aborts_the_download_and_is_marked_corrupt(docs, azurite):
    _, doc = await upload(docs)
    await overwrite(azurite, docs.container, doc["blob_name"], PDF[:-1] + b"!")
    response = await docs.get(f"/api/documents/{doc['id']}/content")
    assert response.status == 200  # the headers went out before the last chunk
    with pytest.raises(aiohttp.ClientPayloadError):
        await response.read()
    marked = await (await docs.get(f"/api/documents/{doc['id']}")).json()
    assert marked["state"] == "corrupt" and "checksum" in marked["problem"]


async def test_a_blob_of_another_size_or_none_is_refused_and_marked(docs, azurite):
    _, doc = await upload(docs)
    await overwrite(azurite, docs.container, doc["blob_name"], b"short")
    response = await docs.get(f"/api/documents/{doc['id']}/content")
    assert response.status == 409
    assert (await (await docs.get(f"/api/documents/{doc['id']}")).json())["state"] == "corrupt"
    async with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        await service.get_blob_client(docs.container, doc["blob_name"]).delete_blob()
    response = await docs.get(f"/api/documents/{doc['id']}/content")
    assert response.status == 409
    assert "missing" in (await response.json())["error"]
    assert (await (await docs.get(f"/api/documents/{doc['id']}")).json())["state"] == "missing"


async def test_unknown_documents_are_404(docs):
    for path in ("", "/content", "/link"):
        assert (await docs.get(f"/api/documents/doc_nope{path}")).status == 404
    assert (await docs.delete("/api/documents/doc_nope")).status == 404
