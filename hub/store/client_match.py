"""Matching provider records to the firm's clients, inside the caller's write transaction.

Candidates are settled deterministically (taken in provider-id order, so the same store and
input always give the same result):

1. a link already exists for (integration, connection, provider id): *matched* by ``link``;
2. else the evidence of the stream's order (default :data:`~hub.model.CLIENT_EVIDENCE`), the
   first that finds a client settles it:

   * ``client_id``: the candidate names an existing client by its hub id: *matched* by
     ``client_id`` (a record that names no client is matched by the rest, with a ``note``);
   * ``tax_id``: exactly one client has one of the candidate's tax ids;
   * ``name``: exactly one client has the same normalised business name;
   * ``email``: exactly one client has the same e-mail address;

3. else no client resembles it: a client is *created* from it and linked (``created``).

When the evidence is not clear-cut — several clients share the tax id, the name or the
e-mail, the name and the e-mail point at different clients, the client found by name or
e-mail has tax ids and none of the candidate's, or the client found is already linked to
another record of the same connection — the candidate is reported *ambiguous* and left
unlinked for a person to settle. Nothing is ever merged silently. Ambiguous candidates are
kept in ``client_reviews`` until they are linked by hand, a later match settles them, or
their record is tombstoned. A settled candidate's tax ids are added to its client's.
"""

from __future__ import annotations

import re
import unicodedata
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import orjson
import sqlite_utils

from hub.model import CLIENT_EVIDENCE
from hub.store.bulk import insert_rows
from hub.store.clock import utcnow

CHUNK = 900  # below SQLite's 999 variables per statement
LEGAL_FORMS = frozenset(
    {
        "co", "company", "corp", "corporation", "inc", "incorporated", "llc", "llp", "lp",
        "ltd", "limited", "pc", "pllc", "plc", "gmbh", "sa", "bv",
    }
)  # fmt: skip
MASKED = re.compile(r"[*•]|XXX")
WORDS = re.compile(r"\w+")
Outcome = Literal["matched", "created", "ambiguous"]
WHAT = {"tax_id": "tax id", "name": "business name", "email": "e-mail address"}
PAIRED = {"name": "email", "email": "name"}
"""Evidence that must not point at another client than its pair does."""


def normalise_name(name: str | None) -> str:
    """A business name reduced for comparison: case, accents, punctuation, ``&`` and a
    trailing legal form (``Inc.``, ``LLC``, …) or a leading ``The`` do not count."""
    if not name:
        return ""
    if name.isascii():  # most names: decomposing and case-folding ASCII is lower()
        text = name.lower()
    else:
        text = unicodedata.normalize("NFKD", name).casefold()
        text = "".join(c for c in text if not unicodedata.combining(c))
    words = WORDS.findall(text.replace("&", " and ").replace(".", ""))
    core = words[1:] if words[:1] == ["the"] and len(words) > 1 else words
    while len(core) > 1 and core[-1] in LEGAL_FORMS:
        core = core[:-1]
    return " ".join(core)


def normalise_email(email: str | None) -> str:
    """An e-mail address for comparison (trimmed, case-folded), or "" if it is not one."""
    value = (email or "").strip().casefold()
    return value if "@" in value else ""


def normalise_tax_id(tax_id: str | None) -> str:
    """A tax id for comparison: letters and digits only, upper case (``de 123-456.789`` is
    ``DE123456789``); "" when it is not one: fewer than four characters, no digit, or masked
    the way providers return a hidden id (``XXXXX1234``, ``***1234``)."""
    text = unicodedata.normalize("NFKC", tax_id or "").upper()
    if MASKED.search(text):
        return ""
    value = "".join(c for c in text if c.isascii() and c.isalnum())
    return value if len(value) >= 4 and any(c.isdigit() for c in value) else ""


def client_key(value: str | None) -> int | None:
    """A hub client id as a record carries it (``"7"``), or None if it is not one."""
    text = (value or "").strip()
    if not (text.isascii() and text.isdigit()):
        return None
    number = int(text)
    return number if 0 < number < 2**63 else None


@dataclass(frozen=True)
class _Keys:
    """A candidate's normalised evidence (computed once, when the candidate is made)."""

    name: str
    email: str
    taxes: tuple[str, ...]

    @classmethod
    def of(cls, candidate: Candidate) -> _Keys:
        """The normalised name, e-mail address and tax ids of ``candidate``."""
        taxes = _tax_ids(candidate) if candidate.tax_ids else ()
        return cls(normalise_name(candidate.name), normalise_email(candidate.email), taxes)


@dataclass(frozen=True)
class Candidate:
    """A provider record that may stand for a client (a QuickBooks or Stripe customer).

    Its normalised evidence (``keys``) is computed when it is made: a sync makes candidates
    on the event loop, so the writer thread, which settles them, does not normalise.
    """

    provider_id: str
    name: str | None = None
    email: str | None = None
    tax_ids: tuple[str, ...] = ()
    client_id: str | None = None
    keys: _Keys = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "keys", _Keys.of(self))


