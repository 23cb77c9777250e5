"""A storage account with soft delete and versioning on, answering as Azure Blob Storage does.

Azurite has neither soft delete nor versioning, so the repair's undelete and previous-version
paths and the health check's "enabled" path are tested against this small aiohttp fake. It
answers only the operations the plugin makes, with the status codes, headers and XML bodies
of Azure's REST reference, so the real ``azure-storage-blob`` ``.aio`` SDK parses them:

- Get Blob Service Properties (``DeleteRetentionPolicy``):
  https://learn.microsoft.com/en-us/rest/api/storageservices/get-blob-service-properties
- List Blobs with ``include=deleted,versions,metadata`` (``Deleted``, ``VersionId``,
  ``IsCurrentVersion``): https://learn.microsoft.com/en-us/rest/api/storageservices/list-blobs
- Undelete Blob (``PUT ?comp=undelete``):
  https://learn.microsoft.com/en-us/rest/api/storageservices/undelete-blob
- Copy Blob from a version (``x-ms-copy-source: …?versionid=…``, synchronous within an
  account: ``x-ms-copy-status: success``):
  https://learn.microsoft.com/en-us/rest/api/storageservices/copy-blob
- Put Blob, Put Block, Put Block List (``x-ms-version-id`` when versioning is on), Get Blob
  (ranges), Get Blob Properties, Delete Blob (soft: the blob stays listed as ``Deleted``),
  Create Container: https://learn.microsoft.com/en-us/rest/api/storageservices/blob-service-rest-api
- Error answers (``x-ms-error-code`` and ``<Error><Code>``):
  https://learn.microsoft.com/en-us/rest/api/storageservices/blob-service-error-codes

Requests are not authenticated (the fake trusts the SDK's signature); :attr:`Account.calls`
records each operation so a test can see which recovery was used.
"""

from __future__ import annotations

import base64
import hashlib
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from urllib.parse import unquote, urlsplit
from xml.sax.saxutils import escape

from aiohttp import web

ACCOUNT = "devstoreaccount1"
XML = "application/xml"
LIST_INCLUDES = ("metadata", "deleted", "versions")


@dataclass
class Version:
    """One version of a blob: its bytes, metadata and ids."""

    content: bytes
    metadata: dict[str, str]
    content_type: str
    version_id: str = field(default_factory=lambda: _now().strftime("%Y-%m-%dT%H:%M:%S.%f0Z"))
    etag: str = field(default_factory=lambda: f'"0x{uuid.uuid4().hex[:15].upper()}"')
    modified: datetime = field(default_factory=lambda: _now())


@dataclass
class Blob:
    """A blob name's versions (oldest first); ``current`` is None once it was deleted."""

    versions: list[Version] = field(default_factory=list)
    current: Version | None = None
    deleted: Version | None = None
    """With soft delete: the version a delete removed (Undelete Blob brings it back)."""


@dataclass
class Account:
    """The fake account's state and switches."""

    soft_delete: bool = True
    versioning: bool = True
    containers: dict[str, dict[str, Blob]] = field(default_factory=dict)
    staged: dict[tuple[str, str, str], bytes] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    replace_after_first_range: bytes | None = None
    """Bytes that overwrite a blob once its first range was read (a change mid-download)."""

    def blob(self, container: str, name: str) -> Blob:
        """The blob ``name`` (created empty if unknown)."""
        return self.containers.setdefault(container, {}).setdefault(name, Blob())

    def write(self, container: str, name: str, version: Version) -> Version:
        """A new current version of ``name`` (what Put Blob, Put Block List, Copy Blob do)."""
        blob = self.blob(container, name)
        if self.versioning:
            blob.versions.append(version)
        blob.current, blob.deleted = version, None
        return version

    def delete(self, container: str, name: str, version_id: str | None = None) -> None:
        """Delete Blob: one version, or the blob (soft-deleted with soft delete on, else gone;
        its versions stay)."""
        blob = self.blob(container, name)
        if version_id is not None:
            blob.versions = [v for v in blob.versions if v.version_id != version_id]
            return
        blob.deleted = blob.current if self.soft_delete and not self.versioning else None
        blob.current = None


def _now() -> datetime:
    return datetime.now(UTC)


def _http_date(when: datetime) -> str:
    return format_datetime(when, usegmt=True)


def _error(status: int, code: str, head: bool = False) -> web.Response:
    headers = {"x-ms-error-code": code, "x-ms-request-id": str(uuid.uuid4())}
    if head:  # a HEAD answer has no body: the code is only in the header
        return web.Response(status=status, headers=headers)
    body = (
        f'<?xml version="1.0" encoding="utf-8"?><Error><Code>{code}</Code>'
        f"<Message>{code}\nRequestId:{headers['x-ms-request-id']}</Message></Error>"
    )
    return web.Response(status=status, headers=headers, text=body, content_type=XML)


def _common() -> dict[str, str]:
    return {"x-ms-request-id": str(uuid.uuid4()), "x-ms-version": "2025-05-05"}


