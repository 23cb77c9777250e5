"""Sync throughput: the example plugin's sandbox -> the hub's engine -> a fresh SQLite file,
beside a raw ``sqlite3`` bulk upsert of the same records in the same run.

    python bench/sync.py                 # 200,000 transactions
    python bench/sync.py --million       # 1,000,000 transactions

The sandbox runs in its own process with every page pre-rendered, so the hub's figure measures
the hub (HTTP client, JSON parsing, row building, upserts, cursors), not the fake. Peak RSS is
this process's, taken after the hub's sync and before the raw baseline runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import tempfile
import time
from pathlib import Path

import orjson
from child import start_ready_child
from custom_accounting.sandbox import base_record, free_port
from rawsql import create_records_table, open_raw, timed_upsert

from hub.config import load_settings
from hub.core import Hub
from hub.logs import configure_logging

ACCOUNTS = 100
PAGE = 1000


def start_sandbox(transactions: int) -> tuple[subprocess.Popen[str], str]:
    """Start the pre-rendering sandbox in a child process; wait until it serves."""
    port = free_port()
    return start_ready_child(
        [
            "-m",
            "custom_accounting.sandbox",
            "--port",
            str(port),
            "--accounts",
            str(ACCOUNTS),
            "--transactions",
            str(transactions),
            "--prerender",
            "--page-size",
            str(PAGE),
        ]
    )


async def hub_sync(base_url: str, folder: Path) -> tuple[int, float]:
    """Full sync through the engine; return (records, seconds)."""
    settings = load_settings(
        read_default=False,
        overrides={
            "store": {"path": str(folder / "hub.db")},
            "logging": {"level": "warning"},
            "integrations": {
                "custom_accounting": {
                    "base_url": base_url,
                    "api_token": "ledger-sandbox-token",
                    "page_size": PAGE,
                }
            },
        },
    )
    hub = Hub(settings)
    await hub.start()
    try:
        started = time.perf_counter()
        result = await hub.engine.run("custom_accounting:default", full=True, trigger="bench")
        elapsed = time.perf_counter() - started
    finally:
        await hub.stop()
    if result.state != "succeeded":
        raise SystemExit(f"hub sync failed: {result.error}")
    return result.created, elapsed


def raw_upsert(transactions: int, folder: Path) -> tuple[int, float]:
    """The same records upserted with plain sqlite3 executemany into the same table shape."""
    conn = open_raw(folder / "raw.db")
    columns = ["account_id", "date", "amount", "currency", "updated_at"]
    sql = create_records_table(conn, "t", columns)
    elapsed = 0.0
    total = 0
    for start in range(0, transactions, PAGE):
        records = [
            base_record("transactions", i, ACCOUNTS)
            for i in range(start, min(start + PAGE, transactions))
        ]
        rows = [
            ("c", r["id"], *[r[c] for c in columns], orjson.dumps(r).decode(), "now", 1)
            for r in records
        ]
        elapsed += timed_upsert(conn, sql, rows)
        total += len(rows)
    conn.close()
    return total, elapsed


def main() -> None:
    """Run both, print the figures and one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--million", action="store_true", help="1,000,000 records")
    args = parser.parse_args()
    n = 1_000_000 if args.million else args.records
    configure_logging("warning", "console")
    print(f"starting sandbox with {n:,} transactions (pre-rendering pages)...", flush=True)
    proc, base_url = start_sandbox(n)
    try:
        with tempfile.TemporaryDirectory(prefix="hub-bench-") as tmp:
            folder = Path(tmp)
            records, hub_s = asyncio.run(hub_sync(base_url, folder))
            peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            raw_records, raw_s = raw_upsert(n, folder)
    finally:
        proc.terminate()
        proc.wait()
    hub_rate, raw_rate = records / hub_s, raw_records / raw_s
    print(f"hub : {records:>9,} records in {hub_s:6.2f}s = {hub_rate:>9,.0f} records/s")
    print(f"raw : {raw_records:>9,} records in {raw_s:6.2f}s = {raw_rate:>9,.0f} records/s")
    print(f"ratio hub/raw: {hub_rate / raw_rate:.2f}   peak RSS (hub process): {peak_mb:.0f} MB")
    print(
        json.dumps(
            {
                "records": records,
                "hub_per_s": round(hub_rate),
                "raw_per_s": round(raw_rate),
                "ratio": round(hub_rate / raw_rate, 3),
                "peak_rss_mb": round(peak_mb, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
