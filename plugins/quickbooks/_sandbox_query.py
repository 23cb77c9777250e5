"""Intuit's query language, as the sandbox accepts and refuses it (package private).

The grammar (keywords, entity and property names are case-insensitive)::

    SELECT * [, Property ...] | COUNT(*) | Property [, Property ...] FROM Entity
      [WHERE Property Operator Value [AND ...]]
      [ORDERBY | ORDER BY Property [ASC | DESC] [, ...]]
      [STARTPOSITION n] [MAXRESULTS n]

``Operator`` is ``=``, ``<``, ``>``, ``<=``, ``>=``, ``IN ('a', 'b')`` or ``LIKE`` (``%`` is
the only wildcard, as Intuit documents); a value is a quoted string (``\\'`` escapes a quote),
a number, ``true`` or ``false``. Only Intuit's filterable properties of an entity may be filtered
and sorted on (:data:`FILTERABLE`); any other name is refused as Intuit refuses it, with
``QueryValidationError: property 'X' is not queryable`` (code 4001), and a malformed statement
with a ``QueryParserError`` (code 4000). Amounts compare as decimals, dates and times as
instants, strings without regard to case. ``MAXRESULTS`` is capped at 1000 (default 100).

A projection answers the chosen properties plus ``domain`` and ``sparse: true``. Some
properties come back only when asked for by name (:data:`EXPLICIT_ONLY`, e.g.
``SELECT *, Sku FROM Item``). ``Id``, ``Active`` and ``MetaData.LastUpdatedTime`` conditions
and an ``Id`` or ``MetaData.LastUpdatedTime`` order are served from the company's indexes;
anything else reads the matching rows in full and filters and sorts them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date, datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from ._sandbox_data import BY_LOWER, JSON, LIST_ENTITIES

if TYPE_CHECKING:
    from ._sandbox_data import Company, Table

MAX_RESULTS_LIMIT = 1000
DEFAULT_MAX_RESULTS = 100


class QueryError(Exception):
    """A query Intuit would refuse: ``code``, ``message`` and ``detail`` as in its Fault."""

    def __init__(self, code: str, message: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.message = message
        self.detail = detail


# --------------------------------------------------------------------------- properties

# How a property's values read and compare: text, a decimal amount, a date, an instant, a
# boolean, a numeric Id, a reference's ``value`` or an e-mail address's ``Address``.
Kind = str
_COMMON: dict[str, Kind] = {
    "Id": "id",
    "MetaData.CreateTime": "instant",
    "MetaData.LastUpdatedTime": "instant",
}
_NAMED: dict[str, Kind] = {"Name": "text", "Active": "bool"}
_PERSON: dict[str, Kind] = {
    "DisplayName": "text",
    "GivenName": "text",
    "FamilyName": "text",
    "Active": "bool",
}
_PARTY: dict[str, Kind] = {**_PERSON, "CompanyName": "text"}
_TXN: dict[str, Kind] = {"TxnDate": "date", "DocNumber": "text", "TotalAmt": "decimal"}
_SALE: dict[str, Kind] = {**_TXN, "CustomerRef": "ref"}
_BUY: dict[str, Kind] = {**_TXN, "VendorRef": "ref"}
_OPEN: dict[str, Kind] = {"Balance": "decimal", "DueDate": "date"}
FILTERABLE: dict[str, dict[str, Kind]] = {
    "Customer": {
        **_PARTY,
        "FullyQualifiedName": "text",
        "PrimaryEmailAddr": "email",
        "Balance": "decimal",
        "Job": "bool",
    },
    "Vendor": _PARTY,
    "Employee": _PERSON,
    "Account": {
        **_NAMED,
        "FullyQualifiedName": "text",
        "AccountType": "text",
        "AccountSubType": "text",
        "Classification": "text",
        "SubAccount": "bool",
        "CurrentBalance": "decimal",
        "CurrentBalanceWithSubAccounts": "decimal",
    },
    "Item": {**_NAMED, "FullyQualifiedName": "text", "Type": "text", "Sku": "text"},
    "Class": {**_NAMED, "FullyQualifiedName": "text"},
    "Department": {**_NAMED, "FullyQualifiedName": "text"},
    "TaxCode": _NAMED,
    "Term": _NAMED,
    "PaymentMethod": _NAMED,
    "Invoice": {**_SALE, **_OPEN},
    "Payment": _SALE,
    "SalesReceipt": _SALE,
    "CreditMemo": _SALE,
    "RefundReceipt": _SALE,
    "Estimate": _SALE,
    "Bill": {**_BUY, **_OPEN},
    "BillPayment": _BUY,
    "PurchaseOrder": _BUY,
    "VendorCredit": _BUY,
    "Purchase": _TXN,
    "Deposit": _TXN,
    "Transfer": {"TxnDate": "date"},
    "JournalEntry": _TXN,
    "TaxRate": {**_NAMED, "RateValue": "decimal", "AgencyRef": "ref"},
    "TaxAgency": {"DisplayName": "text"},
    "Budget": {**_NAMED, "StartDate": "date", "EndDate": "date"},
    "CompanyCurrency": {**_NAMED, "Code": "text"},
    "ExchangeRate": {"SourceCurrencyCode": "text", "AsOfDate": "date"},
    "CreditCardPayment": {"TxnDate": "date", "Amount": "decimal", "VendorRef": "ref"},
    "TimeActivity": {"TxnDate": "date", "EmployeeRef": "ref", "CustomerRef": "ref"},
    "Attachable": {"FileName": "text", "ContentType": "text"},
    "RecurringTransaction": {},
}
"""Intuit's filterable (and sortable) properties per entity, beyond Id and MetaData times."""
EXPLICIT_ONLY: dict[str, tuple[str, ...]] = {"Item": ("Sku",)}
"""Properties a query answers only when the statement names them (``SELECT *, Sku``)."""
_ALWAYS = ("domain",)


