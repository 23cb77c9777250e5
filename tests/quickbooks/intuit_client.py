"""Drive python-quickbooks, the Intuit ecosystem's Python client, against a QuickBooks API.

Run as a script by ``test_python_quickbooks.py`` (its own process: the tests' package is also
named ``quickbooks``, and would hide the library's). Reads a job from stdin::

    {"discovery": URL, "api": URL, "client_id": …, "client_secret": …,
     "refresh_token": …, "realm": …, "calls": [[entity, method, args, kwargs], …]}

builds the client as python-quickbooks's README does (``AuthClient`` + ``QuickBooks``, which
refreshes the token at once), makes each call and prints one JSON result per call: the
answer's objects as dicts, or the exception's class, code and detail.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from intuitlib import config as intuit_config
from intuitlib.client import AuthClient

from quickbooks import QuickBooks
from quickbooks.cdc import change_data_capture
from quickbooks.objects import (
    Account,
    Attachable,
    Bill,
    BillPayment,
    Budget,
    CompanyInfo,
    CreditMemo,
    Customer,
    Department,
    Deposit,
    Employee,
    Estimate,
    Invoice,
    Item,
    JournalEntry,
    Payment,
    PaymentMethod,
    Purchase,
    PurchaseOrder,
    RefundReceipt,
    SalesReceipt,
    TaxAgency,
    TaxCode,
    TaxRate,
    Term,
    TimeActivity,
    Transfer,
    Vendor,
    VendorCredit,
)
from quickbooks.objects.companycurrency import CompanyCurrency
from quickbooks.objects.creditcardpayment_entity import CreditCardPayment
from quickbooks.objects.exchangerate import ExchangeRate
from quickbooks.objects.recurringtransaction import RecurringTransaction
from quickbooks.objects.trackingclass import Class

CLASSES: dict[str, Any] = {
    cls.qbo_object_name: cls
    for cls in (
        Account,
        Attachable,
        Bill,
        BillPayment,
        Budget,
        Class,
        CompanyCurrency,
        CompanyInfo,
        CreditCardPayment,
        CreditMemo,
        Customer,
        Department,
        Deposit,
        Employee,
        Estimate,
        ExchangeRate,
        Invoice,
        Item,
        JournalEntry,
        Payment,
        PaymentMethod,
        Purchase,
        PurchaseOrder,
        RecurringTransaction,
        RefundReceipt,
        SalesReceipt,
        TaxAgency,
        TaxCode,
        TaxRate,
        Term,
        TimeActivity,
        Transfer,
        Vendor,
        VendorCredit,
    )
}
"""python-quickbooks's entity classes by entity name (``Class`` is its TrackingClass)."""


def client(job: dict[str, Any]) -> QuickBooks:
    """A client of the job's company, its OAuth endpoints from the job's discovery document."""
    intuit_config.DISCOVERY_URL["sandbox"] = job["discovery"]
    redirect = "https://hub.example/oauth/quickbooks/callback"
    auth = AuthClient(job["client_id"], job["client_secret"], redirect, "sandbox")
    qb = QuickBooks(
        auth_client=auth,
        refresh_token=job["refresh_token"],
        company_id=job["realm"],
        minorversion=75,
    )
    qb.sandbox_api_url_v3 = job["api"]  # the class attribute its api_url uses in "sandbox"
    return qb


def plain(value: Any) -> Any:
    """An answer as JSON: objects as dicts, lists item by item."""
    if isinstance(value, list):
        return [plain(item) for item in value]
    return value.to_dict() if hasattr(value, "to_dict") else value


def run(qb: QuickBooks, entity: str, method: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
    """One call: a class method of the entity's class, or ``cdc`` over several entities."""
    if method == "cdc":
        # python-quickbooks's CDC looks each class's objects up under its qbo_object_name, so
        # it drops CreditCardPayment changes, which Intuit names CreditCardPaymentTxn (its
        # query and read use qbo_json_object_name and find them).
        answer = change_data_capture([CLASSES[name] for name in args[0]], args[1], qb=qb)
        return {name: plain(list(getattr(answer, name, []))) for name in args[0]}
    return plain(getattr(CLASSES[entity], method)(*args, qb=qb, **kwargs))


def main() -> None:
    """Run the job on stdin; print the results."""
    job = json.load(sys.stdin)
    qb = client(job)
    results = []
    for entity, method, args, kwargs in job["calls"]:
        try:
            results.append({"ok": run(qb, entity, method, args, kwargs)})
        except Exception as exc:  # reported to the test, which says what it expects
            detail = getattr(exc, "detail", "") or str(exc)
            code = getattr(exc, "error_code", None)
            results.append({"error": type(exc).__name__, "code": code, "detail": detail})
    json.dump(results, sys.stdout, default=str)


if __name__ == "__main__":
    main()
