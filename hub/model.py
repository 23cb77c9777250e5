"""The value types of the plugin contract: what hooks receive and return.

A plugin author reads this module beside :mod:`hub.hookspecs`; both are the whole contract.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from hub.store.plugin_tables import TableSession

JSON = Any
"""A JSON-compatible value (dict, list, str, int, float, bool or None)."""


class IntegrationSettings(BaseModel):
    """Base of every plugin's settings model; ``[integrations.NAME]`` is validated by it.

    Unknown keys are errors. ``enabled``, ``base_url`` and ``sync_interval`` exist for every
    integration; a plugin adds its own fields (use ``SecretStr`` for secrets).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    enabled: bool = True
    base_url: str | None = None
    sync_interval: int | str | None = None
    """Seconds between syncs, or a five-field cron expression; None = the plugin's default."""


Field = str | Callable[[dict[str, Any]], Any]
"""Where a value is in a record: a dotted path (``"PrimaryEmailAddr.Address"``; None when a
step is missing), or a callable taking the record and returning the value."""


CLIENT_EVIDENCE = ("client_id", "tax_id", "name", "email")
"""The evidence a record can give of its client, in the order :class:`ClientFields` uses it
unless a stream declares another."""


@dataclass(frozen=True)
class ClientFields:
    """Which fields of a stream's records identify a client of the firm (a business it serves).

    A stream that declares them has its records matched against the hub's clients registry as
    they are stored (by a sync's batch or ``hub.write_records``), in the same transaction:
    linked to the client the record names by its hub id, else by tax id, else by business
    name, else by e-mail (or in the stream's own ``order``), or a new client is created;
    unclear evidence is left for a person to review. Give at least one field.

    :param name: the business name.
    :param email: the e-mail address.
    :param tax_id: the tax id (EIN, VAT number, ABN, ...); the value may also be a list of
        them, e.g. Stripe's ``lambda c: [t["value"] for t in c["tax_ids"]["data"]]``.
    :param when: only records for which this returns true stand for a client (QuickBooks
        sub-customers, say, belong to their parent's client); default: every record.
    :param client_id: the hub client id the record itself carries (one the hub wrote there,
        e.g. Stripe's ``"metadata.client_id"``): a record naming an existing client is linked
        to it; one naming no client is matched by the other evidence, and the match notes it.
    :param order: the evidence to use, in order: some of ``client_id``, ``tax_id``, ``name``
        and ``email`` (default :data:`CLIENT_EVIDENCE`). A declared field left out of it is
        still recorded (tax ids) but matches nothing.
    """

    name: Field | None = None
    email: Field | None = None
    tax_id: Field | None = None
    when: Callable[[dict[str, Any]], bool] | None = None
    client_id: Field | None = None
    order: tuple[str, ...] = CLIENT_EVIDENCE

    def __post_init__(self) -> None:
        if (self.name, self.email, self.tax_id, self.client_id) == (None, None, None, None):
            raise ValueError("ClientFields needs at least one of name, email, tax_id, client_id")
        unknown = [kind for kind in self.order if kind not in CLIENT_EVIDENCE]
        if unknown or not self.order or len(set(self.order)) < len(self.order):
            raise ValueError(
                f"ClientFields.order must list some of {', '.join(CLIENT_EVIDENCE)} once each,"
                f" not {self.order!r}"
            )


@dataclass(frozen=True)
class Stream:
    """One kind of record a sync produces, stored in table ``records_<integration>_<name>``.

    :param name: short lowercase name (``customers``).
    :param key: the record's id: a dotted path into the record (``"Id"``), or a callable
        taking the record (for a provider whose records are keyed by several fields).
    :param columns: extra indexed columns: column name -> dotted path into the record, or a
        callable taking the record. Values are stored as given (text, integer), never as float
        money: a plugin passes amounts as text or integer minor units.
    :param client: for a stream whose records stand for the firm's clients (customers), the
        fields that identify them: its records are matched to the clients registry.
    """

    name: str
    key: Field = "id"
    columns: Mapping[str, Field] = field(default_factory=dict)
    description: str = ""
    client: ClientFields | None = None


