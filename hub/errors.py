"""Exceptions the hub and plugins raise, each with the error class recorded on sync runs.

Plugins raise these (usually through :mod:`hub.http`) so that a failure is classified the same
way everywhere: in sync runs, health, metrics and alerts.
"""

from __future__ import annotations


class HubError(Exception):
    """Base of every error the hub classifies; ``error_class`` names the kind."""

    error_class = "internal"
    advice = ""
    """What a person can do about it, shown beside the error (``/admin``, ``/api/status``)."""

    def __init__(self, *args: object, advice: str | None = None) -> None:
        super().__init__(*args)
        if advice is not None:
            self.advice = advice


class ConfigError(HubError):
    """The configuration is invalid; the message names the file and key at fault."""

    error_class = "config"


class StoreError(HubError):
    """The database cannot be opened or is not a hub database."""

    error_class = "store"


class ProviderError(HubError):
    """A provider call failed; ``status`` is the HTTP status when there was one, ``body`` the
    start of the provider's error answer (empty when there was none), for its reason, and
    ``request_id`` the provider's id of the failed answer (what its support asks for)."""

    error_class = "provider"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        advice: str | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message, advice=advice)
        self.status = status
        self.body = b""
        self.request_id = request_id


class AuthenticationError(ProviderError):
    """Credentials are missing, expired or revoked: the connection needs re-authentication."""

    error_class = "authentication"
    advice = "reconnect the account: the provider refused its credentials"


class AuthorizationError(ProviderError):
    """Credentials are valid but not allowed to do this."""

    error_class = "authorization"


class RateLimitError(ProviderError):
    """The provider throttled us and retries were exhausted."""

    error_class = "rate_limit"


class ServerError(ProviderError):
    """The provider answered 5xx (or a fault inside a 200) and retries were exhausted."""

    error_class = "server"


class NetworkError(ProviderError):
    """Timeout, refused or reset connection, DNS failure; retries were exhausted."""

    error_class = "network"


class ValidationError(ProviderError):
    """The provider rejected the request as malformed (4xx other than auth and throttling)."""

    error_class = "validation"


class SignatureError(HubError):
    """A webhook's signature is missing or wrong; the request is answered 401, nothing stored."""

    error_class = "signature"


class UnknownSourceError(HubError):
    """A webhook names a source or sender nobody configured; answered 404, nothing stored."""

    error_class = "unknown_source"


class MalformedWebhookError(HubError):
    """A webhook body cannot be parsed; the request is answered 400, nothing stored."""

    error_class = "malformed"


class SyncBusyError(HubError):
    """A sync of this connection is already running (here or in another process)."""

    error_class = "busy"

    def __init__(self, connection_id: str, run_id: int | None) -> None:
        super().__init__(f"a sync of {connection_id} is already running (run {run_id})")
        self.connection_id = connection_id
        self.run_id = run_id


class PluginTableError(HubError):
    """A plugin's table call was refused: a bad name, a table outside its namespace, a
    statement plugin SQL may not run, or a migration list that is not valid."""

    error_class = "plugin_table"


class PluginContractError(HubError):
    """A plugin broke the hook contract (a hook returned the wrong kind of value)."""

    error_class = "plugin"


def error_class_of(exc: BaseException) -> str:
    """Return the error class recorded for ``exc``: a HubError's class, else its type name."""
    if isinstance(exc, HubError):
        return exc.error_class
    if isinstance(exc, TimeoutError):
        return "network"
    return type(exc).__name__


def advice_of(exc: BaseException) -> str:
    """Return what a person can do about ``exc``: a HubError's ``advice``, else empty."""
    return exc.advice if isinstance(exc, HubError) else ""
