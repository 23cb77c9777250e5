"""The versioned schema: forward-only migrations, applied in order at start.

Each migration runs in its own transaction and is recorded in ``_migrations``; never edit a
released migration, append a new one.
"""

from __future__ import annotations

from collections.abc import Callable

import sqlite_utils

from hub.store.content import stored_content_hash

Migration = Callable[[sqlite_utils.Database], None]


def _m001_core(db: sqlite_utils.Database) -> None:
    db.executescript(
        """
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE connections (
            id TEXT PRIMARY KEY,
            integration TEXT NOT NULL,
            key TEXT NOT NULL,
            title TEXT NOT NULL,
            credentials BLOB NOT NULL,
            origin TEXT NOT NULL DEFAULT 'config',
            status TEXT,
            status_message TEXT NOT NULL DEFAULT '',
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            UNIQUE (integration, key)
        );
        CREATE TABLE cursors (
            connection_id TEXT NOT NULL,
            stream TEXT NOT NULL,
            cursor TEXT,
            full_generation INTEGER,
            updated_at TEXT NOT NULL,
            PRIMARY KEY (connection_id, stream)
        );
        CREATE TABLE sync_runs (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            connection_id TEXT NOT NULL,
            integration TEXT NOT NULL,
            mode TEXT NOT NULL,
            trigger TEXT NOT NULL,
            state TEXT NOT NULL,
            streams TEXT NOT NULL,
            started_at TEXT NOT NULL,
            finished_at TEXT,
            duration_s REAL,
            created INTEGER NOT NULL DEFAULT 0,
            updated INTEGER NOT NULL DEFAULT 0,
            deleted INTEGER NOT NULL DEFAULT 0,
            error_class TEXT,
            error TEXT,
            pid INTEGER
        );
        CREATE INDEX sync_runs_connection ON sync_runs (connection_id, id);
        CREATE INDEX sync_runs_state ON sync_runs (state);
        CREATE TABLE stream_stats (
            connection_id TEXT NOT NULL,
            stream TEXT NOT NULL,
            last_run_id INTEGER,
            last_success_at TEXT,
            records INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (connection_id, stream)
        );
        CREATE TABLE health_history (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            connection_id TEXT NOT NULL,
            integration TEXT NOT NULL,
            status TEXT NOT NULL,
            previous TEXT,
            message TEXT NOT NULL,
            checks TEXT NOT NULL,
            at TEXT NOT NULL
        );
        CREATE INDEX health_history_connection ON health_history (connection_id, id);
        CREATE TABLE alerts (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            connection_id TEXT NOT NULL,
            integration TEXT NOT NULL,
            status TEXT NOT NULL,
            previous TEXT,
            message TEXT NOT NULL,
            created_at TEXT NOT NULL,
            last_sent_at TEXT NOT NULL,
            reminders INTEGER NOT NULL DEFAULT 0,
            resolved_at TEXT
        );
        CREATE INDEX alerts_open ON alerts (resolved_at, connection_id);
        CREATE TABLE record_tables (
            name TEXT PRIMARY KEY,
            integration TEXT NOT NULL,
            stream TEXT NOT NULL,
            columns TEXT NOT NULL
        );
        """
    )


def _m002_inbox(db: sqlite_utils.Database) -> None:
    db.executescript(
        """
        CREATE TABLE webhook_requests (
            id INTEGER PRIMARY KEY,
            source TEXT NOT NULL,
            received_at TEXT NOT NULL,
            headers TEXT NOT NULL,
            body BLOB NOT NULL
        );
        CREATE TABLE events (
            id INTEGER PRIMARY KEY,
            source TEXT NOT NULL,
            event_id TEXT NOT NULL,
            type TEXT NOT NULL,
            connection_key TEXT,
            data TEXT NOT NULL,
            request_id INTEGER,
            created_at TEXT NOT NULL,
            UNIQUE (source, event_id)
        );
        CREATE INDEX events_type ON events (type, id);
        CREATE TABLE deliveries (
            event INTEGER NOT NULL,
            handler TEXT NOT NULL,
            state TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            next_at REAL NOT NULL,
            last_error TEXT,
            updated_at TEXT NOT NULL,
            PRIMARY KEY (event, handler)
        );
        CREATE INDEX deliveries_due ON deliveries (state, next_at);
        CREATE TABLE subscriptions (
            id TEXT PRIMARY KEY,
            url TEXT NOT NULL,
            events TEXT NOT NULL,
            description TEXT NOT NULL,
            secret BLOB NOT NULL,
            state TEXT NOT NULL,
            failures INTEGER NOT NULL DEFAULT 0,
            disabled_reason TEXT,
            created_at TEXT NOT NULL
        );
        """
    )


