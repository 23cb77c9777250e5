"""Stripe sync throughput: the Stripe sandbox -> the hub's Stripe plugin (the SDK's client)
and engine -> a fresh SQLite file, beside a raw ``sqlite3`` bulk upsert of the same rows in
the same run; then an incremental run over 10,000 events.

    python bench/stripe.py                    # about 200,000 objects
    python bench/stripe.py --records 20000 --events 2000

The sandbox runs in its own process, seeded with an account of about ``--records`` objects:
three quarters customers, the rest paid monthly subscriptions, each with its invoice, payment
intent and charge (a sixteenth of ``--records`` subscriptions). The hub fully syncs every
stream (100 a page, every customer matched to the clients registry as it is stored); the raw
baseline upserts the very rows the hub stored (read back from its database) into tables of
the same shape with plain ``executemany``; only the upserts are timed. Then the benchmark
updates ``--events`` customers through the API (each update is one event) and times the
incremental run that reads those events oldest to newest and re-fetches each changed
customer. Peak RSS is this process's, taken after the hub's runs and before the raw
baseline. The last line is JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
# This file is stripe.py: with its folder first on the path, ``import stripe`` (the SDK) would
# import this file again. The folder goes last, after site-packages.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE] + [str(HERE)]

import aiohttp  # noqa: E402
from child import start_ready_child  # noqa: E402
from rawsql import upsert_hub_rows  # noqa: E402

from hub.config import load_settings  # noqa: E402
from hub.core import Hub  # noqa: E402
from hub.logs import configure_logging  # noqa: E402
from hub.store.records import field_getter, table_name  # noqa: E402
from plugins.stripe.sync import SPECS  # noqa: E402

KEY = "sk_test_bench000"
CHANGERS = 16
"""Updates sent to the sandbox at once while making the events (not timed)."""


# --------------------------------------------------------------------------- child: sandbox


async def serve_sandbox(records: int) -> None:
    """The child process: a sandbox of about ``records`` objects, until killed."""
    from plugins.stripe.sandbox import SandboxConfig, start_sandbox

    sandbox = await start_sandbox(
        SandboxConfig(secret_key=KEY, webhook_secret="whsec_bench", webhook_url=None)
    )
    subscriptions = records // 16  # with its invoice, payment intent and charge: 4 objects
    sandbox.state.seed(
        customers=records - 4 * subscriptions, products=5, subscriptions=subscriptions
    )
    print("ready " + json.dumps({"base_url": sandbox.base_url}), flush=True)
    await asyncio.Event().wait()


def start_sandbox(records: int) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    """Start the child and wait until it serves."""
    proc, ready = start_ready_child([__file__, "--serve-sandbox", "--records", str(records)])
    return proc, json.loads(ready)


# --------------------------------------------------------------------------- the hub


async def make_events(base_url: str, ids: list[str]) -> None:
    """Update each customer of ``ids`` once through the API: one event each."""
    headers = {"Authorization": f"Bearer {KEY}"}
    queue = list(enumerate(ids))
    async with aiohttp.ClientSession(headers=headers) as session:

        async def worker() -> None:
            while queue:
                number, customer = queue.pop()
                url = f"{base_url}/v1/customers/{customer}"
                async with session.post(url, data={"description": f"bench {number}"}) as r:
                    if r.status != 200:
                        raise SystemExit(f"update refused: {r.status} {await r.text()}")

        await asyncio.gather(*(worker() for _ in range(CHANGERS)))


async def hub_runs(base_url: str, folder: Path, events: int) -> dict[str, Any]:
    """A full sync, then ``events`` updates and an incremental run; counts and timings."""
    settings = load_settings(
        overrides={
            "store": {"path": str(folder / "hub.db")},
            "logging": {"level": "warning"},
            "integrations": {"stripe": {"secret_key": KEY, "base_url": base_url}},
        },
        read_default=False,
    )
    hub = Hub(settings)
    await hub.start()
    try:
        (connection,) = await hub.connections("stripe")
        started = time.perf_counter()
        full = await hub.engine.run(connection.id, full=True, trigger="bench")
        full_s = time.perf_counter() - started
        if full.state != "succeeded":
            raise SystemExit(f"hub sync failed: {full.error}")
        ids = await hub.store.db.read(
            lambda db: [
                row[0]
                for row in db.execute(
                    f"SELECT id FROM {table_name('stripe', 'customers')} LIMIT ?",
                    [events],
                )
            ]
        )
        await make_events(base_url, ids)
        started = time.perf_counter()
        incremental = await hub.engine.run(connection.id, trigger="bench")
        incremental_s = time.perf_counter() - started
        if incremental.state != "succeeded":
            raise SystemExit(f"hub incremental sync failed: {incremental.error}")
    finally:
        await hub.stop()
    return {
        "connection": connection.id,
        "records": full.created,
        "full_s": full_s,
        "events": len(ids),
        "incremental_s": incremental_s,
        "incremental_updated": incremental.updated,
    }


# --------------------------------------------------------------------------- main


def main() -> None:
    """Run the hub's syncs and the raw baseline; print the figures and one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=200_000, help="objects, about")
    parser.add_argument("--events", type=int, default=10_000, help="updates for the incremental")
    parser.add_argument("--serve-sandbox", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_sandbox:
        asyncio.run(serve_sandbox(args.records))
        return
    configure_logging("warning", "console")
    print(f"starting the sandbox: about {args.records:,} objects...", flush=True)
    proc, sandbox = start_sandbox(args.records)
    try:
        with tempfile.TemporaryDirectory(prefix="hub-bench-stripe-") as tmp:
            folder = Path(tmp)
            hub = asyncio.run(hub_runs(sandbox["base_url"], folder, args.events))
            peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            streams = [spec.as_stream() for spec in SPECS]
            raw_records, raw_s = upsert_hub_rows(
                folder, "stripe", streams, hub["connection"], field_getter
            )
    finally:
        proc.terminate()
        proc.wait()
    records = hub["records"]
    hub_rate, raw_rate = records / hub["full_s"], raw_records / raw_s
    events_rate = hub["events"] / hub["incremental_s"]
    print(f"hub : {records:>9,} rows in {hub['full_s']:6.2f}s = {hub_rate:>9,.0f} rows/s")
    print(f"raw : {raw_records:>9,} rows in {raw_s:6.2f}s = {raw_rate:>9,.0f} rows/s")
    print(f"ratio hub/raw: {hub_rate / raw_rate:.2f}   peak RSS (hub process): {peak_mb:.0f} MB")
    print(f"incremental: {hub['events']:,} events in {hub['incremental_s']:.2f}s")
    print(
        json.dumps(
            {
                "records": records,
                "hub_per_s": round(hub_rate),
                "raw_per_s": round(raw_rate),
                "ratio": round(hub_rate / raw_rate, 3),
                "peak_rss_mb": round(peak_mb, 1),
                "events": hub["events"],
                "incremental_s": round(hub["incremental_s"], 3),
                "events_per_s": round(events_rate),
                "incremental_updated": hub["incremental_updated"],
            }
        )
    )


if __name__ == "__main__":
    main()
