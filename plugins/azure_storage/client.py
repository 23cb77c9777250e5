"""The storage calls' plumbing: a ``BlobServiceClient`` (``azure.storage.blob.aio``) built from
the settings on the hub's shared HTTP session, and the mapping of SDK errors to hub errors.

The SDK is imported here, when a client is first needed, never when the plugin loads.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from hub.errors import (
    AuthenticationError,
    AuthorizationError,
    NetworkError,
    ProviderError,
    ServerError,
)

from .settings import AzureStorageSettings

if TYPE_CHECKING:
    from azure.storage.blob.aio import BlobServiceClient, ContainerClient

    from hub.api import HubAPI

ACCOUNT_NAME_RE = re.compile(r"(?:^|;)\s*AccountName=([^;]+)", re.IGNORECASE)
DEVELOPMENT_ACCOUNT = "devstoreaccount1"
READ_PIECE = 256 * 1024
"""The pieces a storage answer's body is read in."""
"""Azurite's account (``UseDevelopmentStorage=true``)."""


def account_name(settings: AzureStorageSettings) -> str:
    """The storage account's name, read from the settings without the SDK."""
    if settings.connection_string is not None:
        text = settings.connection_string.get_secret_value()
        found = ACCOUNT_NAME_RE.search(text)
        return found.group(1).strip() if found else DEVELOPMENT_ACCOUNT
    parts = urlsplit(settings.account_url or "")
    host = parts.hostname or ""
    if host.count(".") >= 3 and not host.replace(".", "").isdigit():
        return host.split(".", 1)[0]
    # Azurite and other emulators: http://host:port/<account>
    return parts.path.strip("/").split("/", 1)[0] or host


def _options(settings: AzureStorageSettings, hub: HubAPI) -> dict[str, Any]:
    from azure.core.pipeline.transport import AioHttpTransport

    # the SDK reads bodies in pieces of 4 KiB unless told: a Python step per 4 KiB is most of
    # a large download's time
    transport = AioHttpTransport(
        session=hub.http.session, session_owner=False, connection_data_block_size=READ_PIECE
    )
    return {
        "transport": transport,
        "retry_total": settings.retry_total,
        "retry_backoff_factor": 0.5,
        "connection_timeout": settings.timeout,
        "read_timeout": settings.timeout,
        "max_single_put_size": settings.block_size,
        "max_block_size": settings.block_size,
        "max_single_get_size": settings.block_size,
        "max_chunk_get_size": settings.block_size,
    }


@contextlib.asynccontextmanager
async def service(settings: AzureStorageSettings, hub: HubAPI) -> AsyncIterator[BlobServiceClient]:
    """A service client for the configured account, closed on exit (the HTTP session stays)."""
    from azure.storage.blob.aio import BlobServiceClient

    options = _options(settings, hub)
    if settings.connection_string is not None:
        text = settings.connection_string.get_secret_value()
        async with BlobServiceClient.from_connection_string(text, **options) as client:
            yield client
        return
    if not settings.azure_ad:
        key = settings.account_key.get_secret_value() if settings.account_key else None
        async with BlobServiceClient(settings.account_url or "", key, **options) as client:
            yield client
        return
    # the settings refuse azure_ad = true unless azure-identity is installed
    from azure.identity.aio import DefaultAzureCredential

    async with (
        DefaultAzureCredential() as credential,
        BlobServiceClient(settings.account_url or "", credential, **options) as client,
    ):
        yield client


@contextlib.asynccontextmanager
async def container(
    settings: AzureStorageSettings, hub: HubAPI, name: str | None = None
) -> AsyncIterator[ContainerClient]:
    """A client of the documents container (or of container ``name``)."""
    async with service(settings, hub) as client:
        yield client.get_container_client(name or settings.container)


async def ensure_container(settings: AzureStorageSettings, hub: HubAPI) -> None:
    """Create the documents container if it does not exist yet (a credential that may not
    create containers is fine while the container exists).

    :raise HttpResponseError: the storage refused.
    """
    from azure.core.exceptions import HttpResponseError, ResourceExistsError

    async with container(settings, hub) as client:
        try:
            await client.create_container()
        except ResourceExistsError:
            pass
        except HttpResponseError as exc:
            if exc.status_code != 403 or not await client.exists():
                raise


def storage_error(exc: BaseException) -> ProviderError:
    """The hub's classification of an SDK exception (the message never carries a key)."""
    from azure.core.exceptions import HttpResponseError, ServiceRequestError, ServiceResponseError

    if isinstance(exc, ProviderError):
        return exc
    if isinstance(exc, ServiceRequestError | ServiceResponseError | OSError | TimeoutError):
        return NetworkError(f"the storage account is unreachable: {type(exc).__name__}")
    if isinstance(exc, HttpResponseError):
        status = exc.status_code
        code = getattr(exc, "error_code", None) or exc.reason or "error"
        message = f"storage answered {status} {code}"
        if status == 401 or code == "AuthenticationFailed":
            return AuthenticationError(message, status=status)
        if status == 403:
            return AuthorizationError(message, status=status)
        if status is not None and status >= 500:
            return ServerError(message, status=status)
        return ProviderError(message, status=status)
    return ProviderError(f"storage call failed: {type(exc).__name__}")
