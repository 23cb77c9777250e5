"""Configuration: ``hub.toml`` plus ``HUB_`` environment overrides, validated by pydantic.

Every key is optional; the defaults run a hub with no secrets. Problems become a
:class:`~hub.errors.ConfigError` whose message has one line per problem naming the key.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationInfo, field_validator
from pydantic import ValidationError as PydanticValidationError
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails, PydanticCustomError
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from hub.errors import ConfigError
from hub.model import IntegrationSettings
from hub.webhooks import signing

DEFAULT_CONFIG = Path("hub.toml")
ENV_PREFIX = "HUB_"
FILE_SUFFIX = "_FILE"
TABLE_ERRORS = frozenset({"model_type", "model_attributes_type", "dict_type"})
"""pydantic's error types for a value given where a table (a section) belongs."""
MIN_TOKEN_LENGTH = 32
"""The shortest admin token the hub accepts (a generated one has 43 characters)."""
HOST_NAME = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*")
"""A DNS name (lower case, as ``urlsplit`` gives it; international names in punycode)."""


def check_public_url(value: str) -> str:
    """``server.public_url`` checked, without a trailing slash.

    :raise PydanticCustomError: not an ``http``/``https`` URL of a host (and port) alone: no
        user info, path, query or fragment (the hub serves from the root); or ``http`` for a
        host that is not loopback (cookies and tokens would cross the network in clear).
    """
    try:
        parts = urlsplit(value.strip())
        host, _ = parts.hostname or "", parts.port
    except ValueError:
        host, parts = "", urlsplit("")
    if parts.scheme not in {"http", "https"} or not (_ip(host) or HOST_NAME.fullmatch(host)):
        raise _invalid("must be an http(s) URL such as https://hub.example.com")
    if parts.username is not None or parts.query or parts.fragment or parts.path not in {"", "/"}:
        raise _invalid("must be the scheme and host alone: no user, path, query or fragment")
    if parts.scheme == "http" and not _loopback(host):
        raise _invalid("must use https (http only for a loopback host)")
    return f"{parts.scheme}://{parts.netloc.lower()}"


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _loopback(host: str) -> bool:
    address = _ip(host)
    return host == "localhost" or (address is not None and address.is_loopback)


def _invalid(reason: str) -> PydanticCustomError:
    return PydanticCustomError("invalid_setting", reason)