@dataclass(frozen=True)
class Integration:
    """What ``register`` returns: the declaration of one integration.

    :param name: lowercase source name: config section, webhook source and table prefix.
    :param title: human name for the admin page.
    :param settings: the pydantic model (subclass of :class:`IntegrationSettings`).
    :param streams: the streams ``sync`` can produce.
    :param default_sync_interval: seconds or cron expression used when config sets none.
    :param secret_fields: extra setting/credential keys redacted from logs and diagnostics.
    :param connect_path: where an admin starts connecting a new account (an OAuth flow's
        connect route); the admin page links to it.
    :param events_when_configured: deliver hub events to this plugin's ``event`` hook only
        while the integration is configured and on (an unconfigured e-mail plugin has no one
        to mail, so it gets no delivery of every event).
    """

    name: str
    title: str
    settings: type[IntegrationSettings] = IntegrationSettings
    streams: Sequence[Stream] = ()
    default_sync_interval: int | str | None = 3600
    secret_fields: frozenset[str] = frozenset()
    connect_path: str | None = None
    events_when_configured: bool = False

    def stream(self, name: str) -> Stream:
        """Return the stream called ``name``; KeyError if the integration has none."""
        for stream in self.streams:
            if stream.name == name:
                return stream
        raise KeyError(f"{self.name} has no stream {name!r}")


@dataclass(frozen=True)
class ConnectionSpec:
    """A connection defined by configuration (an API key), returned by ``configure``.

    :param key: the provider's account id (stable; one connection per key).
    :param title: human name.
    :param credentials: secrets, stored encrypted.
    """

    key: str
    title: str
    credentials: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class Connection:
    """One authenticated account of an integration, as hooks see it.

    ``credentials`` is decrypted; a hook that changes it (a refreshed token) persists it
    with ``await hub.save_credentials(connection, new_credentials)``.
    """

    id: str
    integration: str
    key: str
    title: str
    credentials: dict[str, Any]
    settings: IntegrationSettings
    created_at: str = ""


class SyncMode(enum.StrEnum):
    """``full`` re-reads everything and tombstones what disappeared; ``incremental`` resumes."""

    FULL = "full"
    INCREMENTAL = "incremental"


@dataclass
class Batch:
    """One unit a ``sync`` yields; the hub commits records, deletions and cursor atomically.

    The hub copies the batch when it is yielded, so the plugin may reuse its lists, record
    dicts and cursor for the next page.

    :param stream: the stream's name.
    :param records: provider records (dicts) to upsert.
    :param cursor: the stream's new cursor after this batch (JSON), or None to keep it.
    :param deleted: ids to tombstone.
    :param full: this batch belongs to a full re-read of the stream that the plugin began in
        this run although the run is incremental (e.g. the provider's change log no longer
        reaches back to the cursor). From the first such batch the stream is treated as in a
        full sync: its cursor row records the re-read (a crash resumes it), and when the run
        succeeds the hub tombstones the stream's records the re-read did not write. The first
        ``full`` batch of a stream always stores its cursor, None included.
    """

    stream: str
    records: Sequence[dict[str, Any]]
    cursor: JSON = None
    deleted: Sequence[str] = ()
    full: bool = False


class HealthStatus(enum.StrEnum):
    """A connection's state, worst last."""

    HEALTHY = "healthy"
    WARNING = "warning"
    ERROR = "error"
    DISCONNECTED = "disconnected"


@dataclass(frozen=True)
class HealthCheck:
    """One diagnostic line (``token present``, ``API reachable``, …)."""

    name: str
    ok: bool
    detail: str = ""


@dataclass(frozen=True)
class HealthReport:
    """What ``health`` returns."""

    status: HealthStatus
    message: str = ""
    checks: Sequence[HealthCheck] = ()


KEY_FIGURES = (
    "current_ratio",
    "quick_ratio",
    "debt_to_equity",
    "gross_margin",
    "net_margin",
    "revenue_growth_mom",
    "revenue_growth_yoy",
)
"""The figures a :class:`KeyFigures` holds, each a fraction (``0.2500`` is 25 %) or None."""


