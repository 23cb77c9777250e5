"""Building blocks of the Stripe sandbox (package private): Stripe's form decoding, its error
objects, object ids and a per-type table whose lists page in O(page).

Stripe lists run newest first, ordered by ``created`` and then by creation order. A
:class:`Table` keeps its keys ``(created, seq)`` in a sorted list, so a page after (or before)
a cursor is one bisection plus the page itself, and a ``created`` range is two bisections.
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

JSON = dict[str, Any]
MAX_LIMIT = 100
DEFAULT_LIMIT = 10
_KEY_PART = re.compile(r"\[([^\[\]]*)\]")
_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_ID_SPACE = 62**14
_PAIRS = [a + b for a in _ALPHABET for b in _ALPHABET]


class StripeError(Exception):
    """An error answer in Stripe's shape: ``{"error": {"type", "message", "code", ...}}``."""

    def __init__(
        self,
        status: int,
        kind: str,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        decline_code: str | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind
        self.message = message
        self.code = code
        self.param = param
        self.decline_code = decline_code
        self.extra = dict(extra or {})

    def body(self) -> JSON:
        """The JSON answer; fields Stripe leaves out when unset are left out."""
        error: JSON = {"type": self.kind, "message": self.message}
        optional = {"code": self.code, "param": self.param, "decline_code": self.decline_code}
        error |= {key: value for key, value in optional.items() if value is not None}
        if self.code:
            error["doc_url"] = f"https://stripe.com/docs/error-codes/{self.code.replace('_', '-')}"
        return {"error": error | self.extra}


def invalid(message: str, param: str | None = None, code: str | None = None) -> StripeError:
    """A 400 ``invalid_request_error``."""
    return StripeError(400, "invalid_request_error", message, param=param, code=code)


def missing(kind: str, object_id: str, param: str | None = None) -> StripeError:
    """Stripe's answer for an unknown id: 404 for the object of the path, 400 for a param."""
    status = 404 if param is None else 400
    message = f"No such {kind}: '{object_id}'"
    return StripeError(
        status, "invalid_request_error", message, code="resource_missing", param=param
    )


# --------------------------------------------------------------------------- forms


def decode_form(text: str) -> JSON:
    """Stripe's form encoding as nested values: ``a[b]=1`` -> ``{"a": {"b": "1"}}``,
    ``a[0][b]=1`` and ``a[]=1`` -> lists. Values stay strings (Stripe casts per parameter)."""
    root: JSON = {}
    for raw_key, value in parse_qsl(text, keep_blank_values=True):
        head, _, rest = raw_key.partition("[")
        parts = [head, *_KEY_PART.findall("[" + rest)] if rest else [head]
        node: Any = root
        for index, part in enumerate(parts):
            last = index == len(parts) - 1
            if part == "":  # a[]=v appends
                part = str(len(node))
            if last:
                node[part] = value
            else:
                node = node.setdefault(part, {})
                if not isinstance(node, dict):
                    raise invalid(f"Invalid parameter: {raw_key}", param=head)
    decoded: JSON = _lists(root)
    return decoded


def _lists(value: Any) -> Any:
    """Dicts whose keys are all 0..n-1 become lists (Stripe's ``a[0]``, ``a[1]``)."""
    if not isinstance(value, dict):
        return value
    converted = {key: _lists(inner) for key, inner in value.items()}
    if converted and all(key.isdigit() for key in converted):
        ordered = sorted(converted, key=int)
        if [int(key) for key in ordered] == list(range(len(ordered))):
            return [converted[key] for key in ordered]
    return converted


def as_int(params: Mapping[str, Any], name: str, default: int | None = None) -> int | None:
    """An integer parameter (form values are strings), ``default`` when absent."""
    value = params.get(name)
    if value is None or value == "":
        return default
    if isinstance(value, str) and re.fullmatch(r"-?\d+", value):
        return int(value)
    raise invalid(f"Invalid integer: {value}", param=name)


def as_bool(params: Mapping[str, Any], name: str, default: bool = False) -> bool:
    """A boolean parameter: ``true`` or ``false``."""
    value = params.get(name)
    if value is None:
        return default
    if value in ("true", "false"):
        return bool(value == "true")
    raise invalid(f"Invalid boolean: {value}", param=name)


def metadata_update(current: Mapping[str, str], given: Any) -> dict[str, str]:
    """Stripe's metadata merge: keys set, ``""`` removes one, ``metadata=""`` clears all."""
    if given == "":
        return {}
    if not isinstance(given, dict):
        raise invalid("Invalid metadata: must be an object", param="metadata")
    merged = dict(current)
    for key, value in given.items():
        if not isinstance(value, str):
            raise invalid(f"Invalid metadata[{key}]", param=f"metadata[{key}]")
        if value == "":
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


# --------------------------------------------------------------------------- ids


def object_id(prefix: str, serial: int) -> str:
    """A Stripe-looking id (``cus_`` and 14 letters or digits), unique per serial: the
    multiplier is odd and not a multiple of 31, so serials map one-to-one below 62**14."""
    number = (serial * 0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019) % _ID_SPACE
    pairs = []
    for _ in range(7):  # two characters a step (bulk seeding makes hundreds of thousands)
        number, pair = divmod(number, 3844)
        pairs.append(_PAIRS[pair])
    return f"{prefix}_{''.join(pairs)}"


# --------------------------------------------------------------------------- tables


@dataclass(frozen=True)
class Page:
    """One page of a list: objects newest first, and whether the list goes on; a search
    answer also has the token of its next page and the number of matches."""

    data: list[JSON]
    has_more: bool
    search: bool = False
    next_page: str | None = None
    total: int = 0


@dataclass(frozen=True)
class Window:
    """The ``created`` bounds of a list request (inclusive), either side open."""

    low: int | None = None
    high: int | None = None

    @classmethod
    def of(cls, created: Any, floor: int | None = None) -> Window:
        """From the ``created`` parameter (an integer or ``{gt,gte,lt,lte}``) and a floor."""
        low, high = floor, None
        if isinstance(created, str):
            exact = as_int({"created": created}, "created")
            low, high = max(exact or 0, floor or 0), exact
        elif isinstance(created, dict):
            bounds = {k: as_int(created, k) for k in ("gt", "gte", "lt", "lte")}
            unknown = set(created) - set(bounds)
            if unknown:
                raise invalid(f"Received unknown parameter: created[{min(unknown)}]", "created")
            candidates = [low, bounds["gte"], None if bounds["gt"] is None else bounds["gt"] + 1]
            present = [c for c in candidates if c is not None]
            low = max(present) if present else None
            uppers = [bounds["lte"], None if bounds["lt"] is None else bounds["lt"] - 1]
            known = [c for c in uppers if c is not None]
            high = min(known) if known else None
        elif created is not None:
            raise invalid("Invalid created: must be an integer or an object", "created")
        return cls(low, high)


class Table:
    """The objects of one type, by id, with their keys in ``(created, seq)`` order."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.rows: dict[str, JSON] = {}
        self._keys: list[tuple[int, int]] = []
        self._ids: list[str] = []
        self._key_of: dict[str, tuple[int, int]] = {}

    def __len__(self) -> int:
        return len(self.rows)

    def __contains__(self, object_id: str) -> bool:
        return object_id in self.rows

    def add(self, obj: JSON, seq: int) -> JSON:
        """Store a new object (``id`` and ``created`` set); O(1) when it is the newest."""
        key = (int(obj["created"]), seq)
        oid = str(obj["id"])
        if not self._keys or key > self._keys[-1]:
            self._keys.append(key)
            self._ids.append(oid)
        else:
            at = bisect_left(self._keys, key)
            self._keys.insert(at, key)
            self._ids.insert(at, oid)
        self._key_of[oid] = key
        self.rows[oid] = obj
        return obj

    def extend(self, objects: list[JSON], first_seq: int) -> None:
        """Store many new objects at once (bulk seeding), keeping the order sorted."""
        keys = [(int(obj["created"]), first_seq + i) for i, obj in enumerate(objects)]
        if (self._keys and keys and keys[0] <= self._keys[-1]) or keys != sorted(keys):
            for obj, key in zip(objects, keys, strict=True):
                self.add(obj, key[1])
            return
        self._keys.extend(keys)
        self._ids.extend(str(obj["id"]) for obj in objects)
        for obj, key in zip(objects, keys, strict=True):
            self._key_of[str(obj["id"])] = key
            self.rows[str(obj["id"])] = obj

    def get(self, object_id: str) -> JSON:
        """The object (404 ``resource_missing`` when unknown or deleted)."""
        found = self.rows.get(object_id)
        if found is None:
            raise missing(self.kind, object_id)
        return found

    def remove(self, object_id: str) -> JSON:
        """Forget the object; its key stays so that a list cursor naming it still works."""
        found = self.get(object_id)
        del self.rows[object_id]
        return found

    def newest(self) -> Iterator[JSON]:
        """Every live object, newest first."""
        for index in range(len(self._ids) - 1, -1, -1):
            found = self.rows.get(self._ids[index])
            if found is not None:
                yield found

    def page(
        self,
        limit: int,
        *,
        starting_after: str | None = None,
        ending_before: str | None = None,
        window: Window = Window(),
        keep: Callable[[JSON], bool] | None = None,
    ) -> Page:
        """A page of at most ``limit`` objects, newest first, after or before a cursor."""
        low = 0 if window.low is None else bisect_left(self._keys, (window.low, -1))
        high = len(self._keys)
        if window.high is not None:
            high = bisect_right(self._keys, (window.high, 2**62))
        if ending_before is not None:
            start = bisect_right(self._keys, self._cursor(ending_before, "ending_before"))
            found = self._walk(range(max(start, low), high), limit, keep)
            found.data.reverse()
            return found
        end = high
        if starting_after is not None:
            end = min(end, bisect_left(self._keys, self._cursor(starting_after, "starting_after")))
        return self._walk(range(end - 1, low - 1, -1), limit, keep)

    def _cursor(self, object_id: str, param: str) -> tuple[int, int]:
        key = self._key_of.get(object_id)
        if key is None:
            raise missing(self.kind, object_id, param=param)
        return key

    def _walk(self, indexes: range, limit: int, keep: Callable[[JSON], bool] | None) -> Page:
        data: list[JSON] = []
        for index in indexes:
            found = self.rows.get(self._ids[index])
            if found is None or (keep is not None and not keep(found)):
                continue
            if len(data) == limit:
                return Page(data, True)
            data.append(found)
        return Page(data, False)


def list_limit(params: Mapping[str, Any]) -> int:
    """``limit``: 1 to 100, 10 when absent."""
    limit = as_int(params, "limit", DEFAULT_LIMIT)
    assert limit is not None
    if not 1 <= limit <= MAX_LIMIT:
        raise invalid("Invalid limit: must be an integer between 1 and 100.", param="limit")
    return limit