class Section(BaseModel):
    """Base of every section: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")


class ServerSettings(Section):
    """``[server]``: where the daemon listens, the address it is reached at, and how long
    and how many connections it holds."""

    host: str = "127.0.0.1"
    port: int = Field(default=8700, ge=0, le=65535)
    shutdown_timeout: float = Field(default=5.0, gt=0)
    """Seconds in-flight work gets to finish on SIGTERM before it is cancelled."""
    public_url: str | None = None
    """The hub's address as browsers and providers reach it (``https://hub.example.com``,
    behind a TLS-terminating proxy): OAuth callbacks are built from it, and with ``https``
    the session cookies are ``Secure``. Unset: the listening address, over http."""
    header_timeout: float = Field(default=10.0, gt=0)
    """Seconds a new connection gets to send its request's headers, however slowly they
    trickle in; then it is closed."""
    body_timeout: float = Field(default=60.0, gt=0)
    """Seconds a request's body gets to arrive, counted from the end of its headers; then the
    request is dropped (its connection closed) and what it reserved is given back."""
    keepalive_timeout: float = Field(default=75.0, gt=0)
    """Seconds a kept-alive connection may wait for its next request's headers; then it is
    closed."""
    max_connections: int | None = Field(default=None, ge=1)
    """Connections open at once; None: half the open-file limit (``RLIMIT_NOFILE``), leaving
    the rest for the database and outbound calls. At the cap a new connection closes the one
    that has waited longest for a request, or is answered 503 if all are busy."""

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str | None) -> str | None:
        return None if value is None else check_public_url(value)

    @property
    def base_url(self) -> str:
        """Where the hub is reached, without a trailing slash: ``public_url``, else the
        listening address over http (``0.0.0.0`` and ``::`` as the loopback address)."""
        if self.public_url is not None:
            return self.public_url
        address = _ip(self.host)
        if address is not None and address.is_unspecified:
            address = ipaddress.ip_address("::1" if address.version == 6 else "127.0.0.1")
        host = self.host if address is None else str(address)
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"


class StoreSettings(Section):
    """``[store]``: the SQLite database."""

    path: Path = Path("hub.db")
    synchronous: Literal["normal", "full"] = "normal"
    """``normal``: a commit survives a crash of the process (kill -9); ``full``: it also
    survives a power cut or an OS crash (one fsync per commit group; slower writes)."""
    history_days: int = Field(default=180, ge=1)
    """Finished sync runs, health changes and resolved alerts are deleted after this many
    days (each connection keeps its latest health change)."""


class AdminSettings(Section):
    """``[admin]``: the token for ``/admin`` and ``/api/*`` (generated at first start if
    unset), how failed sign-ins are throttled, and how long sessions last."""

    token: SecretStr | None = None
    """At least :data:`MIN_TOKEN_LENGTH` characters."""
    max_failures: int = Field(default=10, ge=1)
    """Failed token attempts (login form, ``Authorization: Bearer``) one client address may
    make within ``failure_window``; past it, its token attempts get 429 until the oldest
    failure is that old."""
    failure_window: float = Field(default=300.0, gt=0)
    """Seconds a failed token attempt counts against its address."""
    session_ttl: int = Field(default=12 * 3600, ge=60)
    """Seconds a login-form session lasts (from sign-in)."""
    max_sessions: int = Field(default=100, ge=1)
    """Sessions held at once; a new sign-in past it ends the oldest session."""

    @field_validator("token")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < MIN_TOKEN_LENGTH:
            raise PydanticCustomError(
                "token_too_short",
                "shorter than {length} characters; make one with python3 -c "
                "'import secrets; print(secrets.token_urlsafe(32))'",
                {"length": MIN_TOKEN_LENGTH},
            )
        return value


class PluginsSettings(Section):
    """``[plugins]``: where third-party plugins come from and which are turned off."""

    # plain defaults (pydantic copies them per instance): a default_factory=list would have
    # pydantic parse list's text signature, compiling the tokenizer's pattern at every start
    dir: Path | None = None
    allow: list[str] = []
    """If non-empty, only these plugins load (built-ins included)."""
    deny: list[str] = []
    """These plugins never load."""


class SyncSettings(Section):
    """``[sync]``: the sync engine."""

    max_concurrent: int = Field(default=4, ge=1)
    misfire_grace_time: int = Field(default=300, ge=1)


class HealthSettings(Section):
    """``[health]``: health checks and alert reminders."""

    interval: int = Field(default=300, ge=5)
    reminder_interval: int = Field(default=86400, ge=60)
    """Seconds between reminders for a connection that stays unhealthy."""


class GenericSender(Section):
    """``[webhooks.generic.<sender>]``: a tool posting HMAC-SHA256 signed JSON."""

    scheme: Literal["hmac", "standard"] = "hmac"
    """``hmac``: the body's HMAC in ``header`` (the event id, from a header, is not signed);
    ``standard``: Standard Webhooks (``webhook-id``, ``webhook-timestamp`` and
    ``webhook-signature`` over ``id.timestamp.body``), so ids and times are signed too."""
    secret: SecretStr
    """The shared secret; for the ``standard`` scheme ``whsec_<base64>``."""
    header: str = "X-Signature"
    """The header carrying the ``hmac`` signature."""
    encoding: Literal["hex", "base64"] = "hex"
    """How the ``hmac`` signature is encoded."""
    tolerance: int = Field(default=signing.DEFAULT_TOLERANCE_S, ge=1, le=3600)
    """``standard``: seconds a ``webhook-timestamp`` may be from now, either way."""

    @field_validator("secret")
    @classmethod
    def _standard_secret(cls, secret: SecretStr, info: ValidationInfo) -> SecretStr:
        """A ``standard`` secret must decode (``whsec_<base64>``), checked at start."""
        if info.data.get("scheme") == "standard":
            signing.check_secret(secret.get_secret_value())
        return secret


class OutboundSettings(Section):
    """``[webhooks.outbound]``: deliveries to subscribed URLs."""

    allow_private: bool = False
    timeout: float = Field(default=10.0, gt=0)


class WebhookSettings(Section):
    """``[webhooks]``: inbound limits, retry budget, generic senders, outbound deliveries."""

    max_body_bytes: int = Field(default=1024 * 1024, ge=1)
    queue_max_requests: int = Field(default=2048, ge=1)
    """Webhook requests held at most (bodies being read or waiting for their commit); past it
    ``POST /webhooks/*`` answers 503 with ``Retry-After`` and stores nothing."""
    queue_max_bytes: int = Field(default=8 * 1024 * 1024, ge=1)
    """Bytes of webhook bodies held at most (a request reserves its declared length before
    its body is read); past it, 503 as above."""
    max_attempts: int = Field(default=8, ge=1)
    handler_timeout: float = Field(default=300.0, gt=0)
    """Seconds a handler (``process``, ``event``) may run before the attempt counts as failed."""
    retention_days: int = Field(default=30, ge=1)
    """Finished events and their raw requests are deleted after this many days."""
    generic: dict[str, GenericSender] = Field(default_factory=dict)
    outbound: OutboundSettings = Field(default_factory=OutboundSettings)


class LoggingSettings(Section):
    """``[logging]``: level and format (``auto``: console on a terminal, JSON otherwise)."""

    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"


class _EnvWithoutFileVariables(EnvSettingsSource):
    """``HUB_`` variables, less the ``HUB_<KEY>_FILE`` ones (:func:`secret_files` reads those)."""

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return {
            name: value
            for name, value in super()._load_env_vars().items()
            if not name.upper().endswith(FILE_SUFFIX)
        }

    def prepare_field_value(
        self, field_name: str, field: FieldInfo, value: Any, value_is_complex: bool
    ) -> Any:
        """The section ``field_name`` from its variables.

        :raise ConfigError: a variable for a list or table is not JSON, naming the variable.
        """
        try:
            return super().prepare_field_value(field_name, field, value, value_is_complex)
        except ValueError:
            names = self._not_json(field_name, field) if value is None else []
            lines = (_not_json_line(name) for name in names or [ENV_PREFIX + field_name])
            raise ConfigError("\n".join(lines)) from None

    def _not_json(self, field_name: str, field: FieldInfo) -> list[str]:
        """The variables of section ``field_name`` whose value is not the JSON it needs."""
        names = []
        for name, value in self.env_vars.items():
            try:
                self.explode_env_vars(field_name, field, {name: value})
            except ValueError:
                names.append(name)
        return names


def _not_json_line(variable: str) -> str:
    """The error line for ``variable``, whose value should be JSON and is not."""
    key = variable[len(ENV_PREFIX) :].lower().replace("__", ".")
    return (
        f"environment ({variable.upper()}): {key}: not valid JSON (a list or table in a "
        """variable is written as JSON, e.g. '["a", "b"]')"""
    )


class HubSettings(BaseSettings):
    """The whole configuration. ``integrations`` is validated later by each plugin's model."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        case_sensitive=False,
    )

    secret_key: SecretStr | None = None
    """Fernet key for credentials at rest (``HUB_SECRET_KEY``); else a key file beside the db."""
    server: ServerSettings = Field(default_factory=ServerSettings)
    store: StoreSettings = Field(default_factory=StoreSettings)
    admin: AdminSettings = Field(default_factory=AdminSettings)
    plugins: PluginsSettings = Field(default_factory=PluginsSettings)
    sync: SyncSettings = Field(default_factory=SyncSettings)
    health: HealthSettings = Field(default_factory=HealthSettings)
    webhooks: WebhookSettings = Field(default_factory=WebhookSettings)
    logging: LoggingSettings = Field(default_factory=LoggingSettings)
    integrations: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Environment first (it overrides), then the TOML file passed as init values."""
        return (_EnvWithoutFileVariables(settings_cls), init_settings)


def load_settings(
    path: Path | None = None,
    overrides: dict[str, Any] | None = None,
    *,
    read_default: bool = True,
) -> HubSettings:
    """Read ``path`` (else ``./hub.toml`` if present, else defaults) plus ``HUB_`` variables.

    :param overrides: values merged over the file (tests and benchmarks use this).
    :param read_default: look for ``./hub.toml`` when ``path`` is None (tests turn this off).
    :raise ConfigError: naming the file and key of every problem, one line each.
    """
    if path is None and read_default and DEFAULT_CONFIG.exists():
        path = DEFAULT_CONFIG
    source = path
    data = _read_toml(source) if source is not None else {}
    data = deep_merge(data, secret_files(os.environ))
    if overrides:
        data = deep_merge(data, overrides)
    label = str(source) if source is not None else "configuration"
    try:
        return HubSettings(**data)
    except PydanticValidationError as exc:
        raise ConfigError(format_validation_error(label, exc)) from None


def secret_files(environ: Mapping[str, str]) -> dict[str, Any]:
    """Values from files named by ``HUB_<KEY>_FILE`` variables (systemd credentials, Docker
    secrets): ``HUB_INTEGRATIONS__STRIPE__SECRET_KEY_FILE=/run/secrets/stripe`` sets
    ``integrations.stripe.secret_key`` to the file's content (trailing newline dropped).
    A plain ``HUB_<KEY>`` variable still wins.

    :raise ConfigError: a named file cannot be read.
    """
    values: dict[str, Any] = {}
    for name, file_name in environ.items():
        upper = name.upper()
        if not (upper.startswith(ENV_PREFIX) and upper.endswith(FILE_SUFFIX)):
            continue
        try:
            content = Path(file_name).read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise ConfigError(f"{name}: cannot read {file_name}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise ConfigError(f"{name}: cannot read {file_name}: not UTF-8 text") from None
        parts = upper[len(ENV_PREFIX) : -len(FILE_SUFFIX)].lower().split("__")
        nested: dict[str, Any] = {parts[-1]: content}
        for part in reversed(parts[:-1]):
            nested = {part: nested}
        values = deep_merge(values, nested)
    return values


def is_disabled(settings: HubSettings, name: str) -> bool:
    """True if ``[integrations.NAME]`` says ``enabled = false`` (loaded, but kept off)."""
    section = settings.integrations.get(name) or {}
    return str(section.get("enabled", "true")).lower() in {"false", "0", "no"}


def validate_integration(
    settings: HubSettings, name: str, model: type[IntegrationSettings]
) -> IntegrationSettings | None:
    """Validate ``[integrations.NAME]`` with the plugin's model.

    :return: the settings, or None when the section is absent (the integration is unconfigured)
        or says ``enabled = false``.
    :raise ConfigError: unknown key, wrong type or missing required value, naming the key.
    """
    section = settings.integrations.get(name)
    if section is None or is_disabled(settings, name):
        return None
    try:
        return model(**section)
    except PydanticValidationError as exc:
        raise ConfigError(
            format_validation_error("configuration", exc, f"integrations.{name}")
        ) from None


def format_validation_error(label: str, exc: PydanticValidationError, prefix: str = "") -> str:
    """Turn a pydantic error into one line per problem: ``label: dotted.key: reason``.

    The reason says what the key expects and what kind of value it got, never the value: any
    key may be holding a secret (a sender's secret written where its table belongs, a token
    in the wrong key).
    """
    lines = []
    for error in exc.errors(include_url=False):
        key = ".".join(str(part) for part in (prefix, *error["loc"]) if part != "")
        env = ENV_PREFIX + key.upper().replace(".", "__")
        lines.append(f"{_where(label, env)}: {key}: {_reason(error, env)}")
    return "\n".join(lines)


def _where(label: str, env: str) -> str:
    """Where a key's value came from: its variable or its ``_FILE`` variable, else the
    variable of the table holding it (``HUB_WEBHOOKS__GENERIC='{...}'``), else ``label``."""
    parts = env.split("__")
    for end in range(len(parts), 0, -1):
        variable = "__".join(parts[:end])
        for name in (variable, variable + FILE_SUFFIX):
            if name in os.environ:
                return f"environment ({name})"
    return label


def _reason(error: ErrorDetails, env: str) -> str:
    """What is wrong with a key, without its value."""
    kind = error["type"]
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return f"required (set it in the file or as {env})"
    given = _kind_of(error["input"])
    if kind in TABLE_ERRORS:
        return f"should be a table (a section of keys), got {given}"
    return f"{error['msg']} (got {given})"


def _kind_of(value: object) -> str:
    """The kind of a configuration value in TOML's words: what an error may show of it."""
    kinds: tuple[tuple[type, str], ...] = (
        (bool, "a boolean"),  # before int: bool is an int
        (int, "an integer"),
        (float, "a number"),
        (str, "a string"),
        (dict, "a table"),
        (list, "a list"),
    )
    return next((name for cls, name in kinds if isinstance(value, cls)), "a value")


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: TOML syntax error: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None


def deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``extra`` merged in, tables merged key by key (``extra`` wins)."""
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def config_path_from_env() -> Path | None:
    """``HUB_CONFIG`` names the configuration file when ``--config`` is not given."""
    value = os.environ.get("HUB_CONFIG")
    return Path(value) if value else None