@dataclass(frozen=True)
class KeyFigures:
    """A connection's financial key figures, computed by its plugin from the provider's
    reports, as the ``key_figures`` hook returns them. Money and ratios are exact decimals.

    :param integration: the integration (``quickbooks``).
    :param connection_id: the connection whose books these are.
    :param client_id: the hub client whose books these are, if the plugin knows it.
    :param company: the company's name as the provider has it.
    :param currency: the ISO 4217 code of the company's home currency.
    :param basis: ``accrual`` or ``cash``.
    :param period_start: the first day the income figures cover.
    :param period_end: the last day they cover; also the balance sheet's date.
    :param figures: each name of :data:`KEY_FIGURES` to a fraction, or None when it cannot be
        computed (a zero denominator, a period without data).
    :param amounts: the inputs, by name (``revenue``, ``gross_profit``, ``net_income``,
        ``current_assets``, ``current_liabilities``, ``total_liabilities``, ``equity``, …).
    :param computed_at: when the plugin computed them (from reports read then).
    :param sources: the reports used, each ``{"report", "period", "basis"}``.
    """

    integration: str
    connection_id: str
    client_id: int | None
    company: str
    currency: str
    basis: str
    period_start: date
    period_end: date
    figures: Mapping[str, Decimal | None]
    amounts: Mapping[str, Decimal]
    computed_at: datetime
    sources: Sequence[Mapping[str, str]] = ()

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready dict: decimals as exact strings, dates and times in ISO 8601."""
        return {
            "integration": self.integration,
            "connection": self.connection_id,
            "client_id": self.client_id,
            "company": self.company,
            "currency": self.currency,
            "basis": self.basis,
            "period": {"start": self.period_start.isoformat(), "end": self.period_end.isoformat()},
            "figures": {
                name: None if value is None else str(value) for name, value in self.figures.items()
            },
            "amounts": {name: str(value) for name, value in self.amounts.items()},
            "computed_at": self.computed_at.isoformat(),
            "sources": [dict(source) for source in self.sources],
        }


@dataclass(frozen=True)
class Alert:
    """A connection's health changed (or is still bad at reminder time)."""

    id: int
    integration: str
    connection_id: str
    connection_title: str
    status: HealthStatus
    previous: HealthStatus | None
    message: str
    reminder: bool = False
    created_at: str = ""


@dataclass(frozen=True)
class HubEvent:
    """A hub-level fact: ``type`` such as ``sync.completed``, ``quickbooks.invoice.updated``."""

    type: str
    data: Mapping[str, Any]
    id: str = ""
    source: str = "hub"
    created_at: str = ""
    connection_key: str | None = None
    """For a webhook event: the provider account it concerns (a realm id), if known."""
    attempt: int = 1
    """Which delivery attempt this is for the handler receiving it (1 = first)."""


@dataclass(frozen=True)
class WebhookEvent:
    """One verified event parsed from a webhook request by the ``webhook`` hook.

    :param id: the provider's event id (deduplicates redeliveries).
    :param type: the provider's event type.
    :param data: the parsed event; a known ``id`` with other ``data`` is a new event.
    :param connection_key: the provider account it concerns (a realm id), if known.
    """

    id: str
    type: str
    data: Mapping[str, Any]
    connection_key: str | None = None


@dataclass(frozen=True)
class StoredDocument:
    """A client document as the plugin that stores it gives it to others (``read_document``).

    :param id: the document's id (``doc_…``), as in ``document.uploaded``.
    :param client: the client reference it was uploaded for.
    :param name: its file name as uploaded.
    :param content_type: the content type the storing plugin decided (sniffed).
    :param size: its size in bytes.
    :param sha256: the hex SHA-256 of its bytes.
    :param uploaded_by: the uploader's e-mail address, if the upload gave one.
    :param content: its bytes, checked against ``sha256``; None when ``size`` is over the
        ``max_bytes`` the reader asked for (nothing was read).
    """

    id: str
    client: str
    name: str
    content_type: str
    size: int
    sha256: str
    uploaded_by: str | None = None
    content: bytes | None = None


