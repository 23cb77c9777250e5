"""Fixtures of the OpenAI tests: running OpenAI sandboxes whose every request and answer is
checked against OpenAI's OpenAPI description when the test ends, the real ``openai`` SDK
pointed at one; and for the plugin's tests an in-memory documents plugin (the
``read_document`` hook; the Azure plugin's own path is tested against Azurite) and hub
clients configured for both.

(No ``__init__.py`` in this folder: pytest would import it as a package named ``openai`` and
hide the SDK.)
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from hub import hookimpl
from hub.errors import ProviderError
from hub.model import HubEvent, StoredDocument
from hub.testing import hub_of
from plugins.openai.runtime import runtime_of
from plugins.openai.sandbox import RunningSandbox, SandboxConfig, start_sandbox
from tests.openai.spec import traffic_problems

KEY = "sk-test-sandbox-0123456789"

StartSandbox = Callable[..., Awaitable[RunningSandbox]]


def assert_traffic_valid(sandbox: RunningSandbox) -> None:
    """Fail when any request the sandbox logged, or its answer, breaks OpenAI's description."""
    problems = traffic_problems(sandbox.state.requests)
    assert not problems, "traffic does not match OpenAI's API:\n" + "\n".join(problems[:20])


@pytest.fixture
async def start_openai_sandbox() -> AsyncIterator[StartSandbox]:
    """Start OpenAI sandboxes: ``await start_openai_sandbox(requests_per_minute=2, ...)``
    (``SandboxConfig`` fields; the key is ``KEY``). Each is stopped, then its traffic checked
    against OpenAI's description, when the test ends."""
    started: list[RunningSandbox] = []

    async def start(**config: Any) -> RunningSandbox:
        running = await start_sandbox(SandboxConfig(**{"api_key": KEY, **config}))
        started.append(running)
        return running

    yield start
    for running in started:
        await running.close()
    for running in started:
        assert_traffic_valid(running)


@pytest.fixture
async def openai_sandbox(start_openai_sandbox: StartSandbox) -> RunningSandbox:
    """An OpenAI sandbox with the default configuration and the key ``KEY``; its traffic is
    checked against OpenAI's description when the test ends."""
    return await start_openai_sandbox()


@contextlib.asynccontextmanager
async def openai_sdk(sandbox: RunningSandbox, **options: Any) -> AsyncIterator[Any]:
    """The real ``openai`` SDK (``AsyncOpenAI``, no retries unless ``max_retries`` is given)
    pointed at ``sandbox``."""
    from openai import AsyncOpenAI

    settings = {"api_key": sandbox.api_key, "max_retries": 0, **options}
    client = AsyncOpenAI(base_url=sandbox.base_url, **settings)
    try:
        yield client
    finally:
        await client.close()


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
def sandbox(openai_sandbox: RunningSandbox) -> RunningSandbox:
    """The plugin tests' sandbox (its traffic checked against OpenAI's description)."""
    return openai_sandbox


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
