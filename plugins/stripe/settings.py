"""``[integrations.stripe]``: the API key, webhook signing secrets, API version and tuning.

With no such section the plugin still loads and the integration shows as not configured.
``base_url`` points the plugin at the local sandbox (tests, the demo). This module imports
no part of the ``stripe`` SDK: the SDK is loaded when the integration is first used.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, SecretStr, field_validator

from hub.model import IntegrationSettings

NAME = "stripe"
API_BASE_URL = "https://api.stripe.com"
KEY_RE = re.compile(r"^(sk|rk)_(test|live)_[A-Za-z0-9]+$")
"""A secret (``sk_``) or restricted (``rk_``) key, test or live mode."""

HANDLED_EVENTS: tuple[str, ...] = (
    "customer.created",
    "customer.updated",
    "customer.deleted",
    "customer.subscription.created",
    "customer.subscription.updated",
    "customer.subscription.deleted",
    "customer.subscription.trial_will_end",
    "invoice.created",
    "invoice.finalized",
    "invoice.paid",
    "invoice.payment_succeeded",
    "invoice.payment_failed",
    "invoice.voided",
    "invoice.marked_uncollectible",
    "checkout.session.completed",
    "payment_intent.succeeded",
    "payment_intent.payment_failed",
    "charge.refunded",
    "charge.dispute.created",
)
"""The event types the plugin knows how to act on."""


class StripeSettings(IntegrationSettings):
    """Settings of the Stripe integration (``secret_key`` required)."""

    secret_key: SecretStr
    """``sk_test_…``/``sk_live_…``, or a restricted key ``rk_…`` with read access to the synced
    objects (and write access to customers, subscriptions and portal sessions for actions)."""
    webhook_secrets: list[SecretStr] = Field(default_factory=list, max_length=10)
    """Signing secrets (``whsec_…``) of the webhook endpoint; a request signed with any of
    them is accepted, so a rotated secret can be added before the old one is removed.
    Webhooks are refused (401) while the list is empty."""
    api_version: str | None = Field(default=None, pattern=r"^\d{4}-\d{2}-\d{2}(\.[a-z]+)?$")
    """``Stripe-Version`` sent with every call; None: the version the SDK is pinned to."""
    events: list[str] | None = None
    """Act only on these webhook event types (default: every handled type); other events
    are answered 200 and dropped."""
    account: str = Field(default="default", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    """The connection's key (``stripe:<account>``): a stable label for this Stripe account."""
    proration_behavior: Literal["always_invoice", "create_prorations", "none"] = "always_invoice"
    """How a plan change prorates (Stripe's ``proration_behavior``)."""
    portal_return_url: str | None = None
    """Where the customer portal sends the customer back; required for portal sessions."""
    streams: list[str] | None = None
    """Sync only these streams (default: all)."""
    max_network_retries: int = Field(default=2, ge=0, le=10)
    """The SDK's own retries of connection errors, 409 and 5xx answers (same idempotency key)."""
    rate_limit_attempts: int = Field(default=5, ge=1, le=20)
    """Tries per call when Stripe answers 429 (the SDK does not retry those)."""
    retry_base_delay: float = Field(default=0.5, gt=0, le=60)
    """Seconds before the first retry of a 429, doubling (full jitter) up to 30 s."""
    timeout: float = Field(default=30.0, gt=0, le=300)
    """Seconds per API request."""
    page_size: int = Field(default=100, ge=1, le=100)
    """Objects per list page (Stripe's maximum is 100)."""
    reconcile_hours: float = Field(default=24.0, gt=0)
    """An incremental sync re-reads every stream in full (and tombstones what is gone) when
    the last full pass is older than this: the nightly reconciliation."""

    @field_validator("secret_key")
    @classmethod
    def _key_shape(cls, value: SecretStr) -> SecretStr:
        if not KEY_RE.match(value.get_secret_value()):
            raise ValueError("expected a key like sk_test_…, sk_live_…, rk_test_… or rk_live_…")
        return value

    @field_validator("webhook_secrets")
    @classmethod
    def _secret_shape(cls, value: list[SecretStr]) -> list[SecretStr]:
        if any(not secret.get_secret_value().strip() for secret in value):
            raise ValueError("a webhook secret is empty")
        return value

    @field_validator("events")
    @classmethod
    def _known_events(cls, value: list[str] | None) -> list[str] | None:
        unknown = [name for name in value or () if name not in HANDLED_EVENTS]
        if unknown:
            raise ValueError(f"unhandled event type(s) {unknown}; handled: {list(HANDLED_EVENTS)}")
        return value

    @field_validator("streams")
    @classmethod
    def _known_streams(cls, value: list[str] | None) -> list[str] | None:
        from .sync import STREAMS  # imported here: sync imports this module

        known = {stream.name for stream in STREAMS}
        unknown = [name for name in value or () if name not in known]
        if unknown:
            raise ValueError(f"unknown stream(s) {unknown}; known: {sorted(known)}")
        return value

    @property
    def api_base_url(self) -> str:
        """The API host: ``base_url`` if set, else Stripe's."""
        return (self.base_url or API_BASE_URL).rstrip("/")

    @property
    def livemode(self) -> bool:
        """True for a live-mode key (real money), False for a test-mode key."""
        return "_live_" in self.secret_key.get_secret_value()

    @property
    def restricted(self) -> bool:
        """True for a restricted key (``rk_``), which may lack permissions."""
        return self.secret_key.get_secret_value().startswith("rk_")

    @property
    def acted_on(self) -> frozenset[str]:
        """The event types webhooks act on."""
        return frozenset(self.events if self.events is not None else HANDLED_EVENTS)
