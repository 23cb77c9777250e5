"""The documents benchmark's second half: small documents analysed through the OpenAI sandbox
with its rate limit on, against what that limit allows.

The sandbox runs in its own process at ``--rpm`` requests per minute with a one-second burst
(a steady rate). The daemon (Azure documents on Azurite, OpenAI on the sandbox, analysis on
request) stores ``--documents`` small receipts first; then the clock starts, every document
is queued with ``POST /api/documents/{id}/analyze`` and the bench waits until each analysis
has ended. ``documents_per_s`` over ``allowed_per_s`` (``rpm / 60``) must be >= 0.8: the
plugin's concurrency and its retries after the sandbox's 429s keep the limit busy without
wasting it.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
from custom_accounting.sandbox import free_port
from webhooks import hub_command, peak_rss_mb, server

from plugins.azure_storage.sandbox import RunningAzurite

TOKEN = "bench-analysis-token-of-32-chars"
OPENAI_KEY = "sk-bench-analysis-key-0123456789"
CLIENT = "bench-analysis"
SENDERS = 32
"""Requests the bench has in flight at once (uploads, queueing, polls)."""


def receipt(number: int) -> bytes:
    """A small receipt the model reads: its lines name the figures it extracts."""
    cents = 1000 + number
    return (
        f"Receipt {number}\nMerchant: Corner Office Supplies\nDate: 2026-11-{number % 28 + 1:02d}\n"
        f"Subtotal: {cents // 100}.{cents % 100:02d}\nTax: 0.00\n"
        f"Total: {cents // 100}.{cents % 100:02d}\nCurrency: USD\n"
    ).encode()


def sandbox_command(port: int, rpm: int) -> list[str]:
    """The OpenAI sandbox at ``rpm`` requests a minute, a steady rate (one-second burst)."""
    return [
        sys.executable,
        "-m",
        "plugins.openai.sandbox",
        "--port",
        str(port),
        "--rpm",
        str(rpm),
        "--burst-seconds",
        "1",
        "--api-key",
        OPENAI_KEY,
    ]


def hub_config(folder: Path, port: int, azurite: RunningAzurite, sandbox_port: int) -> Path:
    """The daemon's hub.toml: documents on ``azurite``, analysis on the sandbox, on request."""
    config = folder / "analysis-hub.toml"
    config.write_text(
        f'[server]\nport = {port}\n[store]\npath = "{folder / "analysis.db"}"\n'
        f'[logging]\nlevel = "warning"\n[admin]\ntoken = "{TOKEN}"\n'
        f"[integrations.azure_storage]\n"
        f'connection_string = "{azurite.connection_string}"\ncontainer = "analysis"\n'
        f"[integrations.openai]\n"
        f'api_key = "{OPENAI_KEY}"\nbase_url = "http://127.0.0.1:{sandbox_port}/v1"\n'
        f'analyze_on_upload = false\nplan = "enterprise"\nmax_output_tokens = 500\n'
        f"concurrency = 8\nqueue_size = 10000\n"
    )
    return config


async def upload_all(http: aiohttp.ClientSession, base: str, count: int) -> list[str]:
    """Store ``count`` receipts; their document ids in order."""
    gate = asyncio.Semaphore(SENDERS)

    async def one(number: int) -> str:
        form = aiohttp.FormData()
        form.add_field("client", CLIENT)
        form.add_field("file", receipt(number), filename=f"receipt-{number}.txt")
        async with gate, http.post(f"{base}/api/documents", data=form) as response:
            document = await response.json()
            if response.status != 201:
                raise SystemExit(f"upload {number}: {response.status} {document}")
            return str(document["id"])

    return list(await asyncio.gather(*(one(n) for n in range(count))))


async def queue_all(http: aiohttp.ClientSession, base: str, ids: list[str]) -> None:
    """``POST /api/documents/{id}/analyze`` for each document, as receipts."""
    gate = asyncio.Semaphore(SENDERS)

    async def one(document_id: str) -> None:
        url = f"{base}/api/documents/{document_id}/analyze"
        async with gate, http.post(url, json={"type": "receipt"}) as response:
            if response.status != 202:
                reason = await response.text()
                raise SystemExit(f"analyze {document_id}: {response.status} {reason}")

    await asyncio.gather(*(one(document_id) for document_id in ids))


async def wait_all(http: aiohttp.ClientSession, base: str, ids: list[str]) -> dict[str, int]:
    """Wait until every analysis has ended; how many ended in each state.

    Analyses end roughly in the order they were queued, so each pass asks about the pending
    ones from the oldest and stops at the first still running.
    """
    pending, states = list(ids), {"analyzed": 0, "failed": 0}
    while pending:
        while pending:
            async with http.get(f"{base}/api/documents/{pending[0]}/analysis") as response:
                state = (await response.json()).get("state") if response.status == 200 else None
            if state not in states:
                break
            states[state] += 1
            pending.pop(0)
        if pending:
            await asyncio.sleep(0.2)
    return states


async def analyse(base: str, count: int, rpm: int) -> dict[str, Any]:
    """Upload, then time the analysis of ``count`` documents."""
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with aiohttp.ClientSession(headers=headers) as http:
        ids = await upload_all(http, base, count)
        started = time.perf_counter()
        await queue_all(http, base, ids)
        states = await wait_all(http, base, ids)
        elapsed = time.perf_counter() - started
    rate, allowed = count / elapsed, rpm / 60
    return {
        "documents": count,
        "analyzed": states["analyzed"],
        "failed": states["failed"],
        "seconds": round(elapsed, 2),
        "documents_per_s": round(rate, 2),
        "allowed_per_s": round(allowed, 2),
        "ratio": round(rate / allowed, 3),
    }


def run_analysis(folder: Path, azurite: RunningAzurite, count: int, rpm: int) -> dict[str, Any]:
    """The sandbox and a daemon of their own; the figures of :func:`analyse`."""
    sandbox_port, port = free_port(), free_port()
    config = hub_config(folder, port, azurite, sandbox_port)
    with (
        server(sandbox_command(sandbox_port, rpm), sandbox_port, "/_sandbox/stats"),
        server(hub_command(config), port, "/readyz") as daemon,
    ):
        figures = asyncio.run(analyse(f"http://127.0.0.1:{port}", count, rpm))
        figures["hub_peak_rss_mb"] = peak_rss_mb(daemon)
    return figures
