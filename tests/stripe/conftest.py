"""Fixtures of the Stripe tests: every sandbox a test starts validates its traffic against
Stripe's OpenAPI description, and the test fails on a mismatch."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from plugins.stripe.sandbox import (
    RunningSandbox,
    SandboxConfig,
    set_default_validator,
    start_sandbox,
)
from tests.stripe.spec import SpecValidator

KEY = "sk_test_sandbox123"
WEBHOOK_SECRET = "whsec_sandbox123"


@pytest.fixture(autouse=True)
def spec_validator() -> Iterator[SpecValidator]:
    """Validate every request and answer of every Stripe sandbox started in the test (unless
    its config names another validator); fail the test on any mismatch."""
    validator = SpecValidator()
    set_default_validator(validator)
    try:
        yield validator
    finally:
        set_default_validator(None)
    assert not validator.problems, "traffic does not match Stripe's API:\n" + "\n".join(
        validator.problems[:20]
    )


@pytest.fixture
async def stripe_sandbox() -> AsyncIterator[RunningSandbox]:
    """A Stripe sandbox with the test key ``KEY`` and webhook secret ``WEBHOOK_SECRET``."""
    running = await start_sandbox(SandboxConfig(secret_key=KEY, webhook_secret=WEBHOOK_SECRET))
    yield running
    await running.close()


@contextlib.asynccontextmanager
async def stripe_sdk(
    sandbox: RunningSandbox, key: str = KEY, retries: int = 0
) -> AsyncIterator[Any]:
    """The real ``stripe`` SDK (``StripeClient`` on aiohttp) pointed at ``sandbox``."""
    import stripe

    http = stripe.AIOHTTPClient()
    try:
        yield stripe.StripeClient(
            key,
            http_client=http,
            base_addresses={"api": sandbox.base_url},
            max_network_retries=retries,
        )
    finally:
        await http.close_async()
