"""``[integrations.sendgrid]``: the API key, the sender, templates, alert recipients, the Event
Webhook keys, and ``[integrations.sendgrid.smtp]`` for the SMTP channel.

Either ``api_key`` or ``smtp`` (or both) must be set. With both, SMTP is the fallback when
SendGrid fails; with only ``smtp``, every message goes by SMTP. ``base_url`` points the plugin
at the local sandbox (tests, the demo); ``region = "eu"`` uses SendGrid's EU host.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from hub.model import IntegrationSettings

NAME = "sendgrid"
API_HOSTS = {"global": "https://api.sendgrid.com", "eu": "https://api.eu.sendgrid.com"}
"""SendGrid's v3 API hosts (the EU one for EU data-residency subusers)."""
EMAIL = r"^[^@\s]+@[^@\s]+$"


class Templates(BaseModel):
    """``[integrations.sendgrid.templates]``: dynamic template ids (``d-…``) per message kind;
    a kind without one is sent as plain text the plugin writes."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    welcome: str | None = None
    """The welcome / invitation message of ``POST /api/notifications`` (kind ``welcome``)."""
    document_processed: str | None = None
    """``document.analyzed``: a document was analysed (to its uploader)."""
    document_failed: str | None = None
    """``document.analysis_failed``: a document could not be analysed (to its uploader)."""
    payment_failed: str | None = None
    """``stripe.invoice.payment_failed`` (to the billing contact)."""
    integration_alert: str | None = None
    """Alert e-mails to the admins (data: ``firm``, ``severity``, ``subject``, ``items``)."""


class SmtpSettings(BaseModel):
    """``[integrations.sendgrid.smtp]``: an SMTP server for the SMTP channel."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    host: str = Field(min_length=1)
    port: int = Field(default=587, ge=1, le=65535)
    security: Literal["starttls", "tls", "none"] = "starttls"
    """``starttls`` (upgrade on port 587), ``tls`` (implicit TLS, port 465) or ``none``
    (plain, for a relay on localhost only)."""
    username: str | None = None
    password: SecretStr | None = None
    """Log in with these when both are set."""
    ca_file: str | None = None
    """Trust this CA bundle (PEM) for the server's certificate instead of the system's."""
    timeout: float = Field(default=30.0, gt=0)
    """Seconds per SMTP connection and exchange."""


class SendGridSettings(IntegrationSettings):
    """Settings of the e-mail integration (SendGrid and/or SMTP)."""

    api_key: SecretStr | None = None
    """The SendGrid API key (``SG.…``) with Mail Send (and Suppressions, to reconcile)."""
    region: Literal["global", "eu"] = "global"
    """``eu``: call ``api.eu.sendgrid.com`` (EU data residency)."""
    from_email: str = Field(pattern=EMAIL)
    """The sender address (a verified sender or domain in SendGrid)."""
    from_name: str = ""
    firm_name: str = Field(default="AdvisorOS", min_length=1)
    """The firm's name, in alert subjects (``[CRITICAL] Integration Failures - <firm>``)."""
    alert_recipients: list[str] = Field(default_factory=list)
    """The admins' addresses that get alert e-mails (none: no alert e-mail)."""
    billing_contact: str | None = Field(default=None, pattern=EMAIL)
    """Who gets ``stripe.invoice.payment_failed`` notices."""
    templates: Templates = Field(default_factory=Templates)
    event_webhook_public_key: SecretStr | None = None
    """The Event Webhook verification key (base64 DER, from SendGrid's console)."""
    event_webhook_public_keys: list[SecretStr] = Field(default_factory=list)
    """More verification keys (a key being rotated, several subusers); any one may sign.
    Event webhooks are refused (401) while no key is set."""
    event_webhook_tolerance: int = Field(default=300, ge=1)
    """Seconds an event batch's signed timestamp may differ from now."""
    alert_min_interval: int = Field(default=900, ge=0)
    """At most one alert e-mail per connection in this many seconds; the changes in between
    are coalesced into one summary sent when the window ends."""
    retry_interval: int = Field(default=60, ge=1)
    """Seconds between passes that resend e-mails that could not be sent."""
    max_attempts: int = Field(default=10, ge=1)
    """Passes an unsent e-mail gets before it is marked ``failed`` (and logged as an error)."""
    request_attempts: int = Field(default=5, ge=1)
    """Tries per API call on 429 (after ``X-RateLimit-Reset``) and 5xx (with backoff)."""
    request_max_delay: float = Field(default=15.0, gt=0)
    """Longest backoff between tries, seconds; a rate-limit wait is capped at 4x this."""
    history_days: int = Field(default=90, ge=1)
    """Sends that are done (sent, failed, suppressed, …) and recipient events are deleted
    after this many days; unsent ones are kept until they are sent or given up."""
    max_concurrent: int = Field(default=4, ge=1)
    """Mail-send requests in flight at once (a bulk notification)."""
    smtp: SmtpSettings | None = None

    @field_validator("event_webhook_public_key", "event_webhook_public_keys")
    @classmethod
    def _p256_keys(cls, value: SecretStr | list[SecretStr] | None) -> object:
        from .webhooks import load_key  # imported here: webhooks needs cryptography

        for key in value if isinstance(value, list) else [value] if value else []:
            try:
                load_key(key.get_secret_value())
            except ValueError as exc:
                raise ValueError(f"not a P-256 public key (base64 DER or PEM): {exc}") from None
        return value

    @model_validator(mode="after")
    def _some_transport(self) -> SendGridSettings:
        if self.api_key is None and self.smtp is None:
            raise ValueError("set api_key (SendGrid) or [integrations.sendgrid.smtp], or both")
        return self

    @property
    def verification_keys(self) -> list[str]:
        """Every configured Event Webhook key."""
        keys = [self.event_webhook_public_key, *self.event_webhook_public_keys]
        return [key.get_secret_value() for key in keys if key is not None]

    @property
    def api_base_url(self) -> str:
        """The v3 API host: ``base_url`` if set, else the region's."""
        return (self.base_url or API_HOSTS[self.region]).rstrip("/")


def settings_of(settings: IntegrationSettings | None) -> SendGridSettings | None:
    """``settings`` if they are this plugin's (None: not configured)."""
    return settings if isinstance(settings, SendGridSettings) else None
