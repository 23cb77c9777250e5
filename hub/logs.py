"""Logging: structlog, JSON lines off a terminal, console on one, secrets always redacted.

The redaction processor masks values whose key looks secret (token, secret, password, key,
authorization, credentials, plus names plugins declare) at any depth, and masks secret-looking
substrings (bearer tokens, provider key prefixes) inside any string.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Collection, Iterable, Mapping, MutableMapping
from typing import Any

import structlog

REDACTED = "***"
SECRET_KEY_RE = re.compile(
    # "token" only as a name's last word: access_token, X-Auth-Token — not prompt_tokens or
    # token_type; "pass" only as password/passphrase/pass — not passed
    r"((^|[_-])token$|(^|[_-])pass(word|phrase)?$|secret|api_?key|authorization|credential|"
    r"private_?key|signature|connection_string|^key$|cookie|session)",
    re.IGNORECASE,
)
CAMEL_SECRET_RE = re.compile(r"[a-z0-9](Token|Key|Secret|Password|Signature)$")
"""camelCase names: refreshToken, AccountKey, clientSecret."""
SECRET_VALUE_RES = (
    re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}"),
    re.compile(r"\b(sk|rk|pk)_(live|test)_[A-Za-z0-9]{8,}"),
    re.compile(r"\bwhsec_[A-Za-z0-9+/=]{8,}"),
    re.compile(r"\bSG\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"),
    re.compile(r"(?i)(AccountKey|SharedAccessSignature|sig)=[^;&\s]+"),
    re.compile(r"(?i)\b(access_token|refresh_token|client_secret|code)=[^&\s]+"),
)
MAX_DEPTH = 32
_extra_secret_keys: set[str] = set()


def add_secret_keys(names: Iterable[str]) -> None:
    """Also redact values under these key names (plugins' ``secret_fields``)."""
    _extra_secret_keys.update(name.lower() for name in names)


def is_secret_key(key: str, extra: Collection[str] = ()) -> bool:
    """True if values under ``key`` must never be shown (``extra``: more such names)."""
    return (
        bool(SECRET_KEY_RE.search(key) or CAMEL_SECRET_RE.search(key))
        or key.lower() in _extra_secret_keys
        or key.lower() in extra
    )


def redact_text(text: str, values: Collection[str] = ()) -> str:
    """Mask secret-looking substrings inside free text, and every occurrence of ``values``."""
    for value in values:
        text = text.replace(value, REDACTED)
    for pattern in SECRET_VALUE_RES:
        text = pattern.sub(_mask, text)
    return text


def _mask(match: re.Match[str]) -> str:
    whole = match.group(0)
    cuts = [whole.index(sep) for sep in ("=", " ") if sep in whole]
    if cuts:  # keep the label ("Bearer ", "AccountKey="), never any of the value
        return whole[: min(cuts) + 1] + REDACTED
    return whole[:3] + REDACTED


def redact(
    value: Any, depth: int = 0, *, keys: Collection[str] = (), values: Collection[str] = ()
) -> Any:
    """Return ``value`` with secrets masked (dicts by key, strings by pattern), recursively.

    Anything nested deeper than :data:`MAX_DEPTH` is masked whole rather than left unchecked.

    :param keys: more key names whose values are masked (lowercase).
    :param values: secret values masked wherever they occur in a string.
    """
    if depth > MAX_DEPTH:
        return REDACTED
    if isinstance(value, str):
        return redact_text(value, values)
    if isinstance(value, Mapping):
        return {
            k: (
                REDACTED
                if isinstance(k, str) and is_secret_key(k, keys) and v
                else redact(v, depth + 1, keys=keys, values=values)
            )
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact(item, depth + 1, keys=keys, values=values) for item in value]
    return value


def redact_processor(
    logger: Any, method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor applying :func:`redact` to every field."""
    for key, value in list(event_dict.items()):
        if key != "event" and is_secret_key(key) and value:
            event_dict[key] = REDACTED
        else:
            event_dict[key] = redact(value)
    return event_dict


def configure_logging(level: str = "info", fmt: str = "auto", stream: Any = None) -> None:
    """Configure structlog and the stdlib root logger (aiohttp, apscheduler) the same way."""
    out = stream or sys.stderr
    as_json = fmt == "json" or (fmt == "auto" and not out.isatty())
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,  # a traceback as text, so it is redacted too
        redact_processor,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if as_json
        else structlog.dev.ConsoleRenderer(colors=out.isatty())
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