def filterable(entity: str) -> dict[str, Kind]:
    """The properties of ``entity`` a query may filter and sort on, with their kinds."""
    return {**_COMMON, **FILTERABLE.get(entity, {})}


# --------------------------------------------------------------------------- plans


@dataclass(frozen=True)
class Condition:
    """A ``WHERE`` condition read from the rows themselves (not from an index)."""

    path: str
    kind: Kind
    op: str  # =, <, >, <=, >=, in, like
    values: tuple[Any, ...]


@dataclass(frozen=True)
class QueryPlan:
    """A parsed ``select`` statement.

    ``ids``, ``active`` and the ``updated_*`` bounds are served by the company's indexes;
    ``conditions`` and ``order`` (a generic ``ORDERBY``) need the rows read in full.
    ``columns`` are the names a projection asked for (as written; resolved against the
    entity when the query runs), after ``*`` when ``star`` is true.
    """

    entity: str
    count_only: bool = False
    ids: frozenset[int] | None = None  # zero-based indices
    active: frozenset[bool] | None = None  # list entities: None means active only, as Intuit
    updated_from: int | None = None  # inclusive epoch seconds
    updated_before: int | None = None  # exclusive epoch seconds
    order_by_time: bool = False
    descending: bool = False
    start_position: int = 1
    max_results: int = DEFAULT_MAX_RESULTS
    star: bool = True
    columns: tuple[str, ...] = ()
    conditions: tuple[Condition, ...] = ()
    order: tuple[tuple[str, Kind, bool], ...] = ()  # (path, kind, descending)


# --------------------------------------------------------------------------- tokens

_TOKEN = re.compile(
    r"\s*(?:(?P<str>'(?:[^'\\]|\\.)*')|(?P<num>-?\d+(?:\.\d+)?)|(?P<op><=|>=|=|<|>)"
    r"|(?P<punct>[(),*])|(?P<word>[A-Za-z_][A-Za-z0-9_.]*))"
)
_TIME = "MetaData.LastUpdatedTime"


