"""Read-only SAS links to one document's blob, valid for a bounded time.

With a key (connection string or ``account_key``) the link is a service SAS signed with the
account key; with ``azure_ad`` it is a user-delegation SAS, signed with a key the storage
account issues to the AD identity for the link's lifetime.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from azure.storage.blob.aio import BlobServiceClient

CLOCK_SKEW = timedelta(minutes=5)
"""A link is valid from a little before now: clocks of the hub and Azure differ."""


async def read_link(
    service: BlobServiceClient, container: str, blob_name: str, expires_at: datetime
) -> str:
    """The URL of ``blob_name`` with a read-only SAS valid until ``expires_at``."""
    from azure.storage.blob import BlobSasPermissions, generate_blob_sas

    start = datetime.now(UTC) - CLOCK_SKEW
    credential = service.credential
    key = getattr(credential, "account_key", None)
    delegation = None if key else await service.get_user_delegation_key(start, expires_at)
    token = generate_blob_sas(
        service.account_name or "",
        container,
        blob_name,
        account_key=key,
        user_delegation_key=delegation,
        permission=BlobSasPermissions(read=True),
        expiry=expires_at,
        start=start,
    )
    url = service.get_blob_client(container, blob_name).url
    return f"{url}?{token}"


def expiry(minutes: int) -> datetime:
    """When a link asked for ``minutes`` from now expires (to the second)."""
    return (datetime.now(UTC) + timedelta(minutes=minutes)).replace(microsecond=0)
