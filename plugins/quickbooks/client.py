"""QuickBooks Online v3 API calls, through the hub's shared HTTP client.

Every call carries ``minorversion`` and the connection's bearer token, and counts against the
company's budget: no 1-second window holds more than ``requests_per_second`` requests, no
60-second window more than ``requests_per_minute``, and at most ``max_concurrent`` are in
flight (Intuit sends no rate-limit headers, so the hub keeps the count). The shared client
retries 429, 5xx, timeouts and resets with backoff honouring ``Retry-After``; after a 429 the
company's calls pause ``throttle_wait_s``, as Intuit advises. A ``200`` whose body is a
``Fault`` is an error, classified like a status (and retried when it is a throttle or a
system fault). A ``401`` refreshes the access token once (single-flight, see :mod:`.oauth`)
and repeats the call. A failed call's log line and error quote the answer's ``intuit_tid``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from hub.api import HttpClient, Response, RetryPolicy
from hub.errors import (
    AuthenticationError,
    AuthorizationError,
    ProviderError,
    RateLimitError,
    ServerError,
    ValidationError,
)

if TYPE_CHECKING:
    from hub.model import Connection

    from .settings import QuickBooksSettings

JSON = dict[str, Any]
Refresher = Callable[[str], Awaitable[None]]
"""Called with the access token a 401 answered; refreshes it unless someone already has."""

_AUTHENTICATION_CODES = frozenset({"100", "3200", "3201", "3202"})
_AUTHORIZATION_CODES = frozenset({"3100", "3101", "3102", "3103"})
_THROTTLE_CODES = frozenset({"3001", "3002", "3003"})
_SYSTEM_CODES = frozenset({"10000", "10001", "10002"})
_NOT_FOUND_CODE = "610"


INTUIT_TID = "intuit_tid"
"""The answer header Intuit's support asks for: a failed call's error and log line quote it."""
ARRIVAL_MARGIN_S = 0.2
"""Intuit counts requests as they arrive: each window the hub counts is this much longer, so
calls admitted a window apart cannot arrive closer than one even when the first is held up
on its way (a loop stall, a new connection). It costs nothing against the minute's budget:
10 calls per 1.2 s is 500 a minute."""
ANSWER_NAMES = {"CreditCardPayment": "CreditCardPaymentTxn"}
"""Entities whose objects Intuit's answers (query, read, CDC) name after their XSD type, not
after the entity asked for."""
_ENTITY_OF = {answer: entity for entity, answer in ANSWER_NAMES.items()}


def configure_limits(http: HttpClient, key: str, settings: QuickBooksSettings) -> None:
    """Set a company's budget on the shared client (the first configuration of a key wins):
    exact sliding windows per second and per minute, and the cap on calls in flight."""
    windows = (
        (settings.requests_per_second, 1.0 + ARRIVAL_MARGIN_S),
        (settings.requests_per_minute, 60.0 + ARRIVAL_MARGIN_S),
    )
    http.configure_limit(key, windows=windows, max_concurrent=settings.max_concurrent)


def reports_limit_key(connection_id: str) -> str:
    """The key of a company's Reports API pace (:class:`~.reports.ReportPacer`): Intuit
    throttles reports on their own budget, on top of the company's other limits."""
    return f"{connection_id}/reports"


def fault_error(fault: Mapping[str, Any], where: str) -> ProviderError:
    """The hub error for an Intuit ``Fault`` object (status-less, as it came inside a 200)."""
    errors = [e for e in fault.get("Error") or [] if isinstance(e, Mapping)]
    kind = str(fault.get("type", ""))
    codes = {str(e.get("code", "")) for e in errors}
    detail = "; ".join(
        f"{e.get('Message', '')} (code {e.get('code', '?')}): {e.get('Detail', '')}" for e in errors
    )
    message = f"{where}: {kind or 'Fault'}: {detail or 'no detail'}"
    if kind == "AuthenticationFault" or codes & _AUTHENTICATION_CODES:
        return AuthenticationError(message)
    if kind == "AuthorizationFault" or codes & _AUTHORIZATION_CODES:
        return AuthorizationError(message)
    if codes & _THROTTLE_CODES or "ThrottleExceeded" in detail:
        return RateLimitError(message)
    if kind == "SystemFault" or codes & _SYSTEM_CODES:
        return ServerError(message)
    return ValidationError(message)


