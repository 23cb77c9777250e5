"""A webhook load generator that counts every answer: each connection posts signed requests in
a loop and, at the deadline, waits for its last answer before it stops, so every request sent
is answered and counted (wrk stops with requests in flight, which the hub may have stored).

    python bench/loadgen.py URL SECRET --connections 256 --duration 10 --body-bytes 1024

Prints one JSON line: {"2xx", "503", "other", "errors", "requests"}.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import os
import time

import aiohttp


async def run(
    url: str, secret: str, connections: int, duration: float, size: int
) -> dict[str, int]:
    """Post until ``duration`` seconds have passed; count answers by kind."""
    counts = {"2xx": 0, "503": 0, "other": 0, "errors": 0}
    body = json.dumps({"event": "bench.overload", "pad": "x" * max(0, size - 40)}).encode()
    signature = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    prefix = os.urandom(4).hex()
    deadline = time.monotonic() + duration
    connector = aiohttp.TCPConnector(limit=connections)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def worker(number: int) -> None:
            sent = 0
            while time.monotonic() < deadline:
                sent += 1
                headers = {"X-Signature": signature, "webhook-id": f"{prefix}-{number}-{sent}"}
                try:
                    async with session.post(url, data=body, headers=headers) as response:
                        await response.read()
                        status = response.status
                except (aiohttp.ClientError, TimeoutError):
                    counts["errors"] += 1
                    continue
                kind = "2xx" if 200 <= status < 300 else "503" if status == 503 else "other"
                counts[kind] += 1
                if status == 503:
                    await asyncio.sleep(0.01)  # a real sender waits; this one only briefly

        await asyncio.gather(*(worker(n) for n in range(connections)))
    return {**counts, "requests": sum(counts.values())}


def main() -> None:
    """Parse the arguments, run the load, print the counts."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url")
    parser.add_argument("secret")
    parser.add_argument("--connections", type=int, default=256)
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--body-bytes", type=int, default=1024)
    args = parser.parse_args()
    counts = asyncio.run(
        run(args.url, args.secret, args.connections, args.duration, args.body_bytes)
    )
    print(json.dumps(counts))


if __name__ == "__main__":
    main()