def _m003_clients(db: sqlite_utils.Database) -> None:
    db.executescript(
        """
        CREATE TABLE clients (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            name TEXT NOT NULL,
            name_key TEXT NOT NULL,
            email TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        CREATE INDEX clients_name_key ON clients (name_key);
        CREATE INDEX clients_email ON clients (email);
        CREATE TABLE client_links (
            client_id INTEGER NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
            integration TEXT NOT NULL,
            connection_id TEXT NOT NULL,
            provider_id TEXT NOT NULL,
            matched_by TEXT NOT NULL,
            created_at TEXT NOT NULL,
            PRIMARY KEY (integration, connection_id, provider_id)
        );
        CREATE INDEX client_links_client ON client_links (client_id, integration, connection_id);
        """
    )


def _m004_drop_events_type(db: sqlite_utils.Database) -> None:
    # No query filters events by type; the index only slowed every webhook insert.
    db.execute("DROP INDEX IF EXISTS events_type")


def _m005_run_owner(db: sqlite_utils.Database) -> None:
    # pid plus the process's start time: a pid alone is reused after a crash or a reboot
    db.execute("ALTER TABLE sync_runs ADD COLUMN owner TEXT")


def _m006_client_reviews(db: sqlite_utils.Database) -> None:
    # candidates left ambiguous by matching, until a person links them (or matching settles)
    db.execute(
        """
        CREATE TABLE client_reviews (
            integration TEXT NOT NULL,
            connection_id TEXT NOT NULL,
            provider_id TEXT NOT NULL,
            name TEXT,
            email TEXT,
            reason TEXT NOT NULL,
            candidates TEXT NOT NULL,
            seen_at TEXT NOT NULL,
            PRIMARY KEY (integration, connection_id, provider_id)
        )
        """
    )


def _m007_event_routing(db: sqlite_utils.Database) -> None:
    # handlers are resolved when the dispatcher routes an event, not when it is stored;
    # events stored before this migration already have their deliveries
    db.executescript(
        """
        ALTER TABLE events ADD COLUMN routed INTEGER NOT NULL DEFAULT 0;
        UPDATE events SET routed = 1;
        CREATE INDEX events_unrouted ON events (id) WHERE routed = 0;
        """
    )


def _m008_plugin_migrations(db: sqlite_utils.Database) -> None:
    # one row per plugin table version: applied (applied_at) or failed at the last try (error)
    db.execute(
        """
        CREATE TABLE _plugin_migrations (
            plugin TEXT NOT NULL,
            version INTEGER NOT NULL,
            description TEXT NOT NULL,
            applied_at TEXT,
            error TEXT,
            PRIMARY KEY (plugin, version)
        )
        """
    )


def _m009_client_tax_ids(db: sqlite_utils.Database) -> None:
    # a client may have several tax ids (a VAT number and an EIN); one may be shared by
    # several clients until a person settles it, so matching by it is then ambiguous
    db.executescript(
        """
        CREATE TABLE client_tax_ids (
            tax_id TEXT NOT NULL,
            client_id INTEGER NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
            PRIMARY KEY (tax_id, client_id)
        );
        CREATE INDEX client_tax_ids_client ON client_tax_ids (client_id);
        ALTER TABLE client_reviews ADD COLUMN tax_ids TEXT;
        """
    )


def _m010_event_content_hash(db: sqlite_utils.Database) -> None:
    # dedupe compares content as well as ids: an id seen again with other content is a new
    # event. Stored events get the hash their redelivery would have, so it stays a duplicate.
    db.execute("ALTER TABLE events ADD COLUMN content_hash TEXT")
    db.conn.create_function("hub_content_hash", 1, stored_content_hash, deterministic=True)
    db.execute("UPDATE events SET content_hash = hub_content_hash(data)")


MIGRATIONS: tuple[tuple[str, Migration], ...] = (
    ("001_core", _m001_core),
    ("002_inbox", _m002_inbox),
    ("003_clients", _m003_clients),
    ("004_drop_events_type", _m004_drop_events_type),
    ("005_run_owner", _m005_run_owner),
    ("006_client_reviews", _m006_client_reviews),
    ("007_event_routing", _m007_event_routing),
    ("008_plugin_migrations", _m008_plugin_migrations),
    ("009_client_tax_ids", _m009_client_tax_ids),
    ("010_event_content_hash", _m010_event_content_hash),
)


def apply_migrations(db: sqlite_utils.Database) -> list[str]:
    """Apply every migration not yet recorded; return the names applied now."""
    db.execute(
        "CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)"
    )
    done = {row[0] for row in db.execute("SELECT name FROM _migrations").fetchall()}
    applied = []
    for name, migration in MIGRATIONS:
        if name in done:
            continue
        with db.atomic():
            migration(db)
            db.execute(
                "INSERT INTO _migrations (name, applied_at) VALUES (?, datetime('now'))", [name]
            )
        applied.append(name)
    return applied