@dataclass(frozen=True)
class MatchResult:
    """How one candidate was settled.

    :param matched_by: ``link``, ``client_id``, ``tax_id``, ``name``, ``email`` or
        ``created``; None when ambiguous.
    :param candidates: for an ambiguous candidate, the client ids it could belong to.
    :param note: what a person may want to know beside the outcome (the client id the
        candidate carries names no client).
    """

    provider_id: str
    outcome: Outcome
    client_id: int | None
    matched_by: str | None
    reason: str = ""
    candidates: tuple[int, ...] = ()
    note: str = ""


@dataclass
class MatchReport:
    """Every candidate's result, in the order they were settled."""

    results: list[MatchResult] = field(default_factory=list)

    def of(self, outcome: Outcome) -> list[MatchResult]:
        """The results with one outcome."""
        return [r for r in self.results if r.outcome == outcome]

    def counts(self) -> dict[str, int]:
        """``{"matched": n, "created": n, "ambiguous": n}``."""
        out = {"matched": 0, "created": 0, "ambiguous": 0}
        for result in self.results:
            out[result.outcome] += 1
        return out


def _order(candidate: Candidate) -> tuple[int, str]:
    pid = candidate.provider_id
    return (int(pid), "") if pid.isdigit() else (1 << 62, pid)


def chunked(
    db: sqlite_utils.Database, sql: str, fixed: Sequence[Any], values: Iterable[Any]
) -> Iterator[tuple[Any, ...]]:
    """Rows of ``sql`` (with one ``{marks}`` placeholder list) for ``values`` in chunks."""
    items = list(dict.fromkeys(values))
    for start in range(0, len(items), CHUNK):
        chunk = items[start : start + CHUNK]
        query = sql.format(marks=",".join("?" * len(chunk)))
        yield from db.conn.execute(query, [*fixed, *chunk]).fetchall()


def _tax_ids(candidate: Candidate) -> tuple[str, ...]:
    return tuple(dict.fromkeys(k for k in map(normalise_tax_id, candidate.tax_ids) if k))


