"""Documents: a large upload and download through the hub beside the Azure SDK's own, against
the same Azurite in the same run.

    python bench/documents.py [--size 1GiB] [--rounds 2] [--documents 1000] [--rpm 600]

1. Storage: Azurite (its data in a temporary folder on disk) and the daemon (its own process,
   configured for that Azurite). The bench streams ``--size`` bytes from a generator (it never
   holds the body) as ``POST /api/documents`` (multipart, chunked) and reads them back from
   ``GET /api/documents/{id}/content``; beside that the SDK (``azure.storage.blob.aio``,
   its defaults) uploads the same generator as a blob and downloads it. A round makes both
   uploads, flushes the page cache to disk (``sync``), then both downloads; the hub goes
   first in odd rounds, the SDK in even ones. Each way the hub's median MB/s over the SDK's
   must be >= 0.7, and the daemon's peak RSS (``VmHWM``) < 150 MB.
2. Analysis (``--documents``, default 1,000 small receipts, through the OpenAI sandbox at
   ``--rpm``, default 600 requests a minute): documents analysed per second over what the
   limit allows must be >= 0.8 (:mod:`analysis`).

Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
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
from analysis import run_analysis
from azure.core.exceptions import ResourceExistsError
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
        # a 1 GiB body takes Azurite longer than the default 60 s body deadline
        f'[server]\nport = {port}\nbody_timeout = 3600\n[store]\npath = "{folder / "hub.db"}"\n'
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


class HubPath:
    """The document through the daemon's API."""

    name = "hub"

    def __init__(self, http: aiohttp.ClientSession, base: str, size: int, sha: str) -> None:
        self.http, self.base, self.size, self.sha = http, base, size, sha
        self.document: dict[str, Any] = {}

    async def upload(self) -> int:
        """``POST /api/documents``, the body streamed from :func:`body` (chunked)."""
        form = aiohttp.FormData()
        form.add_field("client", "bench")
        form.add_field("file", body(self.size), filename="big.bin")
        async with self.http.post(f"{self.base}/api/documents", data=form) as response:
            self.document = await response.json()
            if response.status != 201 or self.document["sha256"] != self.sha:
                raise SystemExit(f"hub upload: {response.status} {self.document}")
        return int(self.document["size"])

    async def download(self) -> int:
        """``GET /api/documents/{id}/content``, counted and dropped."""
        received = 0
        url = f"{self.base}/api/documents/{self.document['id']}/content"
        async with self.http.get(url) as response:
            async for chunk in response.content.iter_chunked(MIB):
                received += len(chunk)
        return received

    async def delete(self) -> None:
        """``DELETE /api/documents/{id}``."""
        async with self.http.delete(f"{self.base}/api/documents/{self.document['id']}"):
            pass


class SdkPath:
    """The same bytes with the SDK straight to Azurite (its defaults)."""

    name = "sdk"

    def __init__(self, service: BlobServiceClient, size: int) -> None:
        self.blob = service.get_blob_client(CONTAINER, "direct/big.bin")
        self.size = size

    async def upload(self) -> int:
        """``upload_blob`` of the same generator."""
        await self.blob.upload_blob(body(self.size), overwrite=True)
        return self.size

    async def download(self) -> int:
        """``download_blob().chunks()``, counted and dropped."""
        received = 0
        async for chunk in (await self.blob.download_blob()).chunks():
            received += len(chunk)
        return received

    async def delete(self) -> None:
        """``delete_blob``."""
        await self.blob.delete_blob()


async def one_round(paths: list[HubPath | SdkPath], size: int) -> dict[str, float]:
    """Both uploads, then (their bytes flushed to disk) both downloads, in ``paths``' order."""
    speeds = {}
    for path in paths:
        speeds[f"{path.name}_upload"] = await timed(path.upload, size)
    # what the uploads left in the page cache is written out before either download is timed
    await asyncio.to_thread(os.sync)
    for path in paths:
        speeds[f"{path.name}_download"] = await timed(path.download, size)
    for path in paths:
        await path.delete()
    return speeds


async def storage(azurite: RunningAzurite, port: int, size: int, rounds: int) -> dict[str, Any]:
    """The rounds, the hub first in every other one; medians of MB/s and their ratios."""
    sha = expected_sha256(size)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    timeout = aiohttp.ClientTimeout(total=None, sock_read=300)
    results = []
    async with (
        aiohttp.ClientSession(headers=headers, timeout=timeout) as http,
        BlobServiceClient.from_connection_string(azurite.connection_string) as service,
    ):
        with contextlib.suppress(ResourceExistsError):
            await service.create_container(CONTAINER)
        hub = HubPath(http, f"http://127.0.0.1:{port}", size, sha)
        sdk = SdkPath(service, size)
        for number in range(1, rounds + 1):
            order: list[HubPath | SdkPath] = [hub, sdk] if number % 2 else [sdk, hub]
            results.append(await one_round(order, size))
            got = results[-1]
            print(
                f"round {number} ({order[0].name} first): upload hub {got['hub_upload']:.0f} "
                f"MB/s, sdk {got['sdk_upload']:.0f} MB/s; download hub "
                f"{got['hub_download']:.0f} MB/s, sdk {got['sdk_download']:.0f} MB/s"
            )
    out: dict[str, Any] = {"size_bytes": size, "rounds": rounds}
    for way in ("upload", "download"):
        mine = statistics.median(r[f"hub_{way}"] for r in results)
        theirs = statistics.median(r[f"sdk_{way}"] for r in results)
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
    parser.add_argument("--rounds", type=int, default=2, help="hub + SDK pairs (alternating)")
    parser.add_argument("--documents", type=int, default=1000, help="documents to analyse")
    parser.add_argument("--rpm", type=int, default=600, help="the sandbox's requests a minute")
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
            analysis = run_analysis(folder, azurite, args.documents, args.rpm)
        finally:
            azurite.close()
    print(
        f"upload ratio {figures['upload_ratio']:.2f}, download ratio "
        f"{figures['download_ratio']:.2f}; hub peak RSS {peak:.0f} MB (idle {idle:.0f} MB)"
    )
    print(
        f"analysis: {analysis['documents_per_s']:.2f} documents/s of "
        f"{analysis['allowed_per_s']:.2f} allowed (ratio {analysis['ratio']:.2f}), "
        f"{analysis['failed']} failed"
    )
    storage_figures = {**figures, "hub_idle_rss_mb": idle, "hub_peak_rss_mb": peak}
    print(json.dumps({"storage": storage_figures, "analysis": analysis}))


if __name__ == "__main__":
    main()
