"""Azurite, Microsoft's local Blob Storage emulator, as this plugin's sandbox (tests, benchmark,
``advisoros-hub demo``).

``make test-deps`` installs it (npm) under ``.cache/azurite``; ``HUB_AZURITE`` names another
``azurite-blob`` executable. :func:`start_azurite` runs it on 127.0.0.1 and waits until it
accepts connections; the executable is run directly (not through ``npx``), so stopping its
process stops the emulator.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import tempfile
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_AZURITE = ROOT / ".cache" / "azurite" / "node_modules" / ".bin" / "azurite-blob"
ACCOUNT = "devstoreaccount1"
ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
"""Azurite's published development account and key (not a secret)."""
READY_TIMEOUT_S = 30.0


def azurite_path() -> Path:
    """The ``azurite-blob`` executable: ``HUB_AZURITE``, else the one ``make test-deps``
    installs."""
    return Path(os.environ.get("HUB_AZURITE") or DEFAULT_AZURITE)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RunningAzurite:
    """A started Azurite blob service."""

    process: subprocess.Popen[bytes]
    port: int
    location: Path
    _tmp: tempfile.TemporaryDirectory[str] | None = field(default=None, repr=False)

    @property
    def blob_url(self) -> str:
        """The account's blob endpoint."""
        return f"http://127.0.0.1:{self.port}/{ACCOUNT}"

    @property
    def connection_string(self) -> str:
        """A connection string for the development account on this instance."""
        return (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
            f"BlobEndpoint={self.blob_url};"
        )

    def stop(self) -> None:
        """Stop the emulator (its data stays in ``location`` until the sandbox is closed)."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=30)

    def close(self) -> None:
        """Stop it and remove its temporary data folder, if it made one."""
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()


def _wait_ready(process: subprocess.Popen[bytes], port: int) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while process.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"azurite not listening on {port}") from None
            time.sleep(0.05)
            continue
        return
    raise RuntimeError(f"azurite exited with {process.returncode}")


def start_azurite(location: Path | None = None, port: int = 0) -> RunningAzurite:
    """Start Azurite on 127.0.0.1 (a free port unless given) and wait until it listens; its
    data in ``location`` (a new temporary folder unless given).

    :raise FileNotFoundError: Azurite is not installed (run ``make test-deps``).
    """
    executable = azurite_path()
    if not executable.exists():
        raise FileNotFoundError(f"{executable} not found: run `make test-deps`")
    tmp = None if location is not None else tempfile.TemporaryDirectory(prefix="azurite-")
    where = location or Path(tmp.name if tmp else ".")
    port = port or free_port()
    command = [
        str(executable),
        "--silent",
        "--location",
        str(where),
        "--blobHost",
        "127.0.0.1",
        "--blobPort",
        str(port),
        "--skipApiVersionCheck",
        "--loose",
        "--disableTelemetry",
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    running = RunningAzurite(process, port, where, tmp)
    try:
        _wait_ready(process, port)
    except BaseException:
        running.close()
        raise
    return running


async def demo_settings(stack: AsyncExitStack) -> dict[str, dict[str, Any]] | None:
    """Azurite for the demo, if it is installed: the integration's settings pointing at it."""
    if not azurite_path().exists():
        return None
    azurite = await asyncio.to_thread(start_azurite)
    stack.callback(azurite.close)
    return {"azure_storage": {"connection_string": azurite.connection_string}}
