"""Shared fixtures: the hub's own pytest plugin (hub.testing) is loaded via its entry point."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from custom_accounting.sandbox import RunningSandbox, SandboxConfig, start_sandbox

pytest_plugins = ["tests.daemon"]  # the reap_daemons fixture


@pytest.fixture
async def ledger() -> AsyncIterator[RunningSandbox]:
    """The example plugin's sandbox with a small dataset."""
    sandbox = await start_sandbox(SandboxConfig(accounts=30, transactions=2500))
    yield sandbox
    await sandbox.close()


def ledger_config(sandbox: RunningSandbox, **extra: object) -> dict[str, object]:
    """``[integrations.custom_accounting]`` pointing at ``sandbox``."""
    return {
        "integrations": {
            "custom_accounting": {
                "base_url": sandbox.base_url,
                "api_token": sandbox.config.token,
                "page_size": 200,
                **extra,
            }
        }
    }