class _Matcher:
    """One match run inside one write transaction: indexes the relevant rows up front, and
    writes the new clients, links and tax ids in one statement each when it is done."""

    def __init__(
        self,
        db: sqlite_utils.Database,
        integration: str,
        connection_id: str,
        order: Sequence[str] = CLIENT_EVIDENCE,
    ) -> None:
        self.db = db
        self.order = tuple(order)
        self.named: set[int] = set()
        self.scope = (integration, connection_id)
        self.now = utcnow()
        self.linked: dict[str, int] = {}
        self.by_tax: dict[str, set[int]] = defaultdict(set)
        self.by_name: dict[str, set[int]] = defaultdict(set)
        self.by_email: dict[str, set[int]] = defaultdict(set)
        self.taxes_of: dict[int, set[str]] = defaultdict(set)
        self.taken: dict[int, str] = {}
        self.next_client = 0
        """The id the next created client gets (0: not read yet)."""
        self.new_clients: list[tuple[Any, ...]] = []
        self.new_links: list[tuple[Any, ...]] = []
        self.new_taxes: list[tuple[str, int]] = []

    def load(self, candidates: Sequence[Candidate]) -> None:
        """Read the links and the same-tax-id, same-name and same-e-mail clients these
        candidates may meet, with those clients' tax ids."""
        db, scope = self.db, self.scope
        link_sql = (
            "SELECT provider_id, client_id FROM client_links "
            "WHERE integration = ? AND connection_id = ? AND provider_id IN ({marks})"
        )
        pids = [c.provider_id for c in candidates]
        self.linked = {pid: cid for pid, cid in chunked(db, link_sql, scope, pids)}
        keys = [c.keys for c in candidates]
        lookups = {
            "SELECT tax_id, client_id FROM client_tax_ids WHERE tax_id IN ({marks})": (
                self.by_tax,
                [k for key in keys for k in key.taxes],
            ),
            "SELECT name_key, id FROM clients WHERE name_key IN ({marks})": (
                self.by_name,
                [key.name for key in keys if key.name],
            ),
            "SELECT email, id FROM clients WHERE email IN ({marks})": (
                self.by_email,
                [key.email for key in keys if key.email],
            ),
        }
        for sql, (index, values) in lookups.items():
            for key, cid in chunked(db, sql, (), values):
                index[key].add(cid)
        indexes = (self.by_tax, self.by_name, self.by_email)
        found = {c for index in indexes for ids_ in index.values() for c in ids_} | self.named
        taken_sql = (
            "SELECT client_id, provider_id FROM client_links "
            "WHERE integration = ? AND connection_id = ? AND client_id IN ({marks})"
        )
        self.taken = {cid: pid for cid, pid in chunked(db, taken_sql, scope, found)}
        tax_sql = "SELECT client_id, tax_id FROM client_tax_ids WHERE client_id IN ({marks})"
        for cid, tax_id in chunked(db, tax_sql, (), found | set(self.linked.values())):
            self.taxes_of[cid].add(tax_id)

    def load_named(self, candidates: Sequence[Candidate]) -> None:
        """Read which of the clients these candidates name by hub id exist (before
        :meth:`load`, which reads their links and tax ids)."""
        if "client_id" not in self.order:
            return
        wanted = [k for k in (client_key(c.client_id) for c in candidates) if k is not None]
        sql = "SELECT id FROM clients WHERE id IN ({marks})"
        self.named = {cid for (cid,) in chunked(self.db, sql, (), wanted)}

    def settle(self, candidate: Candidate) -> MatchResult:
        """Match, create or report one candidate (see the module docstring for the rules)."""
        pid, keys = candidate.provider_id, candidate.keys
        taxes = keys.taxes
        if pid in self.linked:
            self._learn(self.linked[pid], taxes)
            return MatchResult(pid, "matched", self.linked[pid], "link")
        named = client_key(candidate.client_id)
        for kind in self.order:  # the first evidence that finds a client settles it
            clients = self._found(kind, named, keys)
            if clients:
                result = self._settle_by(pid, kind, clients, named, keys)
                break
        else:
            result = self._create(candidate, keys)
        if candidate.client_id and "client_id" in self.order and named not in self.named:
            note = f"its client id {candidate.client_id[:40]!r} names no client"
            return replace(result, note=note)
        return result

    def _found(self, evidence: str, named: int | None, keys: _Keys) -> list[int]:
        """The clients one kind of evidence of a candidate points at, in id order."""
        if evidence == "client_id":
            return [named] if named is not None and named in self.named else []
        if evidence == "tax_id":
            return sorted({cid for key in keys.taxes for cid in self.by_tax.get(key, ())})
        if evidence == "name":
            return sorted(self.by_name.get(keys.name, ())) if keys.name else []
        return sorted(self.by_email.get(keys.email, ())) if keys.email else []

    def _settle_by(
        self,
        pid: str,
        kind: str,
        clients: list[int],
        named: int | None,
        keys: _Keys,
    ) -> MatchResult:
        """Settle by the evidence ``kind``, which found ``clients``."""
        if len(clients) > 1:
            return self._ambiguous(pid, f"several clients have this {WHAT[kind]}", clients)
        pair = PAIRED.get(kind, "")
        others = self._found(pair, named, keys) if pair in self.order else []
        if others and clients[0] not in others:
            reason = "the business name and the e-mail address point at different clients"
            return self._ambiguous(pid, reason, sorted({*clients, *others}))
        refused = self._link(pid, clients[0], kind, keys.taxes)
        return refused or MatchResult(pid, "matched", clients[0], kind)

    def _ambiguous(self, pid: str, reason: str, clients: list[int]) -> MatchResult:
        return MatchResult(pid, "ambiguous", None, None, reason, tuple(clients))

    def _link(
        self, pid: str, client_id: int, matched_by: str, taxes: tuple[str, ...]
    ) -> MatchResult | None:
        """Link ``pid`` to ``client_id``; None when linked, else why not (ambiguous)."""
        other = self.taken.get(client_id)
        if other is not None:
            reason = f"client {client_id} is already linked to {other} of this connection"
            return self._ambiguous(pid, reason, [client_id])
        known = self.taxes_of.get(client_id)
        if matched_by in PAIRED and taxes and known and known.isdisjoint(taxes):
            reason = f"client {client_id} has another tax id"
            return self._ambiguous(pid, reason, [client_id])
        self.new_links.append((client_id, *self.scope, pid, matched_by, self.now))
        self.taken[client_id] = pid
        self.linked[pid] = client_id
        self._learn(client_id, taxes)
        return None

    def _learn(self, client_id: int, taxes: tuple[str, ...]) -> None:
        """Add the tax ids of a record linked to ``client_id`` to the client's."""
        if not taxes:
            return
        known = self.taxes_of[client_id]
        for key in taxes:
            if key not in known:
                self.new_taxes.append((key, client_id))
                known.add(key)
                self.by_tax[key].add(client_id)

    def _create(self, candidate: Candidate, keys: _Keys) -> MatchResult:
        name = candidate.name or candidate.email or f"{self.scope[0]} {candidate.provider_id}"
        if not self.next_client:
            # the id SQLite would give the next row of this AUTOINCREMENT table
            row = self.db.conn.execute(
                "SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'clients'), "
                "0), coalesce((SELECT max(id) FROM clients), 0))"
            ).fetchone()
            self.next_client = int(row[0]) + 1
        client_id, self.next_client = self.next_client, self.next_client + 1
        name_key, email = keys.name, keys.email
        self.new_clients.append((client_id, name, name_key, email or None, self.now, self.now))
        if name_key:
            self.by_name[name_key].add(client_id)
        if email:
            self.by_email[email].add(client_id)
        self._link(candidate.provider_id, client_id, "created", keys.taxes)  # a new client
        return MatchResult(candidate.provider_id, "created", client_id, "created")

    def write(self) -> None:
        """Insert the clients, links and tax ids this run settled (clients first: the links
        and tax ids refer to them)."""
        conn = self.db.conn
        insert_rows(
            conn,
            "INSERT INTO clients (id, name, name_key, email, created_at, updated_at) "
            "VALUES {values}",
            self.new_clients,
        )
        insert_rows(
            conn,
            "INSERT INTO client_links (client_id, integration, connection_id, provider_id, "
            "matched_by, created_at) VALUES {values}",
            self.new_links,
        )
        insert_rows(
            conn,
            "INSERT OR IGNORE INTO client_tax_ids (tax_id, client_id) VALUES {values}",
            self.new_taxes,
        )


