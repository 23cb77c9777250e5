"""Client matching of stored records: streams that declare :class:`~hub.model.ClientFields`.

The records of such a stream are matched against the clients registry (rules:
:mod:`hub.store.client_match`) inside the transaction that stores them — a sync's batch with
its cursor, or one ``hub.write_records`` call — so a record is never committed without its
match, nor a match without its record. A record stored again is matched again (by its link,
unless a person removed it). Tombstoning a record keeps its link; a review waiting on it
goes, as there is nothing left to settle. After the commit the hub emits ``clients.matched``
(:meth:`MatchTally.event_data`): once per sync run and stream, once per ``write_records``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlite_utils
import structlog

from hub.model import ClientFields, Stream
from hub.store.client_match import Candidate, MatchReport, forget_reviews, match_candidates
from hub.store.records import RecordTable, field_getter

log = structlog.get_logger("hub.clients")

MAX_IDS = 100
"""Most new links, and most ambiguous records, listed in one ``clients.matched`` event (all
are counted)."""


def _text(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


def _texts(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str | int):
        return (str(value),)
    return tuple(str(v) for v in value if v is not None and v != "")


class StreamClients:
    """How one stream's records become client candidates, matched in their transaction."""

    def __init__(self, integration: str, stream: Stream, fields: ClientFields) -> None:
        self.integration = integration
        self.stream = stream.name
        self._key = field_getter(stream.key)
        self._name = field_getter(fields.name) if fields.name is not None else None
        self._email = field_getter(fields.email) if fields.email is not None else None
        self._tax_id = field_getter(fields.tax_id) if fields.tax_id is not None else None
        self._client_id = field_getter(fields.client_id) if fields.client_id is not None else None
        self._order = fields.order
        self._when = fields.when

    def candidates(self, records: Iterable[dict[str, Any]]) -> list[Candidate]:
        """The records that stand for a client (``when``), as candidates."""
        out = []
        for record in records:
            if self._when is not None and not self._when(record):
                continue
            out.append(
                Candidate(
                    provider_id=str(self._key(record)),
                    name=_text(self._name(record)) if self._name else None,
                    email=_text(self._email(record)) if self._email else None,
                    tax_ids=_texts(self._tax_id(record)) if self._tax_id else (),
                    client_id=_text(self._client_id(record)) if self._client_id else None,
                )
            )
        return out

    def write(
        self,
        db: sqlite_utils.Database,
        connection_id: str,
        candidates: Sequence[Candidate],
        deleted: Sequence[str],
    ) -> MatchReport:
        """Match the ``candidates`` of stored records (from :meth:`candidates`, taken before
        the writer thread) and drop the reviews of ``deleted`` ones; call inside the
        transaction that stores them."""
        report = match_candidates(db, self.integration, connection_id, candidates, self._order)
        if deleted:
            forget_reviews(db, (self.integration, connection_id), [str(i) for i in deleted])
        return report

    def forget_tombstoned(
        self,
        db: sqlite_utils.Database,
        table: RecordTable,
        connection_id: str,
        rows: tuple[int, int],
    ) -> None:
        """Drop the reviews of this connection's records tombstoned in the rowid range
        ``(low, high]`` (one part of a full sync's sweep); call inside a write transaction."""
        forget_reviews(db, (self.integration, connection_id), swept=(table.name, rows))


def stream_clients(integration: str, stream: Stream) -> StreamClients | None:
    """The matching of ``stream``'s records, or None if it declares no client fields."""
    if stream.client is None:
        return None
    return StreamClients(integration, stream, stream.client)


@dataclass
class MatchTally:
    """The outcomes of one stream's matches over a run (or one ``write_records`` call)."""

    counts: dict[str, int] = field(
        default_factory=lambda: {"matched": 0, "created": 0, "ambiguous": 0}
    )
    linked: list[dict[str, Any]] = field(default_factory=list)
    ambiguous: list[dict[str, Any]] = field(default_factory=list)
    notes: list[dict[str, Any]] = field(default_factory=list)
    truncated: bool = False

    @classmethod
    def of(cls, report: MatchReport) -> MatchTally:
        """The tally of one report."""
        tally = cls()
        tally.add(report)
        return tally

    @property
    def empty(self) -> bool:
        """True if no record was matched (nothing to announce)."""
        return not any(self.counts.values())

    def add(self, report: MatchReport) -> None:
        """Count one transaction's report and keep its new links and ambiguous records."""
        for outcome, count in report.counts().items():
            self.counts[outcome] += count
        for result in report.results:
            if result.note:
                self._keep(self.notes, {"record": result.provider_id, "note": result.note})
            entry: dict[str, Any]
            if result.outcome == "ambiguous":
                entry = {
                    "record": result.provider_id,
                    "reason": result.reason,
                    "clients": list(result.candidates),
                }
                self._keep(self.ambiguous, entry)
            elif result.matched_by != "link":
                entry = {
                    "record": result.provider_id,
                    "client": result.client_id,
                    "by": result.matched_by,
                }
                self._keep(self.linked, entry)

    def _keep(self, entries: list[dict[str, Any]], entry: dict[str, Any]) -> None:
        if len(entries) < MAX_IDS:
            entries.append(entry)
        else:
            self.truncated = True

    def event_data(self, integration: str, connection_id: str, stream: str) -> dict[str, Any]:
        """The ``clients.matched`` event's data: counts (``matched`` includes records matched
        by their existing link), the new links (``linked``: record, client, ``by``:
        ``client_id``, ``tax_id``, ``name``, ``email`` or ``created``), the
        ``ambiguous_records`` (record, reason, candidate clients), the ``notes`` (record,
        note: its client id names no client), at most :data:`MAX_IDS` of each
        (``truncated``)."""
        return {
            "integration": integration,
            "connection": connection_id,
            "stream": stream,
            **self.counts,
            "linked": self.linked,
            "ambiguous_records": self.ambiguous,
            "notes": self.notes,
            "truncated": self.truncated,
        }

    async def announce(
        self,
        emit: Callable[[str, dict[str, Any]], Awaitable[object]],
        integration: str,
        connection_id: str,
        stream: str,
    ) -> None:
        """After the commit: log the totals (a warning naming the first ambiguous records)
        and emit ``clients.matched`` through ``emit``; nothing if no record was matched."""
        if self.empty:
            return
        log.info(
            "records matched to clients", connection=connection_id, stream=stream, **self.counts
        )
        if self.ambiguous:
            log.warning(
                "records not linked to a client: ambiguous",
                connection=connection_id,
                stream=stream,
                count=self.counts["ambiguous"],
                first={a["record"]: a["reason"] for a in self.ambiguous[:5]},
            )
        if self.notes:
            log.warning(
                "records matched to clients with notes",
                connection=connection_id,
                stream=stream,
                first={n["record"]: n["note"] for n in self.notes[:5]},
            )
        await emit("clients.matched", self.event_data(integration, connection_id, stream))
