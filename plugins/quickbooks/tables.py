"""The plugin's own tables: the synced financial reports, flattened, and each company's last
reports sync.

``migrations`` declares them (append a new :class:`~hub.model.Migration` to change them, never
edit a released one); ``hub.tables(__name__)`` reads and writes them.

* ``reports``: one row per (connection, report, start_date, end_date, basis) — the raw
  JSON Intuit answered (``raw``), its ``period`` (``start..end``), the basis and currency the
  report's header states, ``no_data`` (1 when Intuit said ``NoReportData``), how many flattened
  rows it has (``line_count``) and when it was read (``fetched_at``, the server's time).
* ``report_rows``: one row per amount of a report, same key plus ``line`` (the report row, in
  order) and ``col`` (the column's index): ``section`` (the path of Intuit's group names,
  ``TotalAssets/CurrentAssets/BankAccounts``), ``kind`` (``data`` or ``summary``), ``label``
  (the row's first cell: an account's name, or a total's title), ``account`` and
  ``account_id``, ``column_title``, ``amount`` (exact decimal text: read it with
  ``Decimal``), ``details`` (JSON of the row's other cells, e.g. a ledger line's date).
* ``report_runs``: per connection, the company (name, CompanyInfo id, home currency), the
  basis and when its last complete reports sync ran. That sync also drops the reports of
  periods no longer configured.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import orjson

from hub.model import Migration

if TYPE_CHECKING:
    from hub.api import PluginTables, TableSession, Value

from .client import JSON

ReportKey = tuple[str, str, str, str]
"""(report, start_date, end_date, basis)."""
DELETE_ROWS = (
    "DELETE FROM {report_rows} WHERE connection_id = ? AND report = ? AND start_date = ? "
    "AND end_date = ? AND basis = ?"
)
"""Removes one report's flattened rows (before its new ones are written, or with it)."""

MIGRATIONS = (
    Migration(
        1,
        "synced reports, their flattened rows, each company's last reports sync",
        """
        CREATE TABLE {reports} (
            connection_id TEXT NOT NULL,
            report TEXT NOT NULL,
            start_date TEXT NOT NULL,
            end_date TEXT NOT NULL,
            basis TEXT NOT NULL,
            period TEXT NOT NULL,
            report_basis TEXT,
            currency TEXT,
            no_data INTEGER NOT NULL,
            line_count INTEGER NOT NULL,
            fetched_at TEXT NOT NULL,
            raw TEXT NOT NULL,
            PRIMARY KEY (connection_id, report, start_date, end_date, basis)
        );
        CREATE TABLE {report_rows} (
            connection_id TEXT NOT NULL,
            report TEXT NOT NULL,
            start_date TEXT NOT NULL,
            end_date TEXT NOT NULL,
            basis TEXT NOT NULL,
            line INTEGER NOT NULL,
            col INTEGER NOT NULL,
            section TEXT NOT NULL,
            kind TEXT NOT NULL,
            label TEXT NOT NULL,
            account TEXT,
            account_id TEXT,
            column_title TEXT NOT NULL,
            amount TEXT NOT NULL,
            details TEXT,
            PRIMARY KEY (connection_id, report, start_date, end_date, basis, line, col)
        );
        CREATE TABLE {report_runs} (
            connection_id TEXT PRIMARY KEY,
            company TEXT NOT NULL,
            company_id TEXT NOT NULL,
            currency TEXT NOT NULL,
            basis TEXT NOT NULL,
            reports INTEGER NOT NULL,
            synced_at TEXT NOT NULL
        )
        """,
    ),
)


def no_data(report: JSON) -> bool:
    """Whether Intuit says the report has no data for its period (``NoReportData``)."""
    options = (report.get("Header") or {}).get("Option") or []
    return any(
        o.get("Name") == "NoReportData" and str(o.get("Value")).lower() == "true" for o in options
    )


def _header_basis(body: JSON) -> tuple[str | None, str | None]:
    header = body.get("Header") or {}
    basis, currency = header.get("ReportBasis"), header.get("Currency")
    return (str(basis) if basis else None, str(currency) if currency else None)


async def store_report(
    tables: PluginTables,
    connection_id: str,
    key: ReportKey,
    body: JSON,
    rows: Sequence[dict[str, Value]],
    fetched_at: str,
) -> dict[str, Any]:
    """Replace one report and its flattened rows, in one transaction.

    :return: the report's summary record for the ``reports`` stream.
    """
    report, start, end, basis = key
    stated_basis, currency = _header_basis(body)
    empty = no_data(body)
    head: dict[str, Value] = {
        "connection_id": connection_id,
        "report": report,
        "start_date": start,
        "end_date": end,
        "basis": basis,
    }
    record: dict[str, Value] = {
        **head,
        "period": f"{start}..{end}",
        "report_basis": stated_basis,
        "currency": currency,
        "no_data": int(empty),
        "line_count": len(rows),
        "fetched_at": fetched_at,
        "raw": orjson.dumps(body).decode(),
    }

    def write(tx: TableSession) -> None:
        tx.execute(DELETE_ROWS, list(key_values))
        tx.upsert("report_rows", ({**head, **row} for row in rows))
        tx.upsert("reports", [record])

    key_values = (connection_id, report, start, end, basis)
    await tables.transaction(write)
    return {
        "Id": "|".join(key),
        "report": report,
        "start_date": start,
        "end_date": end,
        "basis": basis,
        "no_data": bool(empty),
        "rows": len(rows),
        "fetched_at": fetched_at,
    }


async def store_run(
    tables: PluginTables,
    connection_id: str,
    company: JSON,
    preferences: JSON,
    basis: str,
    kept: Sequence[ReportKey],
    synced_at: str,
) -> None:
    """Record a complete reports sync and drop the reports it did not read (periods no longer
    configured, another basis), in one transaction."""
    currency = ((preferences.get("CurrencyPrefs") or {}).get("HomeCurrency") or {}).get("value")
    run: dict[str, Value] = {
        "connection_id": connection_id,
        "company": str(company.get("CompanyName") or ""),
        "company_id": str(company.get("Id") or ""),
        "currency": str(currency or "USD"),
        "basis": basis,
        "reports": len(kept),
        "synced_at": synced_at,
    }
    wanted = {tuple(k) for k in kept}

    def write(tx: TableSession) -> None:
        stored = tx.query("reports", "connection_id = ?", [connection_id])
        for row in stored:
            key = (row["report"], row["start_date"], row["end_date"], row["basis"])
            if key not in wanted:
                values = [connection_id, *key]
                tx.execute(DELETE_ROWS, values)
                tx.delete("reports", [tuple(values)])
        tx.upsert("report_runs", [run])

    await tables.transaction(write)
