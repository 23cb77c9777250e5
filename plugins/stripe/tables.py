"""The plugin's own tables: idempotency keys, the newest change applied per object, the last
verified webhook, and the Stripe customer of each hub client.

``migrations`` declares them (append a new :class:`~hub.model.Migration` to change them,
never edit a released one); ``hub.tables(__name__)`` reads and writes them.

* ``requests``: one row per billing action (a POST), keyed by the action's fingerprint. Its
  ``idempotency_key`` is stored *before* the call, so a retry after a 429, a crash or a
  restart sends the same key and Stripe answers the first result instead of acting twice.
  ``state`` is ``pending`` until Stripe answered, then ``done`` with the ``answer``.
* ``applied``: per Stripe object, the ``created`` time and id of the newest event applied to
  the stored copy; an older event is not applied over it.
* ``webhooks_seen``: per connection, when the last webhook was verified and processed.
* ``customers``: the Stripe customer created or found for a hub client.
"""

from __future__ import annotations

from hub.model import Migration

MIGRATIONS = (
    Migration(
        1,
        "idempotency keys, applied events, last webhook, customers of clients",
        """
        CREATE TABLE {requests} (
            connection_id TEXT NOT NULL,
            fingerprint TEXT NOT NULL,
            operation TEXT NOT NULL,
            idempotency_key TEXT NOT NULL,
            state TEXT NOT NULL,
            created_at REAL NOT NULL,
            answered_at REAL,
            answer TEXT,
            PRIMARY KEY (connection_id, fingerprint)
        );
        CREATE TABLE {applied} (
            connection_id TEXT NOT NULL,
            object_id TEXT NOT NULL,
            stream TEXT NOT NULL,
            event_id TEXT NOT NULL,
            event_created INTEGER NOT NULL,
            PRIMARY KEY (connection_id, object_id)
        );
        CREATE TABLE {webhooks_seen} (
            connection_id TEXT PRIMARY KEY,
            event_id TEXT NOT NULL,
            event_type TEXT NOT NULL,
            seen_at REAL NOT NULL
        );
        CREATE TABLE {customers} (
            connection_id TEXT NOT NULL,
            client_id INTEGER NOT NULL,
            customer_id TEXT NOT NULL,
            linked_at REAL NOT NULL,
            PRIMARY KEY (connection_id, client_id)
        )
        """,
    ),
)
