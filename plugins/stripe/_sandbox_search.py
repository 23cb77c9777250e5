"""Stripe's Search Query Language for the sandbox (package private).

A query is clauses joined by ``AND`` or by ``OR`` (not both): ``field:'value'`` (exact),
``field~'value'`` (substring, at least 3 characters), ``field>N`` / ``<`` / ``>=`` / ``<=``
on numbers, ``metadata['key']:'value'``, ``-`` before a clause negates it, and ``null`` as a
value matches a missing one. Results are newest first; ``page`` is the ``next_page`` token of
the previous answer.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ._sandbox_store import JSON, invalid

_CLAUSE = re.compile(
    r"""\s*(?P<neg>-)?(?P<field>[a-z_.]+|metadata\[['"][^'"]+['"]\])\s*"""
    r"""(?P<op>:|~|>=|<=|>|<)\s*(?P<value>'[^']*'|"[^"]*"|-?\d+|null)\s*"""
)
_JOIN = re.compile(r"\s+(AND|OR)\s+")


def parse(query: str, fields: frozenset[str]) -> Callable[[JSON], bool]:
    """A predicate for ``query``; 400 naming the problem when it is not a valid query over
    ``fields`` (the searchable fields of the object type; ``metadata`` always is)."""
    parts = _JOIN.split(query.strip())
    clauses, joins = parts[::2], set(parts[1::2])
    if len(joins) > 1:
        raise invalid("A query may combine clauses with AND or with OR, not both.", "query")
    tests = [_clause(text, fields) for text in clauses]
    if joins == {"OR"}:
        return lambda obj: any(test(obj) for test in tests)
    return lambda obj: all(test(obj) for test in tests)


def _clause(text: str, fields: frozenset[str]) -> Callable[[JSON], bool]:
    found = _CLAUSE.fullmatch(text)
    if found is None:
        raise invalid(f"Invalid search query clause: {text!r}", "query")
    field, op, raw = found["field"], found["op"], found["value"]
    key = None
    if field.startswith("metadata["):
        key, field = field[10:-2], "metadata"
    elif field not in fields:
        raise invalid(f"Field {field!r} is not searchable on this object.", "query")
    value: Any = None if raw == "null" else raw[1:-1] if raw[0] in "'\"" else int(raw)
    if op == "~" and (not isinstance(value, str) or len(value) < 3):
        raise invalid("A substring match (~) needs at least 3 characters.", "query")

    def test(obj: JSON) -> bool:
        current = obj.get(field)
        if key is not None:
            current = (current or {}).get(key)
        elif isinstance(current, dict):
            current = current.get("id")
        return _compare(current, op, value) != bool(found["neg"])

    return test


def _compare(current: Any, op: str, value: Any) -> bool:
    if op == ":":
        return bool(
            current == value or (isinstance(current, bool) and str(current).lower() == value)
        )
    if op == "~":
        return isinstance(current, str) and value.lower() in current.lower()
    if not isinstance(current, int | float) or not isinstance(value, int):
        return False
    return {">": current > value, "<": current < value, ">=": current >= value}.get(
        op, current <= value
    )


def search_page(
    rows: Iterable[JSON], keep: Callable[[JSON], bool], params: Mapping[str, Any], limit: int
) -> tuple[list[JSON], str | None, int]:
    """The page of matches after the ``page`` token: (objects, next token, total matches)."""
    token = params.get("page")
    skip = 0
    if token is not None:
        if not isinstance(token, str) or not re.fullmatch(r"page_\d+", token):
            raise invalid(f"Invalid page: {token!r}", "page")
        skip = int(token[5:])
    matches = [row for row in rows if keep(row)]
    page = matches[skip : skip + limit]
    more = skip + limit < len(matches)
    return page, f"page_{skip + limit}" if more else None, len(matches)
