"""``[integrations.custom_accounting]``: what the user configures."""

from __future__ import annotations

from pydantic import Field, SecretStr

from hub.model import IntegrationSettings

NAME = "custom_accounting"
"""The integration: ``[integrations.custom_accounting]``, ``/webhooks/custom_accounting``."""


class LedgerSettings(IntegrationSettings):
    """Settings of the Ledger API integration (``base_url`` and ``api_token`` are required)."""

    base_url: str  # required here, optional in the base model
    api_token: SecretStr
    account: str = "default"
    """A name for the connection (the API has one account per token)."""
    page_size: int = Field(default=1000, ge=1, le=5000)
    webhook_secret: SecretStr | None = None
    streams: list[str] | None = None
    """Sync only these streams (default: all)."""
