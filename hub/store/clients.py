"""The clients registry: the firm's clients, each linked to the records that stand for it.

A client (a business the firm serves) is linked to its ids at providers: a QuickBooks customer
per company (realm), later a Stripe customer or a documents folder. Plugins hand candidate
records to :meth:`Clients.match`, which settles each one deterministically (candidates are
taken in provider-id order, so the same store and input always give the same result):

1. a link already exists for (integration, connection, provider id): *matched* by ``link``;
2. else exactly one client has the same normalised business name: *matched* by ``name``;
3. else exactly one client has the same e-mail address: *matched* by ``email``;
4. else no client resembles it: a client is *created* from it and linked (``created``).

When the evidence is not clear-cut — several clients share the name or the e-mail, the name
and the e-mail point at different clients, or the client found is already linked to another
record of the same connection — the candidate is reported *ambiguous* and left unlinked for a
person to settle with :meth:`Clients.link`. Nothing is ever merged silently. Ambiguous
candidates are kept in ``client_reviews`` (:meth:`Clients.reviews`) until they are linked by
hand or a later match settles them.
"""

from __future__ import annotations

import re
import unicodedata
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson
import sqlite_utils

from hub.store.clock import utcnow
from hub.store.database import Database

CHUNK = 900  # below SQLite's 999 variables per statement
LEGAL_FORMS = frozenset(
    {
        "co", "company", "corp", "corporation", "inc", "incorporated", "llc", "llp", "lp",
        "ltd", "limited", "pc", "pllc", "plc", "gmbh", "sa", "bv",
    }
)  # fmt: skip
Outcome = Literal["matched", "created", "ambiguous"]


def normalise_name(name: str | None) -> str:
    """A business name reduced for comparison: case, accents, punctuation, ``&`` and a
    trailing legal form (``Inc.``, ``LLC``, …) or a leading ``The`` do not count."""
    if not name:
        return ""
    text = unicodedata.normalize("NFKD", name).casefold()
    text = "".join(c for c in text if not unicodedata.combining(c))
    words = re.findall(r"\w+", text.replace("&", " and ").replace(".", ""))
    core = words[1:] if words[:1] == ["the"] and len(words) > 1 else words
    while len(core) > 1 and core[-1] in LEGAL_FORMS:
        core = core[:-1]
    return " ".join(core)


def normalise_email(email: str | None) -> str:
    """An e-mail address for comparison (trimmed, case-folded), or "" if it is not one."""
    value = (email or "").strip().casefold()
    return value if "@" in value else ""


@dataclass(frozen=True)
class Candidate:
    """A provider record that may stand for a client (a QuickBooks customer)."""

    provider_id: str
    name: str | None = None
    email: str | None = None


@dataclass(frozen=True)
class MatchResult:
    """How one candidate was settled.

    :param matched_by: ``link``, ``name``, ``email`` or ``created``; None when ambiguous.
    :param candidates: for an ambiguous candidate, the client ids it could belong to.
    """

    provider_id: str
    outcome: Outcome
    client_id: int | None
    matched_by: str | None
    reason: str = ""
    candidates: tuple[int, ...] = ()


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


def _chunked(
    db: sqlite_utils.Database, sql: str, fixed: Sequence[Any], values: Iterable[Any]
) -> Iterator[tuple[Any, ...]]:
    """Rows of ``sql`` (with one ``{marks}`` placeholder list) for ``values`` in chunks."""
    items = list(dict.fromkeys(values))
    for start in range(0, len(items), CHUNK):
        chunk = items[start : start + CHUNK]
        query = sql.format(marks=",".join("?" * len(chunk)))
        yield from db.conn.execute(query, [*fixed, *chunk]).fetchall()


