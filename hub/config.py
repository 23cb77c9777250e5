"""Configuration: ``hub.toml`` plus ``HUB_`` environment overrides, validated by pydantic.

Every key is optional; the defaults run a hub with no secrets. Problems become a
:class:`~hub.errors.ConfigError` whose message has one line per problem naming the key.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr
from pydantic import ValidationError as PydanticValidationError
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from hub.errors import ConfigError
from hub.logs import is_secret_key, redact
from hub.model import IntegrationSettings

DEFAULT_CONFIG = Path("hub.toml")
ENV_PREFIX = "HUB_"
FILE_SUFFIX = "_FILE"


class Section(BaseModel):
    """Base of every section: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")


class ServerSettings(Section):
    """``[server]``: where the daemon listens."""

    host: str = "127.0.0.1"
    port: int = Field(default=8700, ge=0, le=65535)
    shutdown_timeout: float = Field(default=5.0, gt=0)
    """Seconds in-flight work gets to finish on SIGTERM before it is cancelled."""
    public_url: str | None = Field(default=None, pattern=r"^https?://[^\s/]+(/\S*)?$")
    """The address people reach the hub at (behind a proxy, say), for links in alerts and
    e-mails; None: ``http://<host>:<port>``."""


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
    """``[admin]``: the token for ``/admin`` and ``/api/*``; generated at first start if unset."""

    token: SecretStr | None = None


class PluginsSettings(Section):
    """``[plugins]``: where third-party plugins come from and which are turned off."""

    dir: Path | None = None
    allow: list[str] = Field(default_factory=list)
    """If non-empty, only these plugins load (built-ins included)."""
    deny: list[str] = Field(default_factory=list)
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

    secret: SecretStr
    header: str = "X-Signature"
    encoding: Literal["hex", "base64"] = "hex"


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
    """Turn a pydantic error into one line per problem: ``label: dotted.key: reason``."""
    lines = []
    for error in exc.errors():
        key = ".".join(str(part) for part in (prefix, *error["loc"]) if part != "")
        env = ENV_PREFIX + key.upper().replace(".", "__")
        where = f"environment ({env})" if env in os.environ else label
        kind = error["type"]
        if kind == "extra_forbidden":
            reason = "unknown key"
        elif kind == "missing":
            reason = f"required (set it in the file or as {env})"
        else:
            given = error.get("input")
            shown = "***" if _looks_secret(key) else repr(redact(given))[:60]
            reason = f"{error['msg']} (got {shown})"
        lines.append(f"{where}: {key}: {reason}")
    return "\n".join(lines)


def _looks_secret(key: str) -> bool:
    """True if any part of the dotted key names a secret (the log redactor's rule)."""
    return any(
        is_secret_key(part) or any(word in part.lower() for word in ("secret", "token", "key"))
        for part in key.split(".")
    )


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