class _Tokens:
    """A cursor over the tokens of one query, producing Intuit-style parse errors."""

    def __init__(self, text: str) -> None:
        self.items: list[tuple[str, str, int]] = []
        pos = 0
        while pos < len(text.rstrip()):
            match = _TOKEN.match(text, pos)
            if match is None or match.lastgroup is None:
                raise _parse_error(text[pos:].strip()[:20], pos + 1)
            self.items.append((match.lastgroup, match.group(match.lastgroup), match.start() + 1))
            pos = match.end()
        self.pos = 0

    def peek(self) -> str:
        """The text of the next token, or an empty string at the end."""
        return self.items[self.pos][1] if self.pos < len(self.items) else ""

    def peek_word(self) -> str:
        """The next token lower-cased if it is a word, else an empty string."""
        if self.pos < len(self.items) and self.items[self.pos][0] == "word":
            return self.items[self.pos][1].lower()
        return ""

    def value(self) -> str:
        """Consume a literal: a quoted string (unquoted), a number or a bare word."""
        kind = self.items[self.pos][0] if self.pos < len(self.items) else "str"
        return _unquote(self.take(kind if kind in ("num", "word") else "str"))

    def take(self, kind: str, value: str | None = None) -> str:
        """Consume a token of ``kind`` (and ``value``, case-insensitive) or fail."""
        if self.pos >= len(self.items):
            raise _parse_error("<EOF>", 0)
        got_kind, got, column = self.items[self.pos]
        if got_kind != kind or (value is not None and got.lower() != value):
            raise _parse_error(got, column)
        self.pos += 1
        return got

    def skip(self, text: str) -> bool:
        """Consume the next token if it is ``text`` (case-insensitive); whether it was."""
        if self.peek().lower() != text:
            return False
        self.pos += 1
        return True

    def done(self) -> bool:
        """Whether every token has been consumed."""
        return self.pos >= len(self.items)


def _parse_error(found: str, column: int) -> QueryError:
    detail = f'QueryParserError: Encountered " {found} "" at line 1, column {column}.'
    return QueryError("4000", "Error parsing query", detail)


def invalid(detail: str) -> QueryError:
    """Intuit's refusal of a well-formed query it cannot answer (code 4001)."""
    return QueryError("4001", "Invalid query", f"QueryValidationError: {detail}")


def not_queryable(name: str) -> QueryError:
    """Intuit's refusal of a property it does not filter, sort or know."""
    return invalid(f"property '{name}' is not queryable")


def _unquote(raw: str) -> str:
    if raw.startswith("'"):
        return re.sub(r"\\(.)", r"\1", raw[1:-1])
    return raw


# --------------------------------------------------------------------------- parsing


def parse_query(text: str, tz: timezone) -> QueryPlan:
    """Parse a statement of Intuit's query language (see the module docstring).

    :raise QueryError: a malformed statement (4000) or an unknown entity or property (4001).
    """
    tokens = _Tokens(text)
    tokens.take("word", "select")
    fields: dict[str, Any] = _parse_selection(tokens)
    tokens.take("word", "from")
    raw_entity = tokens.take("word")
    entity = BY_LOWER.get(raw_entity.lower())
    if entity is None:
        raise invalid(f"{raw_entity} is not a valid entity")
    fields["entity"] = entity
    properties = filterable(entity)
    if tokens.peek_word() == "where":
        tokens.take("word")
        _parse_conditions(tokens, tz, properties, fields)
    _parse_tail(tokens, properties, fields)
    return QueryPlan(**fields)


def _parse_selection(tokens: _Tokens) -> dict[str, Any]:
    """``*``, ``*, A, B``, ``COUNT(*)`` or ``A, B``."""
    if tokens.peek_word() == "count":
        for kind, value in (("word", "count"), ("punct", "("), ("punct", "*"), ("punct", ")")):
            tokens.take(kind, value)
        return {"count_only": True}
    star = tokens.skip("*")
    columns: list[str] = []
    if not star or tokens.skip(","):
        columns.append(tokens.take("word"))
        while tokens.skip(","):
            columns.append(tokens.take("word"))
    return {"star": star, "columns": tuple(columns)}


def _property(properties: dict[str, Kind], raw: str) -> tuple[str, Kind]:
    """The canonical name and kind of a filterable property named ``raw`` (any case)."""
    for name, kind in properties.items():
        if name.lower() == raw.lower():
            return name, kind
    raise not_queryable(raw)


def _parse_conditions(
    tokens: _Tokens, tz: timezone, properties: dict[str, Kind], fields: dict[str, Any]
) -> None:
    conditions: list[Condition] = []
    while True:
        path, kind = _property(properties, tokens.take("word"))
        op, raw_values = _parse_operator(tokens)
        if op == "like" and kind != "text":
            raise invalid(f"operator LIKE is not supported for property '{path}'")
        values = tuple(_typed(kind, path, v, tz) for v in raw_values)
        if not _indexed(fields, path, op, values):
            conditions.append(Condition(path, kind, op, values))
        if tokens.peek_word() != "and":
            break
        tokens.take("word")
    fields["conditions"] = tuple(conditions)


