"""``[integrations.azure_storage]``: which storage account, how to authenticate, which
container, and the limits of uploads and links.

Authenticate with one of: ``connection_string`` (it carries the account key), or
``account_url`` with ``account_key``, or ``account_url`` with ``azure_ad = true`` (an Azure AD
credential: ``azure.identity.aio.DefaultAzureCredential``, which reads ``AZURE_CLIENT_ID``,
``AZURE_TENANT_ID``, ``AZURE_CLIENT_SECRET`` or a managed identity). The hub does not
depend on ``azure-identity``: ``azure_ad = true`` is refused at start unless it is installed.
"""

from __future__ import annotations

import importlib.util
import re

from pydantic import Field, SecretStr, ValidationInfo, field_validator

from hub.model import IntegrationSettings

NAME = "azure_storage"
MIB = 1024 * 1024
CONTAINER_RE = re.compile(r"^(?=.{3,63}$)[a-z0-9]+(-[a-z0-9]+)*$")
"""Azure's container names: 3-63 lowercase letters, digits and single inner hyphens."""
SEGMENT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"
"""A blob name segment the hub builds from a setting or a client reference."""


def _container(value: str) -> str:
    if not CONTAINER_RE.match(value):
        raise ValueError(
            "a container name is 3-63 lowercase letters, digits and single inner hyphens"
        )
    return value


class AzureStorageSettings(IntegrationSettings):
    """Settings of the Azure Blob Storage integration (documents).

    The credential keys are declared in the order their checks need (a check sees the keys
    before it), so each error names the key at fault.
    """

    connection_string: SecretStr | None = None
    """The storage account's connection string (``DefaultEndpointsProtocol=…;AccountKey=…``)."""
    account_url: str | None = Field(default=None, pattern=r"^https?://", validate_default=True)
    """The blob endpoint (``https://<account>.blob.core.windows.net``), with ``account_key``
    or ``azure_ad``."""
    account_key: SecretStr | None = None
    """The account's shared key, with ``account_url``."""
    azure_ad: bool = Field(default=False, validate_default=True)
    """Authenticate with an Azure AD credential (``DefaultAzureCredential``, from the
    ``azure-identity`` package) instead of a key; SAS links are then user-delegation SAS."""
    container: str = "documents"
    """The container documents are stored in; created if missing."""
    recovery_containers: list[str] = Field(default_factory=list, max_length=10)
    """Other containers the repair searches for a document that left its place."""
    org: str = Field(default="firm", pattern=SEGMENT_PATTERN)
    """The first segment of every blob name: ``{org}/{client}/{timestamp}_{name}``."""
    max_upload_bytes: int = Field(default=100 * MIB, ge=1, le=4 * 1024 * MIB)
    """The largest document accepted; a larger upload is refused with 413."""
    block_size: int = Field(default=4 * MIB, ge=64 * 1024, le=100 * MIB)
    """Uploads are staged, and downloads read, in blocks of this size."""
    transfer_concurrency: int = Field(default=2, ge=1, le=16)
    """Blocks staged (upload) or read (download) at once per transfer: a transfer holds at
    most ``transfer_concurrency + 1`` blocks in memory."""
    sas_max_minutes: int = Field(default=24 * 60, ge=1, le=7 * 24 * 60)
    """The longest link lifetime a request may ask for (``?minutes=``)."""
    sas_minutes: int = Field(default=60, ge=1)
    """How long a document link is valid unless the request asks for less or more."""
    retry_total: int = Field(default=3, ge=0, le=10)
    """Retries of a failed storage call (connection error, 5xx, 408, 429)."""
    timeout: float = Field(default=60.0, gt=0, le=3600)
    """Seconds a storage call may wait to connect or for the next bytes."""

    @field_validator("account_url")
    @classmethod
    def _url_or_string(cls, value: str | None, info: ValidationInfo) -> str | None:
        given = info.data.get("connection_string") is not None
        if value and given:
            raise ValueError("give connection_string or account_url, not both")
        if not value and not given and "connection_string" in info.data:
            raise ValueError("required: connection_string, or account_url with a credential")
        return value

    @field_validator("account_key")
    @classmethod
    def _key_with_url(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        if value is not None and not info.data.get("account_url"):
            raise ValueError("account_key needs account_url")
        return value

    @field_validator("azure_ad")
    @classmethod
    def _one_url_credential(cls, value: bool, info: ValidationInfo) -> bool:
        url, key = info.data.get("account_url"), info.data.get("account_key")
        if value and not url:
            raise ValueError("azure_ad = true needs account_url")
        if value and key is not None:
            raise ValueError("give account_key or azure_ad = true, not both")
        if url and not value and key is None and "account_key" in info.data:
            raise ValueError("with account_url give account_key or azure_ad = true")
        if value and importlib.util.find_spec("azure.identity") is None:
            raise ValueError("azure_ad = true needs the azure-identity package (pip install it)")
        return value

    @field_validator("container")
    @classmethod
    def _valid_container(cls, value: str) -> str:
        return _container(value)

    @field_validator("recovery_containers")
    @classmethod
    def _valid_containers(cls, value: list[str]) -> list[str]:
        return [_container(name) for name in value]

    @field_validator("sas_minutes")
    @classmethod
    def _within_cap(cls, value: int, info: ValidationInfo) -> int:
        cap = info.data.get("sas_max_minutes")
        if cap is not None and value > cap:
            raise ValueError("sas_minutes must not exceed sas_max_minutes")
        return value
