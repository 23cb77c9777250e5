"""Fixtures of the OpenAI plugin's tests: the plugin's sandbox, an in-memory documents
plugin (the ``read_document`` hook; the Azure plugin's own path is tested against Azurite)
and a hub client configured for both."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from hub import hookimpl
from hub.errors import ProviderError
from hub.model import HubEvent, StoredDocument
from hub.testing import hub_of
from plugins.openai.runtime import runtime_of
from plugins.openai.sandbox import RunningSandbox, SandboxConfig, start_sandbox

RECEIPT = b"""merchant: Corner Cafe
currency: USD
subtotal: 10.00
tax: 0.80
total: 10.80
summary: A cafe receipt.
confidence: 0.9
"""


class Documents:
    """Documents kept in memory, given through ``read_document``; records analysis events."""

    __name__ = "documents"

    def __init__(self) -> None:
        self.stored: dict[str, StoredDocument] = {}
        self.events: list[HubEvent] = []
        self.broken: set[str] = set()

    def add(self, content: bytes, name: str = "receipt.txt", kind: str = "text/plain") -> str:
        """Store a document; its id."""
        document_id = f"doc_{len(self.stored) + 1}"
        self.stored[document_id] = StoredDocument(
            id=document_id,
            client="acme",
            name=name,
            content_type=kind,
            size=len(content),
            sha256=hashlib.sha256(content).hexdigest(),
            uploaded_by="ann@example.com",
            content=content,
        )
        return document_id

    @hookimpl
    def read_document(self, document_id: str, max_bytes: int) -> StoredDocument | None:
        document = self.stored.get(document_id)
        if document is None:
            return None
        if document_id in self.broken and max_bytes:
            raise ProviderError(f"document {document_id}: its blob is missing", status=404)
        if document.size > max_bytes:
            return StoredDocument(**{**document.__dict__, "content": None})
        return document

    @hookimpl
    def event(self, event: HubEvent) -> None:
        if event.type.startswith("document.analy"):
            self.events.append(event)


@pytest.fixture
async def sandbox() -> AsyncIterator[RunningSandbox]:
    """A fresh OpenAI sandbox."""
    running = await start_sandbox(SandboxConfig())
    yield running
    await running.close()


def openai_config(sandbox: RunningSandbox, **extra: Any) -> dict[str, Any]:
    """``[integrations.openai]`` pointing at ``sandbox`` (no waiting between retries)."""
    section = {
        "api_key": sandbox.state.config.api_key,
        "base_url": sandbox.base_url,
        "analyze_on_upload": False,
        "max_retries": 2,
        **extra,
    }
    return {"integrations": {"openai": section}}


@pytest.fixture
def make_client(hub_client, sandbox):
    """A factory of hub clients with the OpenAI plugin on ``sandbox`` and in-memory documents
    (``client.documents``); ``make_client(**settings)``."""

    async def make(documents: Documents | None = None, **settings: Any) -> Any:
        documents = documents or Documents()
        client = await hub_client(
            plugins=[documents],
            config=openai_config(sandbox, **settings),
            builtins=("plugins.openai",),
        )
        client.documents = documents
        client.sandbox = sandbox
        return client

    return make


async def finished(client: Any, document_id: str) -> dict[str, Any]:
    """Wait for the document's queued analysis to end; its latest analysis (and the events
    it emitted, delivered)."""
    hub = hub_of(client)
    runtime = runtime_of(hub.api)
    assert runtime is not None
    await runtime.queue.drain()
    await hub.dispatcher.drain()
    response = await client.get(f"/api/documents/{document_id}/analysis")
    assert response.status == 200, await response.text()
    answer: dict[str, Any] = await response.json()
    return answer


async def analyse(client: Any, document_id: str, kind: str | None = None) -> dict[str, Any]:
    """Ask for an analysis and wait for it; the analysis."""
    body = {"type": kind} if kind else None
    response = await client.post(f"/api/documents/{document_id}/analyze", json=body)
    assert response.status == 202, await response.text()
    return await finished(client, document_id)
