"""QuickBooks sync throughput: the Intuit sandbox -> the hub's QuickBooks plugin and engine ->
a fresh SQLite file, beside a raw ``sqlite3`` bulk upsert of the same rows in the same run;
then a CDC run of 1,000 changes across three entities; and a reports sync of one company's
default report periods (the seven reports for each of the last 12 months, the fiscal year to
date and the last fiscal year) into a fresh database, from a sandbox company of
``--report-records`` transactions in this process (each report computed from its postings).

    python bench/quickbooks.py                      # a company with 200,000 transaction rows
    python bench/quickbooks.py --records 1000000    # the issue's figure

The sandbox runs in its own process with throttling off and every query page pre-rendered
(in the plugin's paging pattern), so the hub's figure measures the hub: HTTP client, JSON,
row building, upserts, cursors and the clients registry, not the fake. The company also has
its list entities (customers, vendors, items, ...), scaled like a real one; rates count every
row. The raw baseline upserts the very rows the hub stored (read back from its database) into
tables of the same shape with plain ``executemany``; only the upserts are timed. Peak RSS is
this process's, taken after the hub's syncs and before the raw baseline runs. The last line
is JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import resource
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from aiohttp import web
from child import start_ready_child
from custom_accounting.sandbox import free_port
from rawsql import upsert_hub_rows

from hub.config import HubSettings, load_settings
from hub.core import Hub
from hub.logs import configure_logging
from hub.model import Connection
from hub.sync import SyncResult
from plugins.quickbooks.oauth import credentials_from
from plugins.quickbooks.sandbox import (
    STATE_KEY,
    CompanySpec,
    RunningSandbox,
    SandboxConfig,
    create_app,
    scaled_counts,
)
from plugins.quickbooks.sandbox import start_sandbox as start_sandbox_here  # in this process
from plugins.quickbooks.sync import SPECS

REALM = "9130350000000777"
PAGE = 1000
CHANGES = 1000


# --------------------------------------------------------------------------- child: sandbox


COUNTS = web.AppKey("counts", dict)


async def make_changes(request: web.Request) -> web.Response:
    """``POST /_bench/changes?n=N``: N changes to three entities (invoices created and
    updated, customers updated, payments deleted) right now."""
    state, counts = request.app[STATE_KEY], request.app[COUNTS]
    wanted = int(request.query.get("n", CHANGES))
    for i in range(wanted):
        kind = i % 10
        if kind == 0:
            state.create(REALM, "Invoice", {"PrivateNote": f"bench {i}"})
            continue
        entity = "Payment" if kind == 1 else ("Invoice", "Customer")[kind % 2]
        entity_id = str(i % counts[entity] + 1)  # distinct ids while the company has enough
        if kind == 1:
            with contextlib.suppress(KeyError):  # a small company: deleted already
                state.delete(REALM, entity, entity_id)
        else:
            state.update(REALM, entity, entity_id, {"PrivateNote": f"bench {i}"})
    return web.json_response({"changes": wanted})


async def serve_sandbox(records: int, page: int) -> None:
    """The child process: prerender every page the plugin will ask for, then serve."""
    counts = scaled_counts(records)
    config = SandboxConfig(
        companies=(CompanySpec(REALM, name="Bench Books", counts=counts),),
        throttle=False,
        prerender=True,
        prerender_max_bytes=16 * 1024**3,
        request_log_size=10_000,
        port=free_port(),
        oauth_port=free_port(),
    )
    app = create_app(config)
    state = app[STATE_KEY]
    for spec in SPECS:
        if spec.kind != "info":
            await state.prerender(
                REALM, spec.entity, page, step=page - 1, include_inactive=spec.kind == "list"
            )
    app[COUNTS] = counts
    app.router.add_post("/_bench/changes", make_changes)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    for port in (config.port, config.oauth_port):
        await web.TCPSite(runner, config.host, port).start()
    sandbox = RunningSandbox(runner, state, config.host)
    pair = state.issue_tokens(REALM)
    ready = {
        "base_url": sandbox.base_url,
        "oauth_base_url": sandbox.oauth_base_url,
        "client_id": config.client_id,
        "client_secret": config.client_secret,
        "access_token": pair.access_token,
        "refresh_token": pair.refresh_token,
        "pages": state.prerendered_pages,
    }
    print("ready " + json.dumps(ready), flush=True)
    await asyncio.Event().wait()


def start_sandbox(records: int, page: int) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    """Start the child and wait until it serves."""
    command = ["--serve-sandbox", "--records", str(records), "--page-size", str(page)]
    proc, ready = start_ready_child([__file__, *command])
    return proc, json.loads(ready)


# --------------------------------------------------------------------------- the hub


def bench_settings(sandbox: dict[str, Any], database: Path, **quickbooks: Any) -> HubSettings:
    """The hub's settings for the sandbox: no throttling on the hub's side, no sync on connect,
    ``quickbooks`` keys on top."""
    return load_settings(
        overrides={
            "store": {"path": str(database)},
            "logging": {"level": "warning"},
            "integrations": {
                "quickbooks": {
                    "client_id": sandbox["client_id"],
                    "client_secret": sandbox["client_secret"],
                    "base_url": sandbox["base_url"],
                    "oauth_base_url": sandbox["oauth_base_url"],
                    "requests_per_minute": 1_000_000,  # the sandbox does not throttle
                    "requests_per_second": 1_000_000,
                    "sync_on_connect": False,
                    **quickbooks,
                }
            },
        }
    )


async def connect_and_sync(
    hub: Hub, sandbox: dict[str, Any]
) -> tuple[Connection, SyncResult, float]:
    """Connect the sandbox's company and time one full sync of it."""
    tokens = {k: sandbox[k] for k in ("access_token", "refresh_token")}
    connection = await hub.add_connection(
        "quickbooks", REALM, "Bench Books", credentials_from(tokens, REALM), origin="bench"
    )
    started = time.perf_counter()
    full = await hub.engine.run(connection.id, full=True, trigger="bench")
    seconds = time.perf_counter() - started
    if full.state != "succeeded":
        raise SystemExit(f"hub sync failed: {full.error}")
    return connection, full, seconds