def _written(version: Version, account: Account) -> dict[str, str]:
    headers = {
        **_common(),
        "ETag": version.etag,
        "Last-Modified": _http_date(version.modified),
        "x-ms-request-server-encrypted": "true",
    }
    if account.versioning:
        headers["x-ms-version-id"] = version.version_id
    return headers


def _properties_headers(version: Version, account: Account, current: bool) -> dict[str, str]:
    headers = {
        **_common(),
        "Last-Modified": _http_date(version.modified),
        "ETag": version.etag,
        "Content-Type": version.content_type,
        "x-ms-blob-type": "BlockBlob",
        "x-ms-creation-time": _http_date(version.modified),
        "x-ms-lease-status": "unlocked",
        "x-ms-lease-state": "available",
        "x-ms-server-encrypted": "true",
        "Accept-Ranges": "bytes",
        **{f"x-ms-meta-{key}": value for key, value in version.metadata.items()},
    }
    if account.versioning:
        headers["x-ms-version-id"] = version.version_id
        headers["x-ms-is-current-version"] = "true" if current else "false"
    return headers


def _service_properties(account: Account) -> str:
    retention = (
        "<Enabled>true</Enabled><Days>7</Days><AllowPermanentDelete>false</AllowPermanentDelete>"
        if account.soft_delete
        else "<Enabled>false</Enabled>"
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?><StorageServiceProperties>'
        "<Logging><Version>1.0</Version><Read>false</Read><Write>false</Write>"
        "<Delete>false</Delete><RetentionPolicy><Enabled>false</Enabled></RetentionPolicy>"
        "</Logging><HourMetrics><Version>1.0</Version><Enabled>false</Enabled>"
        "<RetentionPolicy><Enabled>false</Enabled></RetentionPolicy></HourMetrics>"
        "<MinuteMetrics><Version>1.0</Version><Enabled>false</Enabled>"
        "<RetentionPolicy><Enabled>false</Enabled></RetentionPolicy></MinuteMetrics>"
        "<Cors /><DefaultServiceVersion>2025-05-05</DefaultServiceVersion>"
        f"<DeleteRetentionPolicy>{retention}</DeleteRetentionPolicy>"
        "<StaticWebsite><Enabled>false</Enabled></StaticWebsite></StorageServiceProperties>"
    )


def _listed(name: str, version: Version, account: Account, state: str) -> str:
    """One ``<Blob>`` of List Blobs; ``state`` is ``current``, ``previous`` or ``deleted``."""
    extra = ""
    if account.versioning:
        extra += f"<VersionId>{version.version_id}</VersionId>"
        if state == "current":
            extra += "<IsCurrentVersion>true</IsCurrentVersion>"
    deleted = "<Deleted>true</Deleted>" if state == "deleted" else ""
    removal = (
        f"<DeletedTime>{_http_date(_now())}</DeletedTime><RemainingRetentionDays>7"
        "</RemainingRetentionDays>"
        if state == "deleted"
        else ""
    )
    metadata = "".join(f"<{k}>{escape(v)}</{k}>" for k, v in version.metadata.items())
    return (
        f"<Blob><Name>{escape(name)}</Name>{deleted}{extra}<Properties>"
        f"<Creation-Time>{_http_date(version.modified)}</Creation-Time>"
        f"<Last-Modified>{_http_date(version.modified)}</Last-Modified>"
        f"<Etag>{version.etag}</Etag><Content-Length>{len(version.content)}</Content-Length>"
        f"<Content-Type>{version.content_type}</Content-Type><Content-Encoding />"
        "<Content-Language /><Content-CRC64 /><Content-MD5 /><Cache-Control />"
        "<Content-Disposition /><BlobType>BlockBlob</BlobType><AccessTier>Hot</AccessTier>"
        "<AccessTierInferred>true</AccessTierInferred><LeaseStatus>unlocked</LeaseStatus>"
        f"<LeaseState>available</LeaseState><ServerEncrypted>true</ServerEncrypted>{removal}"
        f"</Properties><Metadata>{metadata}</Metadata><OrMetadata /></Blob>"
    )


def _list_blobs(account: Account, request: web.Request, container: str) -> web.Response:
    prefix = request.query.get("prefix", "")
    include = set(request.query.get("include", "").split(","))
    entries = []
    for name, blob in sorted(account.containers.get(container, {}).items()):
        if not name.startswith(prefix):
            continue
        for version in blob.versions if "versions" in include else []:
            if version is not blob.current:
                entries.append(_listed(name, version, account, "previous"))
        if blob.current is not None:
            entries.append(_listed(name, blob.current, account, "current"))
        if blob.deleted is not None and "deleted" in include:
            entries.append(_listed(name, blob.deleted, account, "deleted"))
    body = (
        '<?xml version="1.0" encoding="utf-8"?>'
        f'<EnumerationResults ServiceEndpoint="{request.url.origin()}/{ACCOUNT}/" '
        f'ContainerName="{container}"><Prefix>{escape(prefix)}</Prefix>'
        f"<Blobs>{''.join(entries)}</Blobs><NextMarker /></EnumerationResults>"
    )
    return web.Response(text=body, content_type=XML, headers=_common())


