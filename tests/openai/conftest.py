"""Fixtures of the OpenAI tests: running OpenAI sandboxes whose every request and answer is
checked against OpenAI's OpenAPI description when the test ends, and the real ``openai`` SDK
pointed at one.

(No ``__init__.py`` in this folder: pytest would import it as a package named ``openai`` and
hide the SDK.)
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

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
