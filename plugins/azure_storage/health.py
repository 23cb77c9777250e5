"""Health and diagnostics of the storage account.

Health checks: the container reachable with the configured credentials (created if
missing), write permission (a small probe blob written and deleted), soft delete and
versioning (a warning when either is off: a deleted or overwritten document could not be
recovered), and the last repair pass (its failures). Each check starts a background repair
pass (see :mod:`.sync`). The diagnostics dump gives the same facts as data plus the last
repair report.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hub.errors import AuthenticationError, ProviderError
from hub.model import HealthCheck, HealthReport, HealthStatus

from .client import account_name, ensure_container, service, storage_error
from .recover import soft_delete, versioning
from .sync import last_report, repair_in_background

if TYPE_CHECKING:
    from azure.storage.blob.aio import BlobServiceClient

    from hub.api import HubAPI
    from hub.model import Connection

    from .settings import AzureStorageSettings

PROBE_BLOB = ".hub-health-probe"


async def _write_probe(svc: BlobServiceClient, container: str) -> bool:
    """Write and delete a probe blob; whether the write's answer says versioning is on (its
    version is deleted too, so probes do not pile up as previous versions)."""
    blob = svc.get_blob_client(container, PROBE_BLOB)
    answer = await blob.upload_blob(b"probe", overwrite=True)
    await blob.delete_blob()
    if versioning(answer):
        await blob.delete_blob(version_id=answer["version_id"])
        return True
    return False


async def probe(settings: AzureStorageSettings, hub: HubAPI) -> dict[str, Any]:
    """The account's facts: ``reachable``, ``writable``, ``soft_delete``, ``versioning``
    (booleans, None when unknown) and ``error`` (why it is not reachable or writable).

    :raise AuthenticationError: the storage refused the credentials.
    """
    facts: dict[str, Any] = {"account": account_name(settings), "container": settings.container}
    try:
        await ensure_container(settings, hub)
        facts["reachable"] = True
        async with service(settings, hub) as svc:
            versions = await _write_probe(svc, settings.container)
            facts["writable"] = True
            facts["soft_delete"] = await soft_delete(svc)
            facts["versioning"] = versions
    except Exception as exc:
        error = storage_error(exc)
        if isinstance(error, AuthenticationError):
            raise error from None
        facts.setdefault("reachable", False)
        facts.setdefault("writable", False)
        facts["error"] = f"{error.error_class}: {error}"[:300]
    return facts


def _protection(name: str, on: bool | None) -> tuple[HealthCheck, str | None]:
    if on is None:
        return HealthCheck(name, True, "unknown"), None
    if on:
        return HealthCheck(name, True, "enabled"), None
    return HealthCheck(name, False, "disabled"), f"{name} is off"


async def diagnose(
    connection: Connection, settings: AzureStorageSettings, hub: HubAPI
) -> HealthReport:
    """The connection's health report.

    :raise AuthenticationError: the storage refused the credentials.
    """
    facts = await probe(settings, hub)
    where = f"{facts['account']}/{settings.container}"
    checks = [HealthCheck("container reachable", facts["reachable"], where)]
    if not facts["reachable"]:
        return HealthReport(HealthStatus.ERROR, f"storage unreachable: {facts['error']}", checks)
    checks.append(HealthCheck("write permission", facts["writable"], facts.get("error", "")))
    if not facts["writable"]:
        return HealthReport(HealthStatus.ERROR, f"cannot write: {facts['error']}", checks)
    warnings = []
    for name in ("soft delete", "versioning"):
        check, warning = _protection(name, facts[name.replace(" ", "_")])
        checks.append(check)
        if warning:
            warnings.append(warning)
    report = await last_report(hub, connection.id)
    failed = report["failed"] if report else 0
    detail = "never ran" if report is None else f"{failed} failed of {report['checked']}"
    checks.append(HealthCheck("documents intact", not failed, detail))
    if failed:
        warnings.append(f"{failed} document(s) missing or corrupt")
    repair_in_background(hub, settings, connection.id)
    if warnings:
        return HealthReport(HealthStatus.WARNING, "; ".join(warnings), checks)
    return HealthReport(HealthStatus.HEALTHY, f"{where} reachable and writable", checks)


async def dump(
    connection: Connection, settings: AzureStorageSettings, hub: HubAPI
) -> dict[str, Any]:
    """The troubleshooting facts of the connection, for the hub's diagnostics dump."""
    auth = "connection string" if settings.connection_string else "account key"
    out: dict[str, Any] = {
        "authentication": "azure_ad" if settings.azure_ad else auth,
        "max_upload_bytes": settings.max_upload_bytes,
        "recovery_containers": settings.recovery_containers,
    }
    try:
        out["storage"] = await probe(settings, hub)
    except ProviderError as exc:
        out["storage"] = {"reachable": False, "error": f"{exc.error_class}: {exc}"[:300]}
    out["last_repair"] = await last_report(hub, connection.id)
    return out
