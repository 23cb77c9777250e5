"""Fixtures of the Azure Blob Storage plugin's tests: one Azurite for the session, a fresh
container per test, and a hub client configured for it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from hub import hookimpl
from hub.model import HubEvent
from plugins.azure_storage.sandbox import RunningAzurite, start_azurite

BLOCK = 64 * 1024
"""The smallest block size: tests cross block boundaries with small files."""


@pytest.fixture(scope="session")
def azurite() -> Iterator[RunningAzurite]:
    """Azurite's blob service on a free port, for the whole test session."""
    running = start_azurite()
    yield running
    running.close()


@pytest.fixture
def container_name() -> str:
    """A container name of this test's own."""
    return f"docs-{uuid.uuid4().hex[:12]}"


def azure_config(azurite: RunningAzurite, container: str, **extra: Any) -> dict[str, Any]:
    """``[integrations.azure_storage]`` pointing at ``azurite``."""
    section = {
        "connection_string": azurite.connection_string,
        "container": container,
        "block_size": BLOCK,
        "retry_total": 0,
        "timeout": 10,
        **extra,
    }
    return {"integrations": {"azure_storage": section}}


class Recorder:
    """An ``event`` hook plugin recording the documents' events."""

    __name__ = "recorder"

    def __init__(self) -> None:
        self.seen: list[HubEvent] = []

    @hookimpl
    def event(self, event: HubEvent) -> None:
        if event.type.startswith("document."):
            self.seen.append(event)


@pytest.fixture
async def docs(hub_client, azurite, container_name):
    """A hub client with the integration on Azurite (``docs.container`` names its container,
    ``docs.events`` records the ``document.*`` events)."""
    recorder = Recorder()
    client = await hub_client(plugins=[recorder], config=azure_config(azurite, container_name))
    client.container = container_name
    client.events = recorder.seen
    return client