def check_fault(response: Response) -> None:
    """Raise for a 2xx body that is an Intuit ``Fault`` (used as the shared client's check)."""
    if b'"Fault"' not in response.body:  # cheap pre-test; a record may contain the word
        return
    body = response.json()
    fault = body.get("Fault") if isinstance(body, dict) else None
    if isinstance(fault, Mapping):
        raise fault_error(fault, response.url.split("?", 1)[0])


EXPLICIT_COLUMNS = {"Item": ", Sku"}
"""Properties Intuit's query answers only when named: ``SELECT *`` leaves out an Item's Sku."""


def page_statement(entity: str, position: int, size: int, include_inactive: bool) -> str:
    """The query for one page of ``entity`` in Id order (list entities: inactive ones too)."""
    where = " WHERE Active IN (true, false)" if include_inactive else ""
    columns = "*" + EXPLICIT_COLUMNS.get(entity, "")
    statement = f"SELECT {columns} FROM {entity}{where} ORDERBY Id"  # noqa: S608 (Intuit query, fixed entity names)
    return f"{statement} STARTPOSITION {position} MAXRESULTS {size}"


def record_id(row: Mapping[str, Any]) -> int:
    """A record's numeric ``Id`` (QuickBooks ids are decimal strings)."""
    value = str(row.get("Id", ""))
    if not value.isdigit():
        raise ServerError(f"QuickBooks returned a record with a non-numeric Id {value!r}")
    return int(value)


@dataclass(frozen=True)
class Page:
    """Rows of one query page not seen before, and where to resume after them.

    :param position: the ``STARTPOSITION`` of the last row returned so far (the next page
        starts on it, to check that no row moved).
    :param last_id: that row's Id.
    """

    rows: list[JSON]
    position: int
    last_id: int