class _Matcher:
    """One match run inside one write transaction: indexes the relevant rows up front."""

    def __init__(self, db: sqlite_utils.Database, integration: str, connection_id: str) -> None:
        self.db = db
        self.scope = (integration, connection_id)
        self.now = utcnow()
        self.linked: dict[str, int] = {}
        self.by_name: dict[str, set[int]] = defaultdict(set)
        self.by_email: dict[str, set[int]] = defaultdict(set)
        self.taken: dict[int, str] = {}

    def load(self, candidates: Sequence[Candidate]) -> None:
        """Read the links, same-name and same-e-mail clients these candidates may meet."""
        db, scope = self.db, self.scope
        link_sql = (
            "SELECT provider_id, client_id FROM client_links "
            "WHERE integration = ? AND connection_id = ? AND provider_id IN ({marks})"
        )
        ids = [c.provider_id for c in candidates]
        self.linked = {pid: cid for pid, cid in _chunked(db, link_sql, scope, ids)}
        names = [k for k in (normalise_name(c.name) for c in candidates) if k]
        emails = [e for e in (normalise_email(c.email) for c in candidates) if e]
        name_sql = "SELECT name_key, id FROM clients WHERE name_key IN ({marks})"
        for key, cid in _chunked(db, name_sql, (), names):
            self.by_name[key].add(cid)
        email_sql = "SELECT email, id FROM clients WHERE email IN ({marks})"
        for email, cid in _chunked(db, email_sql, (), emails):
            self.by_email[email].add(cid)
        found = {c for ids_ in (*self.by_name.values(), *self.by_email.values()) for c in ids_}
        taken_sql = (
            "SELECT client_id, provider_id FROM client_links "
            "WHERE integration = ? AND connection_id = ? AND client_id IN ({marks})"
        )
        self.taken = {cid: pid for cid, pid in _chunked(db, taken_sql, scope, found)}

    def settle(self, candidate: Candidate) -> MatchResult:
        """Match, create or report one candidate (see the module docstring for the rules)."""
        pid = candidate.provider_id
        if pid in self.linked:
            return MatchResult(pid, "matched", self.linked[pid], "link")
        name_key, email = normalise_name(candidate.name), normalise_email(candidate.email)
        by_name = sorted(self.by_name.get(name_key, ())) if name_key else []
        by_email = sorted(self.by_email.get(email, ())) if email else []
        if by_name:
            if len(by_name) > 1:
                return self._ambiguous(pid, "several clients have this business name", by_name)
            if by_email and by_name[0] not in by_email:
                reason = "the business name and the e-mail address point at different clients"
                return self._ambiguous(pid, reason, sorted({*by_name, *by_email}))
            return self._link(pid, by_name[0], "name")
        if by_email:
            if len(by_email) > 1:
                return self._ambiguous(pid, "several clients have this e-mail address", by_email)
            return self._link(pid, by_email[0], "email")
        return self._create(candidate, name_key, email)

    def _ambiguous(self, pid: str, reason: str, clients: list[int]) -> MatchResult:
        return MatchResult(pid, "ambiguous", None, None, reason, tuple(clients))

    def _link(self, pid: str, client_id: int, matched_by: str) -> MatchResult:
        other = self.taken.get(client_id)
        if other is not None:
            reason = f"client {client_id} is already linked to {other} of this connection"
            return self._ambiguous(pid, reason, [client_id])
        self.db.conn.execute(
            "INSERT INTO client_links (client_id, integration, connection_id, provider_id, "
            "matched_by, created_at) VALUES (?, ?, ?, ?, ?, ?)",
            [client_id, *self.scope, pid, matched_by, self.now],
        )
        self.taken[client_id] = pid
        self.linked[pid] = client_id
        return MatchResult(pid, "matched", client_id, matched_by)

    def _create(self, candidate: Candidate, name_key: str, email: str) -> MatchResult:
        name = candidate.name or candidate.email or f"{self.scope[0]} {candidate.provider_id}"
        cursor = self.db.conn.execute(
            "INSERT INTO clients (name, name_key, email, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?)",
            [name, name_key, email or None, self.now, self.now],
        )
        client_id = int(cursor.lastrowid or 0)
        if name_key:
            self.by_name[name_key].add(client_id)
        if email:
            self.by_email[email].add(client_id)
        result = self._link(candidate.provider_id, client_id, "created")
        return MatchResult(result.provider_id, "created", client_id, "created")


def _keep_reviews(
    db: sqlite_utils.Database,
    integration: str,
    connection_id: str,
    candidates: Sequence[Candidate],
    report: MatchReport,
) -> None:
    """Record this match's ambiguous candidates for review; forget those it settled."""
    by_id = {candidate.provider_id: candidate for candidate in candidates}
    scope = (integration, connection_id)
    waiting = db.conn.execute(
        "SELECT 1 FROM client_reviews WHERE integration = ? AND connection_id = ? LIMIT 1", scope
    ).fetchone()
    if waiting:  # usually none: then no delete per settled customer on every sync
        settled = [(*scope, r.provider_id) for r in report.results if r.outcome != "ambiguous"]
        db.conn.executemany(
            "DELETE FROM client_reviews WHERE integration = ? AND connection_id = ? "
            "AND provider_id = ?",
            settled,
        )
    now = utcnow()
    db.conn.executemany(
        "INSERT OR REPLACE INTO client_reviews (integration, connection_id, provider_id, name, "
        "email, reason, candidates, seen_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (
                *scope,
                r.provider_id,
                by_id[r.provider_id].name,
                by_id[r.provider_id].email,
                r.reason,
                orjson.dumps(list(r.candidates)).decode(),
                now,
            )
            for r in report.of("ambiguous")
        ],
    )


