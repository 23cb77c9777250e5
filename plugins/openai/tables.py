"""The plugin's own tables: analyses, insights, every model call's usage, the month's totals
per model and the last rate-limit headers.

``migrations`` declares them (append a new :class:`~hub.model.Migration` to change them);
``hub.tables(__name__)`` reads and writes them through the store's writer. Costs are integer
:data:`~plugins.openai.usage.UNITS_PER_USD` units, so sums stay exact in SQL.
"""

from __future__ import annotations

from hub.model import Migration

MIGRATIONS = (
    Migration(
        1,
        "analyses, insights, usage and rate limits",
        """
        CREATE TABLE {analyses} (
            id TEXT PRIMARY KEY,
            document_id TEXT NOT NULL,
            client TEXT NOT NULL,
            document_name TEXT NOT NULL,
            document_type TEXT NOT NULL,
            trigger TEXT NOT NULL,
            state TEXT NOT NULL,
            model TEXT,
            started_at TEXT NOT NULL,
            finished_at TEXT,
            confidence REAL,
            summary TEXT,
            recommendations TEXT,
            flags TEXT,
            data TEXT,
            error TEXT,
            error_class TEXT
        );
        CREATE INDEX {analyses_by_document} ON {analyses} (document_id, started_at);
        CREATE TABLE {insights} (
            id TEXT PRIMARY KEY,
            client_id INTEGER NOT NULL,
            created_at TEXT NOT NULL,
            model TEXT NOT NULL,
            answer TEXT NOT NULL
        );
        CREATE INDEX {insights_by_client} ON {insights} (client_id, created_at);
        CREATE TABLE {calls} (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            at TEXT NOT NULL,
            month TEXT NOT NULL,
            purpose TEXT NOT NULL,
            subject TEXT,
            model TEXT NOT NULL,
            input_tokens INTEGER NOT NULL,
            cached_tokens INTEGER NOT NULL,
            output_tokens INTEGER NOT NULL,
            cost_units INTEGER NOT NULL,
            request_id TEXT,
            outcome TEXT NOT NULL
        );
        CREATE INDEX {calls_by_month} ON {calls} (month, at);
        CREATE TABLE {months} (
            month TEXT NOT NULL,
            model TEXT NOT NULL,
            calls INTEGER NOT NULL,
            input_tokens INTEGER NOT NULL,
            cached_tokens INTEGER NOT NULL,
            output_tokens INTEGER NOT NULL,
            cost_units INTEGER NOT NULL,
            PRIMARY KEY (month, model)
        );
        CREATE TABLE {rate_limits} (
            host TEXT PRIMARY KEY,
            at TEXT NOT NULL,
            headers TEXT NOT NULL
        )
        """,
    ),
)