def _parse_operator(tokens: _Tokens) -> tuple[str, list[str]]:
    """The operator and the right-hand side: ``op value``, ``IN (v, ...)``, ``LIKE 'p'``."""
    word = tokens.peek_word()
    if word == "like":
        tokens.take("word")
        return "like", [_unquote(tokens.take("str"))]
    if word != "in":
        return tokens.take("op"), [tokens.value()]
    tokens.take("word")
    tokens.take("punct", "(")
    values = [tokens.value()]
    while tokens.skip(","):
        values.append(tokens.value())
    tokens.take("punct", ")")
    return "in", values


def _typed(kind: Kind, path: str, text: str, tz: timezone) -> Any:
    """A condition's value as the property's kind compares it."""
    try:
        if kind == "decimal":
            return Decimal(text)
        if kind == "id":
            return int(text)
        if kind == "instant":
            return parse_timestamp(text, tz)
        if kind == "date":
            return date.fromisoformat(text).isoformat()
    except (InvalidOperation, ValueError) as exc:
        raise invalid(f"'{text}' is not a valid value for property '{path}'") from exc
    if kind == "bool":
        if text.lower() not in ("true", "false"):
            raise invalid(f"{path} takes true or false, not '{text}'")
        return text.lower() == "true"
    return text.casefold()


def _indexed(fields: dict[str, Any], path: str, op: str, values: tuple[Any, ...]) -> bool:
    """Record a condition the company's indexes serve; False if the rows must be read."""
    if path == "Id" and op in ("=", "in"):
        _intersect(fields, "ids", frozenset(v - 1 for v in values if v > 0))
    elif path == "Active" and op in ("=", "in") and fields.get("entity") in LIST_ENTITIES:
        _intersect(fields, "active", frozenset(values))
    elif path == _TIME and op in ("=", "<", ">", "<=", ">="):
        _apply_time_bound(fields, op, values[0])
    else:
        return False
    return True


def _intersect(fields: dict[str, Any], key: str, values: frozenset[Any]) -> None:
    previous = fields.get(key)
    fields[key] = values if previous is None else previous & values


def _apply_time_bound(fields: dict[str, Any], op: str, bound: float) -> None:
    """Turn a comparison on whole-second timestamps into ``[updated_from, updated_before)``."""
    low = math.floor(bound) + 1 if op == ">" else math.ceil(bound)
    high = math.ceil(bound) if op == "<" else math.floor(bound) + 1
    if op in (">", ">=", "="):
        fields["updated_from"] = max(low, fields.get("updated_from", low))
    if op in ("<", "<=", "="):
        fields["updated_before"] = min(high, fields.get("updated_before", high))


def _parse_tail(tokens: _Tokens, properties: dict[str, Kind], fields: dict[str, Any]) -> None:
    seen: set[str] = set()
    while not tokens.done():
        word = tokens.take("word").lower()
        if word in seen:
            raise _parse_error(word, 0)
        seen.add(word)
        if word in ("orderby", "order"):
            if word == "order":
                tokens.take("word", "by")
            _parse_order(tokens, properties, fields)
        elif word in ("startposition", "maxresults"):
            number = tokens.take("num")
            if not number.isdigit():
                raise _parse_error(number, 0)
            key = "start_position" if word == "startposition" else "max_results"
            fields[key] = max(1, int(number)) if key == "start_position" else int(number)
        else:
            raise _parse_error(word, 0)
    fields["max_results"] = min(fields.get("max_results", DEFAULT_MAX_RESULTS), MAX_RESULTS_LIMIT)


def _parse_order(tokens: _Tokens, properties: dict[str, Kind], fields: dict[str, Any]) -> None:
    order: list[tuple[str, Kind, bool]] = []
    while True:
        path, kind = _property(properties, tokens.take("word"))
        descending = False
        if tokens.peek_word() in ("asc", "desc"):
            descending = tokens.take("word").lower() == "desc"
        order.append((path, kind, descending))
        if not tokens.skip(","):
            break
    if len(order) == 1 and order[0][0] in ("Id", _TIME):
        fields["order_by_time"] = order[0][0] == _TIME
        fields["descending"] = order[0][2]
    else:
        fields["order"] = tuple(order)