def _keep_reviews(
    db: sqlite_utils.Database,
    scope: tuple[str, str],
    candidates: Sequence[Candidate],
    report: MatchReport,
) -> None:
    """Record this match's ambiguous candidates for review; forget those it settled."""
    by_id = {candidate.provider_id: candidate for candidate in candidates}
    if has_reviews(db, scope):  # usually none: then no delete per settled record
        settled = [(*scope, r.provider_id) for r in report.results if r.outcome != "ambiguous"]
        db.conn.executemany(
            "DELETE FROM client_reviews WHERE integration = ? AND connection_id = ? "
            "AND provider_id = ?",
            settled,
        )
    now = utcnow()
    insert_rows(
        db.conn,
        "INSERT OR REPLACE INTO client_reviews (integration, connection_id, provider_id, name, "
        "email, tax_ids, reason, candidates, seen_at) VALUES {values}",
        [
            (
                *scope,
                r.provider_id,
                by_id[r.provider_id].name,
                by_id[r.provider_id].email,
                orjson.dumps(list(by_id[r.provider_id].tax_ids)).decode(),
                r.reason,
                orjson.dumps(list(r.candidates)).decode(),
                now,
            )
            for r in report.of("ambiguous")
        ],
    )


def has_reviews(db: sqlite_utils.Database, scope: tuple[str, str]) -> bool:
    """True if a record of (integration, connection) waits for review."""
    row = db.conn.execute(
        "SELECT 1 FROM client_reviews WHERE integration = ? AND connection_id = ? LIMIT 1", scope
    ).fetchone()
    return row is not None


def forget_reviews(
    db: sqlite_utils.Database,
    scope: tuple[str, str],
    ids: Sequence[str] = (),
    swept: tuple[str, tuple[int, int]] | None = None,
) -> None:
    """Drop the reviews of (integration, connection) records that are gone: ``ids``, or the
    tombstoned records of one sweep part, ``(record table, (low, high] rowids))``.

    The part's rowid bounds keep each part's delete to the rows it swept, not every
    tombstone the table has."""
    if not has_reviews(db, scope):
        return
    sql = "DELETE FROM client_reviews WHERE integration = ? AND connection_id = ? AND "
    db.conn.executemany(sql + "provider_id = ?", [(*scope, i) for i in ids])
    if swept is not None:
        table, (low, high) = swept
        db.conn.execute(
            sql + f"provider_id IN (SELECT id FROM [{table}] WHERE connection_id = ? "
            "AND deleted_at IS NOT NULL AND rowid > ? AND rowid <= ?)",
            [*scope, scope[1], low, high],
        )


def match_candidates(
    db: sqlite_utils.Database,
    integration: str,
    connection_id: str,
    candidates: Iterable[Candidate],
    order: Sequence[str] = CLIENT_EVIDENCE,
) -> MatchReport:
    """Settle each candidate as matched, created or ambiguous by the evidence of ``order``
    (see the module docstring); call inside a write transaction (on the store's writer
    thread).

    Idempotent: matching the same candidates again reports them matched by ``link``. A
    candidate listed twice counts once (the last one wins).
    """
    unique = sorted({c.provider_id: c for c in candidates}.values(), key=_order)
    if not unique:
        return MatchReport()
    matcher = _Matcher(db, integration, connection_id, order)
    matcher.load_named(unique)
    matcher.load(unique)
    report = MatchReport([matcher.settle(candidate) for candidate in unique])
    matcher.write()
    _keep_reviews(db, (integration, connection_id), unique, report)
    return report
