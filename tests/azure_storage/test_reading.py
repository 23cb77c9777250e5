"""Other plugins read a stored document through ``hub.read_document`` (the ``read_document``
hook), and analysis outcomes land on the document's record."""

from __future__ import annotations

import hashlib

import pytest

from hub.errors import ProviderError
from hub.testing import hub_of
from tests.azure_storage.test_documents import PDF, blob_service, upload


async def test_a_document_is_read_whole_and_checked(docs):
    _, doc = await upload(docs, headers={"X-Uploaded-By": "ann@example.com"})
    api = hub_of(docs).api
    stored = await api.read_document(doc["id"], len(PDF))
    assert stored is not None and stored.content == PDF
    assert (stored.client, stored.name, stored.content_type) == (
        "acme",
        "return.pdf",
        "application/pdf",
    )
    assert stored.sha256 == hashlib.sha256(PDF).hexdigest()
    assert stored.uploaded_by == "ann@example.com"
    too_big = await api.read_document(doc["id"], len(PDF) - 1)
    assert too_big is not None and too_big.content is None and too_big.size == len(PDF)
    assert await api.read_document("doc_unknown", len(PDF)) is None


async def test_a_changed_blob_is_refused_and_marked_corrupt(docs, azurite):
    _, doc = await upload(docs)
    async with blob_service(azurite) as service:
        blob = service.get_blob_client(docs.container, doc["blob_name"])
        await blob.upload_blob(PDF[:-1] + b"x", overwrite=True)
    with pytest.raises(ProviderError, match="marked corrupt"):
        await hub_of(docs).api.read_document(doc["id"], len(PDF))
    assert (await (await docs.get(f"/api/documents/{doc['id']}")).json())["state"] == "corrupt"


async def test_a_deleted_blob_is_refused_and_marked_missing(docs, azurite):
    _, doc = await upload(docs)
    async with blob_service(azurite) as service:
        await service.get_blob_client(docs.container, doc["blob_name"]).delete_blob()
    with pytest.raises(ProviderError, match="missing") as raised:
        await hub_of(docs).api.read_document(doc["id"], len(PDF))
    assert raised.value.status == 404
    assert (await (await docs.get(f"/api/documents/{doc['id']}")).json())["state"] == "missing"


@pytest.mark.parametrize(
    ("event", "state"), [("document.analyzed", "analyzed"), ("document.analysis_failed", "failed")]
)
async def test_an_analysis_outcome_is_recorded_on_the_document(docs, event, state):
    _, doc = await upload(docs)
    hub = hub_of(docs)
    await hub.emit(event, {"document_id": doc["id"]}, source="openai")
    await hub.dispatcher.drain()
    answer = await (await docs.get(f"/api/documents/{doc['id']}")).json()
    assert answer["analysis_state"] == state