async def hub_runs(sandbox: dict[str, Any], folder: Path, page: int) -> dict[str, Any]:
    """Full sync, then 1,000 changes and a CDC run; return counts and timings."""
    streams = [spec.stream for spec in SPECS]  # the reports: reports_run
    hub = Hub(bench_settings(sandbox, folder / "hub.db", page_size=page, streams=streams))
    await hub.start()
    try:
        connection, full, full_s = await connect_and_sync(hub, sandbox)
        url = f"{sandbox['oauth_base_url']}/_bench/changes?n={CHANGES}"
        await hub.http.request("POST", url)
        started = time.perf_counter()
        cdc = await hub.engine.run(connection.id, trigger="bench")
        cdc_s = time.perf_counter() - started
        if cdc.state != "succeeded":
            raise SystemExit(f"hub CDC sync failed: {cdc.error}")
    finally:
        await hub.stop()
    return {
        "connection": connection.id,
        "records": full.created,
        "full_s": full_s,
        "cdc_s": cdc_s,
        "cdc_changes": cdc.created + cdc.updated + cdc.deleted,
    }


async def reports_run(records: int, folder: Path) -> dict[str, Any]:
    """A reports sync of a company's default periods into a fresh database; its duration and
    counts. The sandbox does not throttle here, so the report pace is lifted."""
    counts = scaled_counts(records)
    config = SandboxConfig(
        companies=(CompanySpec(REALM, name="Report Books", counts=counts),), throttle=False
    )
    async with await start_sandbox_here(config) as sandbox:
        pair = sandbox.state.issue_tokens(REALM)
        found = await reports_of(
            {
                "client_id": config.client_id,
                "client_secret": config.client_secret,
                "base_url": sandbox.base_url,
                "oauth_base_url": sandbox.oauth_base_url,
                "access_token": pair.access_token,
                "refresh_token": pair.refresh_token,
            },
            folder,
        )
    return found


