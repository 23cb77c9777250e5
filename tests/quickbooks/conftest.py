"""Fixtures of the QuickBooks plugin's tests: a running sandbox and a hub connected to it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from hub.core import Hub
from hub.model import Connection
from hub.store.records import field_getter
from plugins.quickbooks.oauth import credentials_from
from plugins.quickbooks.reports import REPORT_STREAMS
from plugins.quickbooks.sandbox import (
    CompanySpec,
    RunningSandbox,
    SandboxConfig,
    SandboxState,
    start_sandbox,
)
from plugins.quickbooks.sync import BY_ENTITY, SPECS

INTUIT_SPECS = Path(__file__).resolve().parents[1] / "specs" / "intuit"
"""Intuit's published XSD, OAuth documents and webhook vectors (see tests/specs/README.md)."""

REALM = "9130350000000001"
OTHER_REALM = "9130350000000002"
TZ = timezone(timedelta(hours=-7))
START = datetime(2025, 6, 30, 9, 0, tzinfo=TZ)
VERIFIER = "test-verifier-token"
SMALL = {"Customer": 23, "Invoice": 57, "Vendor": 9, "Item": 5, "Payment": 12, "Bill": 8}
"""A small company: every stream has a few rows (the rest use the sandbox's defaults)."""


ENTITY_STREAMS = [spec.stream for spec in SPECS if spec.stream not in REPORT_STREAMS]
"""The streams the entity tests sync (``preferences`` and ``reports`` are the reports tests')."""

FAST = 1000
"""Requests per second the plugin's tests allow (Intuit's 10 would make every sync test slow);
the rate-limit tests use Intuit's own figures."""


def sandbox_config(**overrides: Any) -> SandboxConfig:
    """A frozen-clock sandbox with one small company."""
    settings: dict[str, Any] = {
        "companies": (CompanySpec(REALM, name="Willow Books", counts=SMALL),),
        "start_time": START,
        "freeze_clock": True,
        "rate_limit_per_second": FAST,
    }
    return SandboxConfig(**{**settings, **overrides})


@pytest.fixture
async def sandbox() -> AsyncIterator[RunningSandbox]:
    """The Intuit sandbox (API and OAuth on two ports) with a small company."""
    running = await start_sandbox(sandbox_config())
    yield running
    await running.close()


def qb_config(sandbox: RunningSandbox, **extra: Any) -> dict[str, Any]:
    """``[integrations.quickbooks]`` pointing at ``sandbox``."""
    config = sandbox.state.config
    section = {
        "client_id": config.client_id,
        "client_secret": config.client_secret,
        "base_url": sandbox.base_url,
        "oauth_base_url": sandbox.oauth_base_url,
        "webhook_verifier_token": VERIFIER,
        "sync_on_connect": False,
        "retry_base_delay": 0.01,
        "requests_per_second": FAST,
        "throttle_wait_s": 0.01,
        "streams": ENTITY_STREAMS,
        "reports_per_minute": FAST * 60,
        **extra,
    }
    return {"integrations": {"quickbooks": section}}


async def connect(hub: Hub, state: SandboxState, realm: str = REALM) -> Connection:
    """Store a connection for ``realm`` with fresh sandbox tokens (as the OAuth flow would)."""
    pair = state.issue_tokens(realm)
    tokens = {
        "access_token": pair.access_token,
        "refresh_token": pair.refresh_token,
        "expires_in": pair.expires_in,
        "x_refresh_token_expires_in": pair.x_refresh_token_expires_in,
    }
    return await hub.add_connection(
        "quickbooks", realm, f"Company {realm}", credentials_from(tokens, realm), origin="oauth"
    )


def live_rows(state: SandboxState, entity: str, realm: str = REALM) -> dict[str, dict[str, Any]]:
    """Every live row of ``entity`` as the hub stores it, by its id in the hub (inactive ones
    included)."""
    spec = BY_ENTITY[entity]
    table = state.company(realm).tables[entity]
    rows = spec.stored([table.render(i) for i in range(table.count) if table.is_live(i)])
    key = field_getter(spec.as_stream().key)
    return {str(key(row)): row for row in rows}
