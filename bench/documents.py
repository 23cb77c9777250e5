"""Documents: a large upload and download through the hub beside the Azure SDK's own, against
the same Azurite in the same run.

    python bench/documents.py [--size 1GiB] [--rounds 1]

1. Storage: Azurite (its data in a temporary folder on disk) and the daemon (its own process,
   configured for that Azurite). The bench streams ``--size`` bytes from a generator (it never
   holds the body) as ``POST /api/documents`` (multipart, chunked) and reads them back from
   ``GET /api/documents/{id}/content``; beside that the SDK (``azure.storage.blob.aio``,
   its defaults) uploads the same generator as a blob and downloads it. Each way the hub's
   MB/s over the SDK's must be >= 0.7, and the daemon's peak RSS (``VmHWM``) < 150 MB.
2. Analysis (1,000 small documents through the OpenAI sandbox): the ``analysis`` field of
   the JSON line, filled in by the OpenAI plugin's part of the benchmark; null until then.

Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import re
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
from azure.storage.blob.aio import BlobServiceClient
from custom_accounting.sandbox import free_port
from webhooks import hub_command, peak_rss_mb, server

from plugins.azure_storage.sandbox import RunningAzurite, start_azurite

TOKEN = "bench-documents-token-of-32-chars"
MIB = 1024 * 1024
PIECE = os.urandom(MIB)
"""The body is this MiB repeated (random, so nothing on the way can compress it)."""
CONTAINER = "bench"
UNITS = {"": 1, "k": 1024, "m": MIB, "g": 1024 * MIB}


def parse_size(text: str) -> int:
    """``1GiB``, ``64MiB``, ``512k`` or a number of bytes."""
    found = re.fullmatch(r"(\d+)\s*([kmg]?)(?:i?b)?", text.strip().lower())
    if not found or int(found.group(1)) < 1:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (say 1GiB, 64MiB or bytes)")
    return int(found.group(1)) * UNITS[found.group(2)]


async def body(size: int) -> AsyncIterator[bytes]:
    """``size`` bytes in MiB pieces, made as they are sent."""
    sent = 0
    while sent < size:
        piece = PIECE[: min(MIB, size - sent)]
        sent += len(piece)
        yield piece


def expected_sha256(size: int) -> str:
    """The SHA-256 of :func:`body` (computed before the timing starts)."""
    digest = hashlib.sha256()
    full, rest = divmod(size, MIB)
    for _ in range(full):
        digest.update(PIECE)
    digest.update(PIECE[:rest])
    return digest.hexdigest()


def hub_config(folder: Path, port: int, azurite: RunningAzurite, size: int) -> Path:
    """The daemon's hub.toml: the integration on ``azurite``, uploads up to ``size``."""
    config = folder / "hub.toml"
    config.write_text(
        f'[server]\nport = {port}\n[store]\npath = "{folder / "hub.db"}"\n'
        f'[logging]\nlevel = "warning"\n[admin]\ntoken = "{TOKEN}"\n'
        f"[integrations.azure_storage]\n"
        f'connection_string = "{azurite.connection_string}"\n'
        f'container = "{CONTAINER}"\nmax_upload_bytes = {size}\n'
    )
    return config


async def timed(action: Callable[[], Awaitable[int]], size: int) -> float:
    """MB/s of ``action``, which must move ``size`` bytes."""
    started = time.perf_counter()
    moved = await action()
    elapsed = time.perf_counter() - started
    if moved != size:
        raise SystemExit(f"moved {moved} bytes, not {size}")
    return size / MIB / elapsed


async def hub_round(http: aiohttp.ClientSession, base: str, size: int, sha: str) -> list[float]:
    """Upload then download through the hub; MB/s each way."""
    document: dict[str, Any] = {}

    async def upload() -> int:
        form = aiohttp.FormData()
        form.add_field("client", "bench")
        form.add_field("file", body(size), filename="big.bin")
        async with http.post(f"{base}/api/documents", data=form) as response:
            document.update(await response.json())
            if response.status != 201 or document["sha256"] != sha:
                raise SystemExit(f"hub upload: {response.status} {document}")
        return int(document["size"])

    async def download() -> int:
        received = 0
        async with http.get(f"{base}/api/documents/{document['id']}/content") as response:
            async for chunk in response.content.iter_chunked(MIB):
                received += len(chunk)
        return received

    speeds = [await timed(upload, size), await timed(download, size)]
    async with http.delete(f"{base}/api/documents/{document['id']}"):
        pass
    return speeds


async def sdk_round(azurite: RunningAzurite, size: int) -> list[float]:
    """Upload then download with the SDK straight to Azurite; MB/s each way."""
    async with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        blob = service.get_blob_client(CONTAINER, "direct/big.bin")

        async def upload() -> int:
            await blob.upload_blob(body(size), overwrite=True)
            return size

        async def download() -> int:
            received = 0
            async for chunk in (await blob.download_blob()).chunks():
                received += len(chunk)
            return received

        speeds = [await timed(upload, size), await timed(download, size)]
        await blob.delete_blob()
        return speeds


async def storage(azurite: RunningAzurite, port: int, size: int, rounds: int) -> dict[str, Any]:
    """The SDK's and the hub's rounds, alternating; medians of MB/s."""
    sha = expected_sha256(size)
    base = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {TOKEN}"}
    timeout = aiohttp.ClientTimeout(total=None, sock_read=300)
    hub: list[list[float]] = []
    sdk: list[list[float]] = []
    async with aiohttp.ClientSession(headers=headers, timeout=timeout) as http:
        for number in range(1, rounds + 1):
            sdk.append(await sdk_round(azurite, size))
            hub.append(await hub_round(http, base, size, sha))
            print(
                f"round {number}: upload hub {hub[-1][0]:.0f} MB/s, sdk {sdk[-1][0]:.0f} MB/s; "
                f"download hub {hub[-1][1]:.0f} MB/s, sdk {sdk[-1][1]:.0f} MB/s"
            )
    out: dict[str, Any] = {"size_bytes": size, "rounds": rounds}
    for index, way in enumerate(("upload", "download")):
        mine = statistics.median(r[index] for r in hub)
        theirs = statistics.median(r[index] for r in sdk)
        out |= {
            f"{way}_hub_mb_s": round(mine, 1),
            f"{way}_sdk_mb_s": round(theirs, 1),
            f"{way}_ratio": round(mine / theirs, 3),
        }
    return out


def main() -> None:
    """Run the storage part against a daemon and Azurite; print the figures and a JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=parse_size, default=1024 * MIB, help="default 1GiB")
    parser.add_argument("--rounds", type=int, default=1, help="SDK + hub pairs")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hub-bench-docs-") as tmp:
        folder = Path(tmp)
        azurite = start_azurite(folder / "azurite")
        try:
            port = free_port()
            config = hub_config(folder, port, azurite, args.size)
            with server(hub_command(config), port, "/readyz") as daemon:
                idle = peak_rss_mb(daemon)
                figures = asyncio.run(storage(azurite, port, args.size, args.rounds))
                peak = peak_rss_mb(daemon)
        finally:
            azurite.close()
    print(
        f"upload ratio {figures['upload_ratio']:.2f}, download ratio "
        f"{figures['download_ratio']:.2f}; hub peak RSS {peak:.0f} MB (idle {idle:.0f} MB)"
    )
    storage_figures = {**figures, "hub_idle_rss_mb": idle, "hub_peak_rss_mb": peak}
    print(json.dumps({"storage": storage_figures, "analysis": None}))


if __name__ == "__main__":
    main()