async def reports_of(sandbox: dict[str, Any], folder: Path) -> dict[str, Any]:
    """Time one full reports sync of the sandbox's company."""
    settings = bench_settings(
        sandbox,
        folder / "reports.db",
        reports_per_minute=1_000_000,
        streams=["preferences", "reports"],
    )
    hub = Hub(settings)
    await hub.start()
    try:
        _, _, seconds = await connect_and_sync(hub, sandbox)
        stored = await hub.tables("plugins.quickbooks").query("reports")
    finally:
        await hub.stop()
    rows = sum(int(report["line_count"]) for report in stored)
    return {"reports": len(stored), "rows": rows, "seconds": seconds}


# --------------------------------------------------------------------------- raw sqlite3


def _getter(path: str) -> Any:
    parts = path.split(".")

    def get(record: dict[str, Any]) -> Any:
        value: Any = record
        for part in parts:
            value = value.get(part) if isinstance(value, dict) else None
        return repr(value) if isinstance(value, float) else value

    return get


# --------------------------------------------------------------------------- main


def main() -> None:
    """Run the hub's syncs and the raw baseline; print the figures and one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=200_000, help="transaction rows")
    parser.add_argument("--page-size", type=int, default=PAGE, help="MAXRESULTS per page")
    parser.add_argument(
        "--report-records", type=int, default=5_000, help="transactions of the reports company"
    )
    parser.add_argument("--serve-sandbox", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_sandbox:
        asyncio.run(serve_sandbox(args.records, args.page_size))
        return
    configure_logging("warning", "console")
    print(f"starting the sandbox: {args.records:,} transaction rows (pre-rendering)...", flush=True)
    began = time.perf_counter()
    proc, sandbox = start_sandbox(args.records, args.page_size)
    print(f"sandbox ready in {time.perf_counter() - began:.0f}s ({sandbox['pages']:,} pages)")
    try:
        with tempfile.TemporaryDirectory(prefix="hub-bench-qbo-") as tmp:
            folder = Path(tmp)
            hub = asyncio.run(hub_runs(sandbox, folder, args.page_size))
            peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            streams = [spec.as_stream() for spec in SPECS]
            raw_records, raw_s = upsert_hub_rows(
                folder, "quickbooks", streams, hub["connection"], _getter
            )
            reports = asyncio.run(reports_run(args.report_records, folder))
    finally:
        proc.terminate()
        proc.wait()
    records = hub["records"]
    hub_rate, raw_rate = records / hub["full_s"], raw_records / raw_s
    print(f"hub : {records:>9,} rows in {hub['full_s']:6.2f}s = {hub_rate:>9,.0f} rows/s")
    print(f"raw : {raw_records:>9,} rows in {raw_s:6.2f}s = {raw_rate:>9,.0f} rows/s")
    print(f"ratio hub/raw: {hub_rate / raw_rate:.2f}   peak RSS (hub process): {peak_mb:.0f} MB")
    print(f"CDC : {hub['cdc_changes']:,} changes to 3 entities in {hub['cdc_s']:.3f}s")
    print(
        f"reports: {reports['reports']:,} reports ({reports['rows']:,} rows) of the default "
        f"periods of a {args.report_records:,}-transaction company in {reports['seconds']:.2f}s"
    )
    print(
        json.dumps(
            {
                "transactions": args.records,
                "records": records,
                "hub_per_s": round(hub_rate),
                "raw_per_s": round(raw_rate),
                "ratio": round(hub_rate / raw_rate, 3),
                "peak_rss_mb": round(peak_mb, 1),
                "cdc_changes": hub["cdc_changes"],
                "cdc_1000_s": round(hub["cdc_s"], 3),
                "report_transactions": args.report_records,
                "reports_sync_s": round(reports["seconds"], 2),
            }
        )
    )


if __name__ == "__main__":
    main()