class QuickBooksClient:
    """One company's API: query (paged), read by id, change data capture, CompanyInfo."""

    def __init__(
        self,
        http: HttpClient,
        connection: Connection,
        settings: QuickBooksSettings,
        refresh: Refresher,
    ) -> None:
        self.realm_id = connection.key
        self._http = http
        self._connection = connection
        self._refresh = refresh
        self._base = f"{settings.api_base_url}/v3/company/{connection.key}"
        self._minor = str(settings.minor_version)
        self._key = connection.id
        self._retry = RetryPolicy(
            attempts=settings.retry_attempts,
            base_delay=settings.retry_base_delay,
            max_delay=60.0,
            throttle_wait=settings.throttle_wait_s,
        )
        self.page_size = settings.page_size
        self.prefetch = max(1, min(4, settings.max_concurrent - 1))
        configure_limits(http, connection.id, settings)

    async def get(self, path: str, params: Mapping[str, str] | None = None) -> JSON:
        """GET ``path`` under the company and return the JSON body (refreshing once on 401)."""
        return _object(await self.fetch(path, params))

    async def fetch(self, path: str, params: Mapping[str, str] | None = None) -> Response:
        """GET ``path`` under the company, unparsed (refreshing the token once on a 401)."""
        query = {**(params or {}), "minorversion": self._minor}
        url = f"{self._base}/{path}"
        for attempt in (1, 2):
            token = str(self._connection.credentials.get("access_token", ""))
            headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
            try:
                response = await self._http.request(
                    "GET",
                    url,
                    params=query,
                    headers=headers,
                    limit_key=self._key,
                    retry=self._retry,
                    check=check_fault,
                    request_id_header=INTUIT_TID,
                )
            except AuthenticationError:
                if attempt == 2:
                    raise
                await self._refresh(token)
                continue
            return response
        raise AssertionError("unreachable")

    async def company_info(self) -> tuple[JSON, datetime]:
        """The company's CompanyInfo record and the server's time of the answer."""
        body = await self.get(f"companyinfo/{self.realm_id}")
        return body["CompanyInfo"], server_time(body)

    async def read(self, entity: str, entity_id: str) -> JSON | None:
        """One entity by id, or None if it does not exist (deleted, merged away)."""
        # Intuit reads a company's one Preferences entity without an id
        path = "preferences" if entity == "Preferences" else f"{entity.lower()}/{entity_id}"
        try:
            body = await self.get(path)
        except ValidationError as exc:
            if "Object Not Found" in str(exc) or f'"code":"{_NOT_FOUND_CODE}"' in str(exc):
                return None
            raise
        record = body.get(ANSWER_NAMES.get(entity, entity))
        return record if isinstance(record, dict) else None

    async def query(self, statement: str, entity: str) -> list[JSON]:
        """The rows of one query (one page)."""
        return _rows(await self.fetch("query", {"query": statement}), entity)

    async def cdc(
        self, entities: Sequence[str], since: datetime
    ) -> tuple[dict[str, list[JSON]], datetime]:
        """Changes to ``entities`` since ``since`` (at most 1,000 objects over all of them),
        grouped by entity, and the server's time of the answer."""
        body = await self.get(
            "cdc", {"entities": ",".join(entities), "changedSince": since.isoformat()}
        )
        found: dict[str, list[JSON]] = {entity: [] for entity in entities}
        for response in body.get("CDCResponse") or []:
            for block in response.get("QueryResponse") or []:
                for name, rows in block.items():
                    if isinstance(rows, list):
                        found.setdefault(_ENTITY_OF.get(name, name), []).extend(rows)
        return found, server_time(body)

    async def pages(
        self, entity: str, include_inactive: bool, position: int = 1, last_id: int | None = None
    ) -> AsyncGenerator[Page, None]:
        """Every row of ``entity`` in Id order, page by page, resuming after ``last_id``.

        Each page starts on the previous page's last row: if that row is not where it was
        (rows before it were deleted meanwhile), the pager steps back until the page overlaps
        what was already read, so no row is skipped. While pages come back full, up to
        ``prefetch`` of the following pages are requested ahead, in parallel.
        """
        size, step = self.page_size, self.page_size - 1
        ahead: deque[tuple[int, asyncio.Future[Response]]] = deque()
        window, next_position = 1, position
        try:
            while True:
                while len(ahead) < window:
                    statement = page_statement(entity, next_position, size, include_inactive)
                    ahead.append(
                        (
                            next_position,
                            asyncio.ensure_future(self.fetch("query", {"query": statement})),
                        )
                    )
                    next_position += step
                at, future = ahead.popleft()
                rows = _rows(await future, entity)  # parsed only now: prefetched pages stay small
                if last_id is not None and at > 1 and (not rows or record_id(rows[0]) > last_id):
                    _cancel(ahead)  # rows moved down: look further back
                    window, next_position = 1, max(1, at - step)
                    continue
                seen = 0  # rows come in Id order: skip those already read (normally one)
                while last_id is not None and seen < len(rows) and record_id(rows[seen]) <= last_id:
                    seen += 1
                fresh = rows[seen:]
                if rows:
                    last_id = max(last_id or 0, record_id(rows[-1]))
                    position = at + len(rows) - 1
                    if fresh:
                        yield Page(fresh, position, last_id)
                if len(rows) < size:
                    return
                window = min(self.prefetch, window + 1)
                if ahead and ahead[0][0] != position:
                    _cancel(ahead)
                    next_position = position
                elif not ahead:
                    next_position = position
        finally:
            _cancel(ahead)


def server_time(body: Mapping[str, Any]) -> datetime:
    """The ``time`` Intuit stamps on every answer (ISO 8601 with offset)."""
    value = body.get("time")
    if not isinstance(value, str):
        raise ServerError("QuickBooks answered without a time stamp")
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ServerError(f"QuickBooks answered with a bad time stamp {value!r}") from None


def _object(response: Response) -> JSON:
    body = response.json()
    if not isinstance(body, dict):
        raise ServerError(f"{response.url.split('?', 1)[0]}: expected a JSON object")
    return body


def _rows(response: Response, entity: str) -> list[JSON]:
    answer = ANSWER_NAMES.get(entity, entity)
    return list((_object(response).get("QueryResponse") or {}).get(answer) or [])


def _cancel(ahead: deque[tuple[int, asyncio.Future[Response]]]) -> None:
    for _, future in ahead:
        future.cancel()
        future.add_done_callback(_retrieve)
    ahead.clear()


def _retrieve(future: asyncio.Future[Response]) -> None:
    with contextlib.suppress(asyncio.CancelledError, Exception):
        future.exception()