def parse_timestamp(text: str, tz: timezone) -> float:
    """Epoch seconds of an ISO 8601 date or date-time; naive values are in the company's zone."""
    try:
        if len(text) == 10:
            parsed = datetime.combine(date.fromisoformat(text), datetime.min.time())
        else:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise invalid(f"'{text}' is not a valid date-time") from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=tz)
    return parsed.timestamp()


# --------------------------------------------------------------------------- running


def run(company: Company, plan: QueryPlan) -> tuple[int, list[JSON]]:
    """Total matching rows and the rows of the requested page, as the answer shows them.

    :raise QueryError: a projection names a property the entity does not have.
    """
    table = company.tables[plan.entity]
    shape = _Projection(table, plan)
    if not plan.conditions and not plan.order:
        total, page = company.select(plan)
        return total, [shape(table.render(i)) for i in page]
    everything = replace(plan, count_only=False, order_by_time=False, descending=False)
    count, _ = company.select(replace(everything, count_only=True))
    _, indices = company.select(replace(everything, start_position=1, max_results=count))
    rows = [row for row in map(table.render, indices) if _matches(row, plan.conditions)]
    for path, kind, descending in reversed(plan.order):
        rows.sort(key=_sort_key(path, kind), reverse=descending)
    if plan.count_only:
        return len(rows), []
    start = plan.start_position - 1
    return len(rows), [shape(row) for row in rows[start : start + plan.max_results]]


class _Projection:
    """Turns a full row into what the statement selected."""

    def __init__(self, table: Table, plan: QueryPlan) -> None:
        explicit = EXPLICIT_ONLY.get(plan.entity, ())
        known = {name.lower(): name for name in (*filterable(plan.entity), *explicit)}
        if plan.columns and table.count:  # the entity's properties: those its rows have
            known |= {name.lower(): name for name in table.render(0) if name != "sparse"}
        chosen = []
        for raw in plan.columns:
            if raw.lower() not in known:
                raise not_queryable(raw)
            chosen.append(known[raw.lower()])
        self.star = plan.star
        self.columns = tuple(dict.fromkeys(chosen))
        self.hidden = tuple(name for name in explicit if name not in self.columns)

    def __call__(self, row: JSON) -> JSON:
        """The selected part of ``row``."""
        if self.star:
            for name in self.hidden:
                row.pop(name, None)
            return row
        picked = {name: row[name] for name in (*self.columns, *_ALWAYS) if name in row}
        return {**picked, "sparse": True}


def _value(row: JSON, path: str, kind: Kind) -> Any:
    """The value ``path`` has in ``row``, read as ``kind`` compares it (None: no value)."""
    value: Any = row
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    if isinstance(value, dict):
        value = value.get("Address" if kind == "email" else "value")
    if value is None:
        return None
    if kind == "decimal":
        return Decimal(str(value))
    if kind == "id":
        return int(value)
    if kind == "instant":
        return datetime.fromisoformat(str(value)).timestamp()
    if kind == "bool":
        return bool(value)
    return str(value) if kind == "date" else str(value).casefold()


_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "=": lambda a, b: bool(a == b),
    "<": lambda a, b: bool(a < b),
    ">": lambda a, b: bool(a > b),
    "<=": lambda a, b: bool(a <= b),
    ">=": lambda a, b: bool(a >= b),
}


def _holds(condition: Condition, value: Any) -> bool:
    if value is None:
        return False
    if condition.op == "in":
        return value in condition.values
    if condition.op == "like":
        pattern = ".*".join(re.escape(part) for part in str(condition.values[0]).split("%"))
        return re.fullmatch(pattern, value, re.DOTALL) is not None
    return _COMPARE[condition.op](value, condition.values[0])


def _matches(row: JSON, conditions: tuple[Condition, ...]) -> bool:
    return all(_holds(c, _value(row, c.path, c.kind)) for c in conditions)


def _sort_key(path: str, kind: Kind) -> Callable[[JSON], tuple[bool, Any]]:
    """Rows without a value sort first (ascending), as SQL's NULLs do."""

    def key(row: JSON) -> tuple[bool, Any]:
        value = _value(row, path, kind)
        return (value is not None, value if value is not None else 0)

    return key