def _metadata(request: web.Request) -> dict[str, str]:
    return {
        key[len("x-ms-meta-") :]: value
        for key, value in request.headers.items()
        if key.lower().startswith("x-ms-meta-")
    }


def _content_type(request: web.Request) -> str:
    return request.headers.get("x-ms-blob-content-type", "application/octet-stream")


async def _commit(account: Account, request: web.Request, container: str, name: str) -> bytes:
    ids = re.findall(rb"<(?:Latest|Uncommitted|Committed)>([^<]+)<", await request.read())
    return b"".join(account.staged.pop((container, name, i.decode())) for i in ids)


def _copy(account: Account, request: web.Request, container: str, name: str) -> web.Response:
    source = urlsplit(request.headers["x-ms-copy-source"])
    wanted = dict(part.split("=", 1) for part in source.query.split("&") if "=" in part)
    _, _, source_container, source_name = unquote(source.path).split("/", 3)
    blob = account.blob(source_container, source_name)
    found = [v for v in blob.versions if v.version_id == unquote(wanted.get("versionid", ""))]
    if not found:
        return _error(404, "CannotVerifyCopySource")
    old = found[0]
    copy = account.write(
        container, name, Version(old.content, dict(old.metadata), old.content_type)
    )
    account.calls.append(f"copy {source_name}?versionid={old.version_id}")
    headers = _written(copy, account)
    headers |= {"x-ms-copy-id": str(uuid.uuid4()), "x-ms-copy-status": "success"}
    return web.Response(status=202, headers=headers)


def _get(account: Account, request: web.Request, blob: Blob) -> web.Response:
    wanted_id = request.query.get("versionid")
    version = blob.current
    if wanted_id is not None:
        version = next((v for v in blob.versions if v.version_id == wanted_id), None)
    head = request.method == "HEAD"
    if version is None:
        return _error(404, "BlobNotFound", head=head)
    headers = _properties_headers(version, account, current=version is blob.current)
    if head:
        headers["Content-Length"] = str(len(version.content))
        return web.Response(headers=headers)
    size = len(version.content)
    wanted = re.fullmatch(r"bytes=(\d+)-(\d*)", request.headers.get("x-ms-range", ""))
    if not wanted:
        return web.Response(body=version.content, headers=headers)
    if request.headers.get("If-Match", version.etag) != version.etag:
        return _error(412, "ConditionNotMet")
    start = int(wanted.group(1))
    end = min(int(wanted.group(2) or size - 1), size - 1)
    headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    if account.replace_after_first_range is not None and wanted_id is None:
        other = Version(account.replace_after_first_range, version.metadata, version.content_type)
        account.replace_after_first_range = None
        blob.current = other
    return web.Response(status=206, body=version.content[start : end + 1], headers=headers)


async def _put(account: Account, request: web.Request, container: str, name: str) -> web.Response:
    comp = request.query.get("comp")
    if comp == "block":
        account.staged[(container, name, request.query["blockid"])] = await request.read()
        return web.Response(status=201, headers=_common())
    if comp == "undelete":
        blob = account.blob(container, name)
        if blob.deleted is not None:
            blob.current, blob.deleted = blob.deleted, None
            account.calls.append(f"undelete {name}")
        return web.Response(headers=_common())
    if "x-ms-copy-source" in request.headers:
        return _copy(account, request, container, name)
    content = await _commit(account, request, container, name) if comp else await request.read()
    version = Version(content, _metadata(request), _content_type(request))
    account.write(container, name, version)
    headers = _written(version, account)
    if not comp:
        headers["Content-MD5"] = base64.b64encode(hashlib.md5(content).digest()).decode()
    return web.Response(status=201, headers=headers)


def app(account: Account) -> web.Application:
    """The fake's aiohttp app: ``http://host:port/devstoreaccount1`` is the account URL."""

    async def handle(request: web.Request) -> web.StreamResponse:
        parts = request.path.split("/", 3)[2:]  # "", account, container, blob
        if request.query.get("restype") == "service":
            return web.Response(text=_service_properties(account), content_type=XML)
        container = parts[0]
        if request.query.get("restype") == "container":
            if request.query.get("comp") == "list":
                return _list_blobs(account, request, container)
            if container in account.containers:
                return _error(409, "ContainerAlreadyExists")
            account.containers[container] = {}
            return web.Response(status=201, headers=_common())
        name = parts[1]
        if request.method == "PUT":
            return await _put(account, request, container, name)
        if request.method == "DELETE":
            account.delete(container, name, request.query.get("versionid"))
            return web.Response(status=202, headers=_common())
        return _get(account, request, account.blob(container, name))

    application = web.Application(client_max_size=64 * 1024 * 1024)
    application.router.add_route("*", "/{tail:.*}", handle)
    return application
