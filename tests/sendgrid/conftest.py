"""Fixtures of the e-mail plugin's tests: a running SendGrid sandbox, a hub sending to it,
and a validator of the plugin's requests against SendGrid's published OpenAPI description."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import orjson
import pytest
from openapi_core import OpenAPI
from openapi_core.datatypes import RequestParameters

from plugins.sendgrid.runtime import Runtime, runtime_of
from plugins.sendgrid.sandbox import Captured, RunningSandbox, SandboxConfig, start_sandbox

SPECS = Path(__file__).resolve().parents[1] / "specs" / "sendgrid"
"""SendGrid's mail-send OpenAPI description and Event Webhook vector (tests/specs/README.md)."""
ADMINS = ["ops@firm.test", "partner@firm.test"]


@pytest.fixture
async def sandbox() -> AsyncIterator[RunningSandbox]:
    """The SendGrid sandbox, no rate limit. After the test, every mail-send request it
    received is validated against SendGrid's OpenAPI description."""
    running = await start_sandbox(SandboxConfig())
    yield running
    await running.close()
    assert_valid_mail_requests(running)


def sg_config(sandbox: RunningSandbox, **extra: Any) -> dict[str, Any]:
    """A hub configuration whose ``[integrations.sendgrid]`` points at ``sandbox``."""
    section = {
        "api_key": sandbox.state.config.api_key,
        "base_url": sandbox.base_url,
        "from_email": "hub@demo.test",
        "from_name": "Firm Hub",
        "firm_name": "Willow & Co",
        "alert_recipients": ADMINS,
        "event_webhook_public_keys": [sandbox.state.public_key],
        "request_max_delay": 0.05,
        **extra,
    }
    return {
        "integrations": {"sendgrid": section},
        "server": {"public_url": "https://hub.firm.test"},
    }


def running(hub: Any) -> Runtime:
    """The plugin's runtime inside ``hub`` (the Hub or its plugin API)."""
    api = getattr(hub, "api", hub)
    found = runtime_of(api)
    assert found is not None, "the sendgrid plugin did not start"
    return found


@dataclass
class _Request:
    """A captured sandbox request in openapi-core's request protocol."""

    captured: Captured

    host_url = "https://api.sendgrid.com"

    @property
    def path(self) -> str:
        return self.captured.path

    @property
    def method(self) -> str:
        return self.captured.method.lower()

    @property
    def parameters(self) -> RequestParameters:
        return RequestParameters(query=self.captured.query, header=self.captured.headers)

    @property
    def content_type(self) -> str:
        return self.captured.headers.get("Content-Type", "application/json")

    @property
    def body(self) -> bytes:
        return self.captured.body


@cache
def _mail_spec() -> OpenAPI:
    return OpenAPI.from_dict(orjson.loads((SPECS / "tsg_mail_v3.json").read_bytes()))


def assert_valid_mail_requests(sandbox: RunningSandbox) -> int:
    """Validate every mail-send request the sandbox received against SendGrid's OpenAPI
    description; return how many there were."""
    sends = [c for c in sandbox.state.requests if c.path.startswith("/v3/mail/")]
    for captured in sends:
        _mail_spec().validate_request(_Request(captured))
    return len(sends)


async def until(predicate: Callable[[], Any], timeout: float = 10.0) -> None:
    """Poll ``predicate`` until it is true (fails the test after ``timeout`` seconds)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await _value(predicate()):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.01)


async def _value(value: Any) -> Any:
    return await value if asyncio.iscoroutine(value) else value