@dataclass(frozen=True)
class Migration:
    """One forward step of a plugin's own tables, as the ``migrations`` hook returns them.

    Table (and index, view, trigger) names are the plugin's own short names: in SQL text
    write them in braces, ``CREATE TABLE {notes} (id TEXT PRIMARY KEY, body TEXT)``; the hub
    resolves them inside the plugin's namespace. A released migration is never edited: append
    a new version.

    :param version: >= 1, strictly increasing along the plugin's list; the hub records the
        versions applied and runs each one once, in order, in its own transaction.
    :param description: one line, shown by ``advisoros-hub plugins`` and in failures.
    :param apply: SQL text (one or more statements separated by ``;``), or a callable that
        receives a :class:`~hub.store.plugin_tables.TableSession` (for data migrations).
    """

    version: int
    description: str
    apply: str | Callable[[TableSession], None]


@dataclass(frozen=True)
class ErrorInfo:
    """The last failure of a connection (a sync run, a health check or a webhook's handling).

    :param error_class: the classification (``authentication``, ``rate_limit``, ``server``, …;
        see :mod:`hub.errors`).
    :param message: what went wrong, redacted.
    :param at: when (ISO 8601, UTC).
    :param advice: what a person can do about it, from the plugin's exception (the ``advice``
        of a :class:`~hub.errors.HubError`), or empty.
    """

    error_class: str
    message: str
    at: str
    advice: str = ""


@dataclass(frozen=True)
class RunProgress:
    """The sync run of a connection that is queued or running now.

    :param run_id: the run (``GET /api/runs/{id}``).
    :param trigger: who started it (``schedule``, ``api``, ``cli``, ``webhook``, …).
    :param state: ``queued`` (waiting for a slot) or ``running``.
    :param started_at: when it was started (ISO 8601, UTC).
    :param stream: the stream of the last committed batch (empty before the first).
    :param records: records committed so far.
    :param batches: batches committed so far.
    :param rate: records per second so far.
    """

    run_id: int
    trigger: str
    state: str
    started_at: str
    stream: str = ""
    records: int = 0
    batches: int = 0
    rate: float = 0.0


@dataclass(frozen=True)
class ConnectionStatus:
    """One connection's state as the hub knows it now: a read-only copy, taken when asked.

    The sync engine, the health checks and webhook handling keep it; ``/api/status``, the
    admin page and plugins (``hub.connection_state(connection_id)``) read it. It survives a
    restart where it must: health from the connection's stored status, last success, last
    error, consecutive failures and needs-reauthentication from the stored sync runs.

    :param connection_id: the connection.
    :param health: its last health status (None: never checked).
    :param health_message: the message of that status.
    :param checks: the checks of the last health report (empty after a restart).
    :param checked_at: when health was last decided (ISO 8601), None if not since the start.
    :param schedule: the periodic sync's interval (seconds) or cron expression, None when it
        is not scheduled (in one-off commands, or no interval).
    :param next_run_at: when the scheduler runs the next sync (ISO 8601), backoff included.
    :param running: the sync queued or running now, with its progress, or None.
    :param last_success_at: when the last sync succeeded (ISO 8601), None if never.
    :param last_error: the last failure since that success, None if none.
    :param consecutive_failures: syncs failed in a row since the last success.
    :param backoff_s: how long scheduled syncs wait after the last failure (0 when none).
    :param retry_at: scheduled syncs do not run before this time (ISO 8601), None when none.
    :param needs_reauth: the provider refused the credentials (in a sync, a health check or a
        webhook's handling): a person must reconnect the account; cleared by a success.
    :param proven_by_sync: a sync succeeded within the last ``health.interval`` seconds and
        nothing failed since, so the credentials and the API worked then. A ``health`` hook
        need not probe them again: it reports them from this state.
    """

    connection_id: str
    health: HealthStatus | None = None
    health_message: str = ""
    checks: tuple[HealthCheck, ...] = ()
    checked_at: str | None = None
    schedule: str | None = None
    next_run_at: str | None = None
    running: RunProgress | None = None
    last_success_at: str | None = None
    last_error: ErrorInfo | None = None
    consecutive_failures: int = 0
    backoff_s: float = 0.0
    retry_at: str | None = None
    needs_reauth: bool = False
    proven_by_sync: bool = False
