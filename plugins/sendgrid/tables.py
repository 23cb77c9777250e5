"""The plugin's own tables: every e-mail it sent or must still send, what SendGrid's events
said about each recipient, the suppression list, and the alert state per connection.

``migrations`` declares them (append a new :class:`~hub.model.Migration` to change them, never
edit a released one); ``hub.tables(__name__)`` reads and writes them, in this plugin's
namespace, through the store's writer.

- ``sends``: one row per message handed to a transport (one mail-send request: up to 1,000
  recipients). ``status`` is ``queued`` → ``sent`` (then ``delivered``/``opened``/
  ``clicked`` from events) or ``retrying`` (kept with its ``payload`` and ``next_attempt_at``
  until a later pass sends it) or ``failed`` (the reason in ``last_error``) or ``suppressed``
  (every recipient was on the suppression list). ``payload`` is dropped once sent.
- ``recipient_status``: the last event per (SendGrid message id, address).
- ``suppressions``: addresses never sent to (from bounce, dropped, spam report and
  unsubscribe events, and from SendGrid's suppression lists).
- ``alert_state``: per connection, its status now and what was last e-mailed about it.
"""

from __future__ import annotations

from hub.model import Migration

MIGRATIONS = (
    Migration(
        1,
        "sends, recipient events, suppressions and alert state",
        """
        CREATE TABLE {sends} (
            id TEXT PRIMARY KEY,
            batch TEXT,
            kind TEXT NOT NULL,
            template TEXT,
            subject TEXT NOT NULL,
            recipients TEXT NOT NULL,
            recipient_count INTEGER NOT NULL,
            payload TEXT,
            status TEXT NOT NULL,
            transport TEXT,
            message_id TEXT,
            attempts INTEGER NOT NULL DEFAULT 0,
            last_error TEXT,
            next_attempt_at REAL,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        CREATE INDEX {sends_by_status} ON {sends} (status, next_attempt_at);
        CREATE INDEX {sends_by_message} ON {sends} (message_id);
        CREATE INDEX {sends_by_batch} ON {sends} (batch);
        CREATE TABLE {recipient_status} (
            message_id TEXT NOT NULL,
            email TEXT NOT NULL,
            status TEXT NOT NULL,
            at INTEGER,
            PRIMARY KEY (message_id, email)
        );
        CREATE TABLE {suppressions} (
            email TEXT PRIMARY KEY,
            reason TEXT NOT NULL,
            source TEXT NOT NULL,
            created_at TEXT NOT NULL
        );
        CREATE TABLE {alert_state} (
            connection_id TEXT PRIMARY KEY,
            integration TEXT NOT NULL,
            title TEXT NOT NULL,
            status TEXT NOT NULL,
            message TEXT NOT NULL,
            changed_at TEXT NOT NULL,
            mailed_status TEXT,
            mailed_at REAL,
            changes INTEGER NOT NULL DEFAULT 0
        )
        """,
    ),
)