class Clients:
    """The clients registry: deterministic matching of provider records, links, listings."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def match(
        self, integration: str, connection_id: str, candidates: Iterable[Candidate]
    ) -> MatchReport:
        """Settle each candidate as matched, created or ambiguous (see the module docstring).

        Idempotent: matching the same candidates again reports them matched by ``link``. A
        candidate listed twice counts once (the last one wins).
        """
        unique = sorted({c.provider_id: c for c in candidates}.values(), key=_order)

        def write(db: sqlite_utils.Database) -> MatchReport:
            matcher = _Matcher(db, integration, connection_id)
            matcher.load(unique)
            report = MatchReport([matcher.settle(candidate) for candidate in unique])
            _keep_reviews(db, integration, connection_id, unique, report)
            return report

        if not unique:
            return MatchReport()
        return await self._db.write(write)

    async def link(
        self,
        client_id: int,
        integration: str,
        connection_id: str,
        provider_id: str,
        matched_by: str = "manual",
    ) -> None:
        """Link a provider record to a client by hand (replacing its previous link, if any).

        :raise LookupError: no client ``client_id``.
        """

        def write(db: sqlite_utils.Database) -> None:
            found = db.conn.execute("SELECT 1 FROM clients WHERE id = ?", [client_id]).fetchone()
            if found is None:
                raise LookupError(f"no client {client_id}")
            db.conn.execute(
                "INSERT INTO client_links (client_id, integration, connection_id, provider_id, "
                "matched_by, created_at) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (integration, connection_id, provider_id) DO UPDATE SET "
                "client_id = excluded.client_id, matched_by = excluded.matched_by, "
                "created_at = excluded.created_at",
                [client_id, integration, connection_id, provider_id, matched_by, utcnow()],
            )
            db.conn.execute(
                "DELETE FROM client_reviews WHERE integration = ? AND connection_id = ? "
                "AND provider_id = ?",
                [integration, connection_id, provider_id],
            )

        await self._db.write(write)

    async def reviews(self, limit: int = -1) -> list[dict[str, Any]]:
        """Candidates matching left ambiguous, each with the clients it could belong to
        (``candidates``: id and name), oldest first; at most ``limit`` (-1: all)."""

        def read(db: sqlite_utils.Database) -> list[dict[str, Any]]:
            rows = list(
                db.query(
                    "SELECT integration, connection_id, provider_id, name, email, reason, "
                    "candidates, seen_at FROM client_reviews ORDER BY seen_at, provider_id "
                    "LIMIT ?",
                    [limit],
                )
            )
            wanted = {cid for row in rows for cid in orjson.loads(row["candidates"])}
            names = dict(
                _chunked(db, "SELECT id, name FROM clients WHERE id IN ({marks})", (), wanted)
            )
            for row in rows:
                row["candidates"] = [
                    {"id": cid, "name": names.get(cid)} for cid in orjson.loads(row["candidates"])
                ]
            return rows

        return await self._db.read(read)

    async def review_count(self) -> int:
        """How many candidates wait for a person to settle them."""
        row = await self._db.read(
            lambda db: db.execute("SELECT count(*) FROM client_reviews").fetchone()
        )
        return int(row[0])

    async def list(self) -> list[dict[str, Any]]:
        """Every client with its links (``links``: integration, connection, provider id, how)."""

        def read(db: sqlite_utils.Database) -> list[dict[str, Any]]:
            clients = {
                row["id"]: {**row, "links": []}
                for row in db.query("SELECT id, name, email, created_at FROM clients ORDER BY id")
            }
            for link in db.query(
                "SELECT client_id, integration, connection_id, provider_id, matched_by "
                "FROM client_links ORDER BY integration, connection_id, provider_id"
            ):
                clients[link.pop("client_id")]["links"].append(link)
            return list(clients.values())

        return await self._db.read(read)
