"""Deterministic QuickBooks Online company data for the sandbox (package private).

Every entity is generated on demand from ``(company seed, entity, index)``, so a company of a
million transactions costs no memory until a page of it is served. Field names and enumerations
follow Intuit's v3 XSD (``Finance.xsd``); the JSON shapes follow Intuit's documented samples.
Mutations made by tests are kept as small per-entity overrides on top of the generated rows.
"""

from __future__ import annotations

import copy
import re
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._sandbox_query import QueryPlan

JSON = dict[str, Any]

LIST_ENTITIES = (
    "Account",
    "Customer",
    "Vendor",
    "Item",
    "Employee",
    "Class",
    "Department",
    "TaxCode",
    "Term",
    "PaymentMethod",
    "TaxRate",
    "CompanyCurrency",
    "Budget",
)
TXN_ENTITIES = (
    "Invoice",
    "Payment",
    "SalesReceipt",
    "CreditMemo",
    "RefundReceipt",
    "Estimate",
    "Bill",
    "BillPayment",
    "Purchase",
    "PurchaseOrder",
    "VendorCredit",
    "Deposit",
    "Transfer",
    "JournalEntry",
    "TimeActivity",
    "CreditCardPayment",
)
OTHER_ENTITIES = ("TaxAgency", "Attachable", "ExchangeRate", "RecurringTransaction")
"""Entities that are neither transactions nor lists with an Active flag."""
ENTITIES = ("CompanyInfo", *LIST_ENTITIES, *TXN_ENTITIES, *OTHER_ENTITIES)
BY_LOWER = {name.lower(): name for name in ENTITIES}
# Intuit's CDC page: "You can use the CDC operation for all API entities except the following:
# JournalCode, TaxAgency, TimeActivity, TaxCode, TaxRate"
# (https://developer.intuit.com/app/developer/qbo/docs/learn/explore-the-quickbooks-online-api/change-data-capture).
CDC_UNSUPPORTED = frozenset({"TaxCode", "TaxAgency", "TimeActivity", "TaxRate"})
ANSWER_NAMES = {"CreditCardPayment": "CreditCardPaymentTxn"}
"""Entities whose objects Intuit names after their XSD type, not their endpoint: a
``select * from CreditCardPayment`` answers ``{"QueryResponse": {"CreditCardPaymentTxn": …}}``."""
KEYLESS = frozenset({"ExchangeRate"})
"""Entities without an Id (an exchange rate is keyed by SourceCurrencyCode and AsOfDate)."""
TEMPLATES = ("Invoice", "Bill")
"""The transactions the generated RecurringTransaction rows are templates of, in turn."""


def answer_name(entity: str) -> str:
    """The key Intuit gives ``entity``'s objects in query, read and CDC answers."""
    return ANSWER_NAMES.get(entity, entity)


_TXN_WEIGHTS = {
    "Invoice": 30,
    "Payment": 18,
    "SalesReceipt": 6,
    "CreditMemo": 2,
    "RefundReceipt": 1,
    "Estimate": 4,
    "Bill": 12,
    "BillPayment": 9,
    "Purchase": 10,
    "PurchaseOrder": 2,
    "VendorCredit": 1,
    "Deposit": 3,
    "Transfer": 1,
    "JournalEntry": 1,
}
_LIST_DEFAULTS = {
    "Account": 20,
    "Customer": 30,
    "Vendor": 15,
    "Item": 12,
    "Employee": 5,
    "Class": 4,
    "Department": 3,
    "TaxCode": 2,
    "Term": 4,
    "PaymentMethod": 5,
}
_FIXED_DEFAULTS = {
    "TaxRate": 3,
    "TaxAgency": 2,
    "CompanyCurrency": 3,
    "ExchangeRate": 12,
    "Budget": 2,
    "TimeActivity": 20,
    "CreditCardPayment": 6,
    "Attachable": 8,
    "RecurringTransaction": 4,
}
"""Rows of the entities a company's size does not scale (a benchmark's company is big in
transactions, not in tax agencies or exchange rates)."""
# Minimums keep every generated reference (CustomerRef, ItemRef, the chart of accounts) valid.
MIN_COUNTS = {"Account": 20, "Customer": 1, "Vendor": 1, "Item": 1, "Term": 1, "PaymentMethod": 1}
MIN_COUNTS |= {"Employee": 1, "TaxRate": 1, "TaxAgency": 1, "Invoice": 1, "Bill": 1}


def scaled_counts(transactions: int) -> dict[str, int]:
    """Counts per entity for a company with about ``transactions`` transaction rows in total."""
    total_weight = sum(_TXN_WEIGHTS.values())
    counts = {name: max(1, transactions * w // total_weight) for name, w in _TXN_WEIGHTS.items()}
    counts["Invoice"] += transactions - sum(counts.values())
    scale = max(1, transactions // 400)
    for name, base in _LIST_DEFAULTS.items():
        grows = name in ("Customer", "Vendor", "Item", "Class", "Department")
        counts[name] = base * scale if grows else base
    return {**counts, **_FIXED_DEFAULTS}


def default_counts() -> dict[str, int]:
    """The small, test-friendly company: a few hundred transactions."""
    return scaled_counts(400)


@dataclass(frozen=True)
class CompanySpec:
    """One generated QuickBooks company (realm).

    ``counts`` maps entity names to how many rows to generate (missing names use
    :func:`default_counts`); ``seed`` changes every generated value deterministically.
    """

    realm_id: str
    name: str = "Sandbox Company"
    counts: Mapping[str, int] = field(default_factory=default_counts)
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.realm_id.isdigit():
            raise ValueError(f"realm_id must be a numeric string, got {self.realm_id!r}")
        unknown = set(self.counts) - set(ENTITIES)
        if unknown:
            raise ValueError(f"unknown entities in counts: {sorted(unknown)}")

    def count(self, entity: str) -> int:
        """How many rows of ``entity`` the company starts with."""
        if entity == "CompanyInfo":
            return 1
        wanted = self.counts.get(entity, default_counts()[entity])
        return max(wanted, MIN_COUNTS.get(entity, 0))


_CACHE_SIZE = 200_000


# --------------------------------------------------------------------------- randomness

_MASK = (1 << 64) - 1


def _mix(x: int) -> int:
    """splitmix64: a fast, well-spread 64-bit hash."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


class _Rand:
    """A tiny deterministic stream of numbers for one generated row."""

    __slots__ = ("state",)

    def __init__(self, seed: int) -> None:
        self.state = seed

    def below(self, n: int) -> int:
        """A number in ``[0, n)``."""
        self.state = _mix(self.state)
        return self.state % n

    def pick(self, options: tuple[Any, ...]) -> Any:
        """One of ``options``."""
        return options[self.below(len(options))]


def _salt(name: str) -> int:
    return _mix(sum(ord(c) << (8 * (i % 7)) for i, c in enumerate(name)))


# --------------------------------------------------------------------------- vocabulary

_FIRST: tuple[str, ...] = ("Amy", "Bill", "Carlos", "Dana", "Elena", "Farid", "Grace", "Hiro")
_FIRST += ("Ines", "Jamal", "Kara", "Liam", "Mona", "Nikhil", "Olga", "Pedro", "Rosa", "Tara")
_LAST: tuple[str, ...] = ("Abbott", "Baker", "Chen", "Diaz", "Evans", "Fischer", "Garcia")
_LAST += ("Hughes", "Iyer", "Jensen", "Lopez", "Murphy", "Okafor", "Patel", "Rossi", "Walsh")
_CUSTOMER_WORDS = (
    ("Cedar", "Harbor", "Summit", "Maple", "Granite", "Willow", "Beacon", "Prairie", "Juniper"),
    ("Landscaping", "Dental", "Bakery", "Logistics", "Plumbing", "Architects", "Fitness"),
    ("LLC", "Inc.", "Co.", "Group", "Partners", "Studio"),
)
_VENDOR_WORDS = (
    ("Acme", "Apex", "Brightline", "Coastal", "Delta", "Evergreen", "Keystone", "Pioneer"),
    ("Office Supply", "Telecom", "Insurance", "Utilities", "Software", "Staffing", "Freight"),
)
_STREETS = ("Main St", "Oak Ave", "Pine Rd", "Elm St", "Cedar Ln", "Lake Dr", "Park Blvd")
_CITIES = (
    ("Mountain View", "CA", "94043"),
    ("Austin", "TX", "78701"),
    ("Denver", "CO", "80202"),
    ("Portland", "OR", "97201"),
    ("Seattle", "WA", "98101"),
    ("Madison", "WI", "53703"),
    ("Raleigh", "NC", "27601"),
)
# (Name, AccountType, AccountSubType, Classification); positions are referenced below.
_CHART = (
    ("Checking", "Bank", "Checking", "Asset"),
    ("Savings", "Bank", "Savings", "Asset"),
    ("Accounts Receivable (A/R)", "Accounts Receivable", "AccountsReceivable", "Asset"),
    ("Undeposited Funds", "Other Current Asset", "UndepositedFunds", "Asset"),
    ("Inventory Asset", "Other Current Asset", "Inventory", "Asset"),
    ("Accounts Payable (A/P)", "Accounts Payable", "AccountsPayable", "Liability"),
    ("Mastercard", "Credit Card", "CreditCard", "Liability"),
    ("Opening Balance Equity", "Equity", "OpeningBalanceEquity", "Equity"),
    ("Services", "Income", "ServiceFeeIncome", "Revenue"),
    ("Sales of Product Income", "Income", "SalesOfProductIncome", "Revenue"),
    ("Cost of Goods Sold", "Cost of Goods Sold", "SuppliesMaterialsCogs", "Expense"),
    ("Advertising", "Expense", "AdvertisingPromotional", "Expense"),
    ("Rent or Lease", "Expense", "RentOrLeaseOfBuildings", "Expense"),
    ("Utilities", "Expense", "Utilities", "Expense"),
    ("Office Expenses", "Expense", "OfficeGeneralAdministrativeExpenses", "Expense"),
    ("Legal & Professional Fees", "Expense", "LegalProfessionalFees", "Expense"),
    ("Insurance", "Expense", "Insurance", "Expense"),
    ("Travel", "Expense", "Travel", "Expense"),
    ("Meals and Entertainment", "Expense", "EntertainmentMeals", "Expense"),
    ("Bank Charges", "Expense", "BankCharges", "Expense"),
)
_CHECKING, _SAVINGS, _UNDEPOSITED, _AP, _CARD, _SERVICES = 0, 1, 3, 5, 6, 8
_EXPENSE_ACCOUNTS = tuple(range(11, 20))
_ITEMS = (
    ("Bookkeeping", "Service", 12500),
    ("Tax Preparation", "Service", 45000),
    ("Payroll Services", "Service", 9500),
    ("Advisory Retainer", "Service", 150000),
    ("Consulting Hour", "Service", 17500),
    ("Software Subscription", "NonInventory", 4900),
    ("Training Session", "Service", 30000),
    ("Filing Fee", "NonInventory", 7500),
)
_TERMS = (("Net 30", 30), ("Net 15", 15), ("Due on receipt", 0), ("Net 60", 60))
_METHODS = (
    ("Cash", "NON_CREDIT_CARD"),
    ("Check", "NON_CREDIT_CARD"),
    ("Visa", "CREDIT_CARD"),
    ("MasterCard", "CREDIT_CARD"),
    ("American Express", "CREDIT_CARD"),
    ("Discover", "CREDIT_CARD"),
)

_CURRENCIES = (
    ("EUR", "Euro", 1.0825),
    ("CAD", "Canadian Dollar", 0.7342),
    ("GBP", "British Pound Sterling", 1.2675),
    ("MXN", "Mexican Peso", 0.0547),
    ("AUD", "Australian Dollar", 0.6631),
    ("JPY", "Japanese Yen", 0.0064),
)
_AGENCIES = (
    "California Department of Tax and Fee Administration",
    "Texas Comptroller of Public Accounts",
    "Colorado Department of Revenue",
    "Oregon Department of Revenue",
    "Washington Department of Revenue",
)
_TAX_PERCENT = (7.25, 6.25, 2.9, 0.0, 6.5)
_ATTACHED = (("Invoice", "application/pdf", "pdf"), ("Bill", "image/jpeg", "jpg"))


def _usd() -> JSON:
    return {"value": "USD", "name": "United States Dollar"}


def _nth(options: tuple[Any, ...], i: int) -> tuple[Any, int]:
    """The ``i``-th of ``options`` cycling, and which round of the cycle it is (0 first)."""
    return options[i % len(options)], i // len(options)


def _numbered(name: str, round_: int) -> str:
    return name if round_ == 0 else f"{name} {round_ + 1}"


def _money(cents: int) -> float:
    return cents / 100


# --------------------------------------------------------------------------- generation


class Generator:
    """Builds the JSON body of any entity of one company from its index."""

    def __init__(self, spec: CompanySpec, tz: timezone, first_day: date) -> None:
        self.spec = spec
        self.tz = tz
        self.first_day = first_day
        self.seed = _mix(spec.seed ^ _salt(spec.realm_id))
        self.count = {name: spec.count(name) for name in ENTITIES}
        self._salts = {name: _salt(name) for name in ENTITIES}
        self._cache: dict[tuple[str, str, int], Any] = {}
        self._builders: dict[str, Callable[[int, _Rand, date], JSON]] = {
            name: getattr(self, f"_build_{name.lower()}") for name in ENTITIES
        }

    def rand(self, entity: str, index: int, stream: int = 0) -> _Rand:
        """The deterministic number stream ``stream`` of one row."""
        return _Rand(_mix(self.seed ^ self._salts[entity] ^ (index * 0x9E37 + stream * 0x51)))

    def body(self, entity: str, index: int, created: int) -> JSON:
        """The entity's own fields (everything but Id, SyncToken, MetaData, domain, sparse)."""
        rand = self.rand(entity, index)
        day = datetime.fromtimestamp(created, self.tz).date() - timedelta(days=rand.below(4))
        return self._builders[entity](index, rand, day)

    # ---- names and references

    def _memo(self, kind: str, entity: str, index: int, make: Callable[[], Any]) -> Any:
        """Cache values about list rows that many transactions repeat (treat as read-only)."""
        key = (kind, entity, index)
        value = self._cache.get(key)
        if value is None:
            if len(self._cache) >= _CACHE_SIZE:
                self._cache.clear()
            value = self._cache[key] = make()
        return value

    def ref(self, entity: str, index: int) -> JSON:
        """A ReferenceType to a list entity row: ``{"value": Id, "name": ...}``."""
        make = lambda: {"value": str(index + 1), "name": self.display_name(entity, index)}  # noqa: E731
        return dict(self._memo("ref", entity, index, make))

    def related(self, entity: str, index: int, target: str) -> int:
        """The ``target`` row a transaction row points at (stable, so links agree)."""
        return self.rand(entity, index, 3).below(self.count[target])

    def display_name(self, entity: str, index: int) -> str:
        """The unique name of a list entity row."""
        if entity in _WORDS:
            parts, round_ = self._combo(entity, index)
            return _numbered(" ".join(parts), round_)
        if entity == "Account":
            return _account_row(index)[0]
        name, round_ = _nth(_NAMES[entity], index)
        return _numbered(str(name[0] if isinstance(name, tuple) else name), round_)

    def _combo(self, entity: str, index: int) -> tuple[list[str], int]:
        words = _WORDS[entity]
        size = 1
        for part in words:
            size *= len(part)
        # A stride coprime with the number of combinations visits each of them once per round
        # (a stride of 7 alone repeated names when 7 divides it, and QuickBooks display names
        # are unique).
        stride = next(p for p in (7, 11, 13, 17, 19, 23, 29, 31) if size % p)
        slot = (index * stride + self.seed) % size
        out = []
        for part in words:
            out.append(part[slot % len(part)])
            slot //= len(part)
        return out, index // size

    def person(self, entity: str, index: int) -> tuple[str, str]:
        """Given and family name of a row's contact person."""
        if entity == "Employee":
            parts, _ = self._combo(entity, index)
            return parts[0], parts[1]
        rand = self.rand(entity, index, 1)
        return rand.pick(_FIRST), rand.pick(_LAST)

    def email(self, entity: str, index: int) -> str:
        """The primary e-mail address of a customer, vendor or employee."""
        return str(self._memo("email", entity, index, lambda: self._email(entity, index)))

    def _email(self, entity: str, index: int) -> str:
        given, family = self.person(entity, index)
        domain = re.sub(r"[^a-z0-9]+", "", self.display_name(entity, index).lower())
        return f"{given.lower()}.{family.lower()}@{domain}.example.com"

    def address(self, entity: str, index: int) -> JSON:
        """The PhysicalAddress of a row (a US street address)."""
        return dict(self._memo("address", entity, index, lambda: self._address(entity, index)))

    def _address(self, entity: str, index: int) -> JSON:
        rand = self.rand(entity, index, 2)
        city, state, postal = rand.pick(_CITIES)
        return {
            "Id": str(index + 100),
            "Line1": f"{rand.below(9800) + 100} {rand.pick(_STREETS)}",
            "City": city,
            "CountrySubDivisionCode": state,
            "PostalCode": postal,
        }

    @staticmethod
    def phone(rand: _Rand) -> JSON:
        """A TelephoneNumber."""
        return {"FreeFormNumber": f"({rand.below(800) + 200}) 555-{rand.below(9000) + 1000}"}

    # ---- list entities

    def _build_companyinfo(self, index: int, rand: _Rand, day: date) -> JSON:
        addr = self.address("CompanyInfo", index)
        return {
            "CompanyName": self.spec.name,
            "LegalName": f"{self.spec.name} LLC",
            "CompanyAddr": addr,
            "CustomerCommunicationAddr": addr,
            "LegalAddr": addr,
            "PrimaryPhone": self.phone(rand),
            "CompanyStartDate": (day - timedelta(days=3 * 365)).isoformat(),
            "FiscalYearStartMonth": "January",
            "Country": "US",
            "Email": {"Address": f"books@realm{self.spec.realm_id}.example.com"},
            "WebAddr": {},
            "SupportedLanguages": "en",
            "NameValue": [
                {"Name": "NeoEnabled", "Value": "true"},
                {"Name": "IndustryType", "Value": "Accounting, Tax Preparation, Payroll"},
                {"Name": "OfferingSku", "Value": "QuickBooks Online Plus"},
            ],
        }

    def _build_account(self, index: int, rand: _Rand, day: date) -> JSON:
        name, account_type, sub_type, classification = _account_row(index)
        balance = _money(rand.below(5_000_000)) if classification in ("Asset", "Liability") else 0
        return {
            "Name": name,
            "SubAccount": False,
            "FullyQualifiedName": name,
            "Active": True,
            "Classification": classification,
            "AccountType": account_type,
            "AccountSubType": sub_type,
            "CurrentBalance": balance,
            "CurrentBalanceWithSubAccounts": balance,
            "CurrencyRef": _usd(),
        }

    def _party(self, entity: str, index: int, rand: _Rand) -> JSON:
        name = self.display_name(entity, index)
        given, family = self.person(entity, index)
        return {
            "GivenName": given,
            "FamilyName": family,
            "DisplayName": name,
            "PrintOnCheckName": name,
            "Active": True,
            "PrimaryPhone": self.phone(rand),
            "PrimaryEmailAddr": {"Address": self.email(entity, index)},
        }

    def _build_customer(self, index: int, rand: _Rand, day: date) -> JSON:
        balance = _money(rand.below(900_000)) if rand.below(3) == 0 else 0
        name = self.display_name("Customer", index)
        return {
            **self._party("Customer", index, rand),
            "CompanyName": name,
            "FullyQualifiedName": name,
            "BillAddr": self.address("Customer", index),
            "ShipAddr": self.address("Customer", index),
            "Taxable": False,
            "Job": False,
            "BillWithParent": False,
            "Balance": balance,
            "BalanceWithJobs": balance,
            "CurrencyRef": _usd(),
            "PreferredDeliveryMethod": rand.pick(("Email", "Print", "None")),
            "SalesTermRef": self.ref("Term", rand.below(self.count["Term"])),
        }

    def _build_vendor(self, index: int, rand: _Rand, day: date) -> JSON:
        return {
            **self._party("Vendor", index, rand),
            "CompanyName": self.display_name("Vendor", index),
            "BillAddr": self.address("Vendor", index),
            "Balance": _money(rand.below(400_000)) if rand.below(2) else 0,
            "Vendor1099": rand.below(4) == 0,
            "AcctNum": str(rand.below(900_000) + 100_000),
            "CurrencyRef": _usd(),
            "TermRef": self.ref("Term", rand.below(self.count["Term"])),
        }

    def _build_employee(self, index: int, rand: _Rand, day: date) -> JSON:
        return {
            **self._party("Employee", index, rand),
            "PrimaryAddr": self.address("Employee", index),
            "EmployeeNumber": f"E{index + 1:04d}",
            "BillableTime": False,
            "HiredDate": (day - timedelta(days=rand.below(2000))).isoformat(),
        }

    def _build_item(self, index: int, rand: _Rand, day: date) -> JSON:
        name = self.display_name("Item", index)
        item_type = str(_nth(_ITEMS, index)[0][1])
        return {
            "Name": name,
            "Description": f"{name} ({item_type.lower()})",
            "Active": True,
            "FullyQualifiedName": name,
            "Taxable": False,
            "UnitPrice": _money(_item_price(index)),
            "Type": item_type,
            "Sku": f"SKU-{index + 1:05d}",
            "IncomeAccountRef": self.ref("Account", _SERVICES),
            "PurchaseCost": 0,
            "TrackQtyOnHand": False,
        }

    def _named(self, entity: str, index: int, sub_flag: str) -> JSON:
        name = self.display_name(entity, index)
        return {"Name": name, sub_flag: False, "FullyQualifiedName": name, "Active": True}

    def _build_class(self, index: int, rand: _Rand, day: date) -> JSON:
        return self._named("Class", index, "SubClass")

    def _build_department(self, index: int, rand: _Rand, day: date) -> JSON:
        return self._named("Department", index, "SubDepartment")

    def _build_taxcode(self, index: int, rand: _Rand, day: date) -> JSON:
        name = self.display_name("TaxCode", index)
        rate = self.ref("TaxRate", index % self.count["TaxRate"])
        return {
            "Name": name,
            "Description": f"{name} sales tax",
            "Active": True,
            "Hidden": False,
            "Taxable": True,
            "TaxGroup": True,
            "SalesTaxRateList": {
                "TaxRateDetail": [
                    {"TaxRateRef": rate, "TaxTypeApplicable": "TaxOnAmount", "TaxOrder": 0}
                ]
            },
            "PurchaseTaxRateList": {"TaxRateDetail": []},
        }

    def _build_term(self, index: int, rand: _Rand, day: date) -> JSON:
        (name, days), round_ = _nth(_TERMS, index)
        return {
            "Name": _numbered(name, round_),
            "Active": True,
            "Type": "STANDARD",
            "DueDays": days + round_,
            "DiscountPercent": 0,
            "DiscountDays": 0,
        }

    def _build_paymentmethod(self, index: int, rand: _Rand, day: date) -> JSON:
        (name, kind), round_ = _nth(_METHODS, index)
        return {"Name": _numbered(name, round_), "Active": True, "Type": kind}

    # ---- transactions

    def _sales_lines(self, rand: _Rand) -> tuple[list[JSON], int]:
        lines: list[JSON] = []
        total = 0
        for number in range(1, rand.below(3) + 2):
            item = rand.below(self.count["Item"])
            qty = rand.below(8) + 1
            price = _item_price(item)
            total += qty * price
            item_ref = self.ref("Item", item)
            detail = {
                "ItemRef": item_ref,
                "UnitPrice": _money(price),
                "Qty": qty,
                "ItemAccountRef": self.ref("Account", _SERVICES),
                "TaxCodeRef": {"value": "NON"},
            }
            lines.append(
                {
                    "Id": str(number),
                    "LineNum": number,
                    "Description": item_ref["name"],
                    "Amount": _money(qty * price),
                    "DetailType": "SalesItemLineDetail",
                    "SalesItemLineDetail": detail,
                }
            )
        subtotal = {"Amount": _money(total), "DetailType": "SubTotalLineDetail"}
        lines.append({**subtotal, "SubTotalLineDetail": {}})
        return lines, total

    def _expense_lines(self, rand: _Rand, by_item: bool) -> tuple[list[JSON], int]:
        lines: list[JSON] = []
        total = 0
        for number in range(1, rand.below(2) + 2):
            line: JSON = {"Id": str(number)}
            if by_item:
                item = rand.below(self.count["Item"])
                qty = rand.below(10) + 1
                amount = qty * _item_price(item) // 2
                line["DetailType"] = "ItemBasedExpenseLineDetail"
                line["ItemBasedExpenseLineDetail"] = {
                    "ItemRef": self.ref("Item", item),
                    "UnitPrice": _money(_item_price(item) // 2),
                    "Qty": qty,
                    "BillableStatus": "NotBillable",
                    "TaxCodeRef": {"value": "NON"},
                }
            else:
                amount = rand.below(250_000) + 500
                account = rand.pick(_EXPENSE_ACCOUNTS)
                line["Description"] = _CHART[account][0]
                line["DetailType"] = "AccountBasedExpenseLineDetail"
                line["AccountBasedExpenseLineDetail"] = {
                    "AccountRef": self.ref("Account", account),
                    "BillableStatus": "NotBillable",
                    "TaxCodeRef": {"value": "NON"},
                }
            line["Amount"] = _money(amount)
            lines.append(line)
            total += amount
        return lines, total

    def _header(self, index: int, day: date) -> JSON:
        return {"DocNumber": str(1001 + index), "TxnDate": day.isoformat(), "CurrencyRef": _usd()}

    def _sales(self, entity: str, index: int, rand: _Rand, day: date) -> tuple[JSON, int]:
        customer = self.related(entity, index, "Customer")
        lines, total = self._sales_lines(rand)
        doc = {
            **self._header(index, day),
            "LinkedTxn": [],
            "Line": lines,
            "TxnTaxDetail": {"TotalTax": 0},
            "CustomerRef": self.ref("Customer", customer),
            "CustomerMemo": {"value": "Thank you for your business."},
            "BillAddr": self.address("Customer", customer),
            "BillEmail": {"Address": self.email("Customer", customer)},
            "TotalAmt": _money(total),
            "ApplyTaxAfterDiscount": False,
            "PrintStatus": "NotSet",
            "EmailStatus": rand.pick(("NotSet", "EmailSent", "NeedToSend")),
        }
        return doc, total

    def _build_invoice(self, index: int, rand: _Rand, day: date) -> JSON:
        doc, total = self._sales("Invoice", index, rand, day)
        term = self.related("Invoice", index, "Term")
        return {
            **doc,
            "SalesTermRef": self.ref("Term", term),
            "DueDate": (day + timedelta(days=_nth(_TERMS, term)[0][1])).isoformat(),
            "Balance": _money(total) if rand.below(5) < 2 else 0,
            "Deposit": 0,
            "AllowOnlineCreditCardPayment": False,
            "AllowOnlineACHPayment": rand.below(2) == 1,
        }

    def _build_salesreceipt(self, index: int, rand: _Rand, day: date) -> JSON:
        doc, _ = self._sales("SalesReceipt", index, rand, day)
        method = self.related("SalesReceipt", index, "PaymentMethod")
        return {
            **doc,
            "Balance": 0,
            "PaymentMethodRef": self.ref("PaymentMethod", method),
            "DepositToAccountRef": self.ref("Account", _UNDEPOSITED),
        }

    def _build_creditmemo(self, index: int, rand: _Rand, day: date) -> JSON:
        doc, total = self._sales("CreditMemo", index, rand, day)
        remaining = _money(total) if rand.below(2) else 0
        return {**doc, "Balance": remaining, "RemainingCredit": remaining}

    def _build_refundreceipt(self, index: int, rand: _Rand, day: date) -> JSON:
        doc, _ = self._sales("RefundReceipt", index, rand, day)
        method = self.related("RefundReceipt", index, "PaymentMethod")
        return {
            **doc,
            "Balance": 0,
            "PaymentMethodRef": self.ref("PaymentMethod", method),
            "DepositToAccountRef": self.ref("Account", _CHECKING),
        }

    def _build_estimate(self, index: int, rand: _Rand, day: date) -> JSON:
        doc, _ = self._sales("Estimate", index, rand, day)
        return {
            **doc,
            "TxnStatus": rand.pick(("Pending", "Accepted", "Closed", "Rejected")),
            "ExpirationDate": (day + timedelta(days=30)).isoformat(),
        }

    def _build_payment(self, index: int, rand: _Rand, day: date) -> JSON:
        invoice = index % self.count["Invoice"]
        customer = self.related("Invoice", invoice, "Customer")
        amount = _money(rand.below(300_000) + 1_000)
        method = self.related("Payment", index, "PaymentMethod")
        link = {"TxnId": str(invoice + 1), "TxnType": "Invoice"}
        return {
            "TxnDate": day.isoformat(),
            "CurrencyRef": _usd(),
            "Line": [{"Amount": amount, "LinkedTxn": [link]}],
            "CustomerRef": self.ref("Customer", customer),
            "DepositToAccountRef": self.ref("Account", _UNDEPOSITED),
            "PaymentMethodRef": self.ref("PaymentMethod", method),
            "PaymentRefNum": str(5000 + index),
            "TotalAmt": amount,
            "UnappliedAmt": 0,
            "ProcessPayment": False,
        }

    def _vendor_doc(self, entity: str, index: int, rand: _Rand, day: date) -> JSON:
        vendor = self.related(entity, index, "Vendor")
        lines, total = self._expense_lines(rand, by_item=entity == "PurchaseOrder")
        return {
            **self._header(index, day),
            "Line": lines,
            "VendorRef": self.ref("Vendor", vendor),
            "APAccountRef": self.ref("Account", _AP),
            "TotalAmt": _money(total),
        }

    def _build_bill(self, index: int, rand: _Rand, day: date) -> JSON:
        doc = self._vendor_doc("Bill", index, rand, day)
        term = self.related("Bill", index, "Term")
        return {
            **doc,
            "SalesTermRef": self.ref("Term", term),
            "DueDate": (day + timedelta(days=_nth(_TERMS, term)[0][1])).isoformat(),
            "Balance": doc["TotalAmt"] if rand.below(3) == 0 else 0,
        }

    def _build_vendorcredit(self, index: int, rand: _Rand, day: date) -> JSON:
        doc = self._vendor_doc("VendorCredit", index, rand, day)
        return {**doc, "Balance": doc["TotalAmt"] if rand.below(2) else 0}

    def _build_purchaseorder(self, index: int, rand: _Rand, day: date) -> JSON:
        doc = self._vendor_doc("PurchaseOrder", index, rand, day)
        return {**doc, "POStatus": rand.pick(("Open", "Closed")), "EmailStatus": "NotSet"}

    def _build_billpayment(self, index: int, rand: _Rand, day: date) -> JSON:
        bill = index % self.count["Bill"]
        amount = _money(rand.below(250_000) + 500)
        check = {"BankAccountRef": self.ref("Account", _CHECKING), "PrintStatus": "NeedToPrint"}
        link = {"TxnId": str(bill + 1), "TxnType": "Bill"}
        return {
            **self._header(index, day),
            "Line": [{"Amount": amount, "LinkedTxn": [link]}],
            "VendorRef": self.ref("Vendor", self.related("Bill", bill, "Vendor")),
            "PayType": "Check",
            "CheckPayment": check,
            "TotalAmt": amount,
        }

    def _build_purchase(self, index: int, rand: _Rand, day: date) -> JSON:
        lines, total = self._expense_lines(rand, by_item=False)
        payment_type = rand.pick(("Cash", "Check", "CreditCard"))
        vendor = self.related("Purchase", index, "Vendor")
        return {
            **self._header(index, day),
            "Line": lines,
            "AccountRef": self.ref("Account", _CARD if payment_type == "CreditCard" else _CHECKING),
            "PaymentType": payment_type,
            "EntityRef": {**self.ref("Vendor", vendor), "type": "Vendor"},
            "Credit": False,
            "TotalAmt": _money(total),
            "PrintStatus": "NotSet",
        }

    def _build_deposit(self, index: int, rand: _Rand, day: date) -> JSON:
        amount = _money(rand.below(1_000_000) + 5_000)
        method = self.related("Deposit", index, "PaymentMethod")
        detail = {
            "AccountRef": self.ref("Account", _SERVICES),
            "PaymentMethodRef": self.ref("PaymentMethod", method),
        }
        line = {"Id": "1", "LineNum": 1, "Amount": amount, "DetailType": "DepositLineDetail"}
        return {
            "TxnDate": day.isoformat(),
            "CurrencyRef": _usd(),
            "Line": [{**line, "DepositLineDetail": detail}],
            "DepositToAccountRef": self.ref("Account", _CHECKING),
            "TotalAmt": amount,
        }

    def _build_transfer(self, index: int, rand: _Rand, day: date) -> JSON:
        return {
            "TxnDate": day.isoformat(),
            "CurrencyRef": _usd(),
            "FromAccountRef": self.ref("Account", _CHECKING),
            "ToAccountRef": self.ref("Account", _SAVINGS),
            "Amount": _money(rand.below(2_000_000) + 10_000),
        }

    def _build_journalentry(self, index: int, rand: _Rand, day: date) -> JSON:
        amount = _money(rand.below(500_000) + 100)
        lines = [
            self._journal_line(0, "Debit", rand.pick(_EXPENSE_ACCOUNTS), amount),
            self._journal_line(1, "Credit", _CHECKING, amount),
        ]
        return {
            **self._header(index, day),
            "Adjustment": False,
            "Line": lines,
            "TotalAmt": amount,
        }

    def _journal_line(self, number: int, posting: str, account: int, amount: float) -> JSON:
        detail = {"PostingType": posting, "AccountRef": self.ref("Account", account)}
        return {
            "Id": str(number),
            "Description": f"Reclassification ({posting.lower()})",
            "Amount": amount,
            "DetailType": "JournalEntryLineDetail",
            "JournalEntryLineDetail": detail,
        }

    def _build_taxagency(self, index: int, rand: _Rand, day: date) -> JSON:
        return {
            "DisplayName": self.display_name("TaxAgency", index),
            "TaxRegistrationNumber": f"SR-{rand.below(90_000_000) + 10_000_000}",
            "TaxTrackedOnSales": True,
            "TaxTrackedOnPurchases": False,
        }

    def _build_taxrate(self, index: int, rand: _Rand, day: date) -> JSON:
        percent, _ = _nth(_TAX_PERCENT, index)
        since = datetime.combine(self.first_day, datetime.min.time(), self.tz).isoformat()
        return {
            "Name": self.display_name("TaxRate", index),
            "Description": "Sales Tax",
            "Active": True,
            "RateValue": percent,
            "AgencyRef": self.ref("TaxAgency", index % self.count["TaxAgency"]),
            "SpecialTaxType": "NONE",
            "DisplayType": "ReadOnly",
            "EffectiveTaxRate": [{"RateValue": percent, "EffectiveDate": since}],
        }

    def _build_companycurrency(self, index: int, rand: _Rand, day: date) -> JSON:
        (code, name, _), round_ = _nth(_CURRENCIES, index)
        return {"Code": code, "Name": _numbered(name, round_), "Active": True}

    def _build_exchangerate(self, index: int, rand: _Rand, day: date) -> JSON:
        # One rate a week per company currency, every (currency, date) once.
        currencies = max(1, min(self.count["CompanyCurrency"], len(_CURRENCIES)))
        code, _, rate = _CURRENCIES[index % currencies]
        week = self.first_day + timedelta(weeks=index // currencies)
        return {
            "SourceCurrencyCode": code,
            "TargetCurrencyCode": "USD",
            "Rate": round(rate * (1 + (rand.below(400) - 200) / 10_000), 6),
            "AsOfDate": week.isoformat(),
        }

    def _build_budget(self, index: int, rand: _Rand, day: date) -> JSON:
        year = day.year - index // len(_NAMES["Budget"])
        accounts = (_SERVICES, *_EXPENSE_ACCOUNTS[:3])
        details = [
            {
                "BudgetDate": date(year, month, 1).isoformat(),
                "Amount": _money(rand.below(1_000_000) + 10_000),
                "AccountRef": self.ref("Account", account),
            }
            for account in accounts
            for month in range(1, 13)
        ]
        return {
            "Name": self.display_name("Budget", index),
            "StartDate": date(year, 1, 1).isoformat(),
            "EndDate": date(year, 12, 31).isoformat(),
            "BudgetType": "ProfitAndLoss",
            "BudgetEntryType": "Monthly",
            "Active": True,
            "BudgetDetail": details,
        }

    def _build_timeactivity(self, index: int, rand: _Rand, day: date) -> JSON:
        item = self.related("TimeActivity", index, "Item")
        hours = rand.below(8) + 1
        return {
            "TxnDate": day.isoformat(),
            "NameOf": "Employee",
            "EmployeeRef": self.ref("Employee", self.related("TimeActivity", index, "Employee")),
            "CustomerRef": self.ref("Customer", self.related("TimeActivity", index, "Customer")),
            "ItemRef": self.ref("Item", item),
            "BillableStatus": rand.pick(("Billable", "NotBillable", "HasBeenBilled")),
            "Taxable": False,
            "HourlyRate": _money(_item_price(item)),
            "Hours": hours,
            "Minutes": rand.pick((0, 15, 30, 45)),
            "Description": f"{self.display_name('Item', item)}: {hours} h",
        }

    def _build_creditcardpayment(self, index: int, rand: _Rand, day: date) -> JSON:
        return {
            "TxnDate": day.isoformat(),
            "CurrencyRef": _usd(),
            "CreditCardAccountRef": self.ref("Account", _CARD),
            "BankAccountRef": self.ref("Account", _CHECKING),
            "Amount": _money(rand.below(500_000) + 5_000),
            "PrintStatus": "NotSet",
            "Memo": f"{_CHART[_CARD][0]} payment",
        }

    def _build_attachable(self, index: int, rand: _Rand, day: date) -> JSON:
        (entity, content_type, extension), _ = _nth(_ATTACHED, index)
        target = self.related("Attachable", index, entity)
        realm, number = self.spec.realm_id, index + 1
        link = {"EntityRef": {"type": entity, "value": str(target + 1)}, "IncludeOnSend": False}
        return {
            "FileName": f"{entity.lower()}-{target + 1}-{number}.{extension}",
            "FileAccessUri": f"/qbo/v3/company/{realm}/download/{number}",
            "TempDownloadUri": (
                f"https://intuit-qbo-sandbox.s3.amazonaws.com/{realm}/attachments/{number}"
                f"?Expires={rand.below(10**9)}&Signature=sandbox"
            ),
            "Size": rand.below(900_000) + 20_000,
            "ContentType": content_type,
            "Note": f"Scanned {entity.lower()} {target + 1}",
            "AttachableRef": [link],
        }

    def template_type(self, index: int) -> str:
        """The transaction type the ``index``-th RecurringTransaction is a template of."""
        return str(_nth(TEMPLATES, index)[0])

    def _build_recurringtransaction(self, index: int, rand: _Rand, day: date) -> JSON:
        kind = self.template_type(index)
        template = self._builders[kind](index, rand, day)
        for unset in ("DocNumber", "Balance", "DueDate", "EmailStatus"):
            template.pop(unset, None)
        party = template.get("CustomerRef") or template["VendorRef"]
        schedule = {
            "IntervalType": "Monthly",
            "NumInterval": 1,
            "DayOfMonth": day.day,
            "StartDate": day.isoformat(),
            "NextDate": (day + timedelta(days=30)).isoformat(),
        }
        info = {"Name": f"{kind} {index + 1}: {party['name']}", "RecurType": "Automated"}
        return {**template, "RecurringInfo": {**info, "Active": True, "ScheduleInfo": schedule}}


_WORDS: dict[str, tuple[tuple[str, ...], ...]] = {
    "Customer": _CUSTOMER_WORDS,
    "Vendor": _VENDOR_WORDS,
    "Employee": (_FIRST, _LAST),
}
_NAMES: dict[str, tuple[Any, ...]] = {
    "CompanyInfo": ("Company",),
    "Item": _ITEMS,
    "Term": _TERMS,
    "PaymentMethod": _METHODS,
    "Class": ("Tax Practice", "Advisory", "Bookkeeping", "Payroll"),
    "Department": ("Downtown Office", "Westside Office", "Remote"),
    "TaxCode": ("California", "Texas", "Colorado", "Oregon", "Washington"),
    "TaxRate": ("California rate", "Texas rate", "Colorado rate", "Oregon rate", "Washington rate"),
    "TaxAgency": _AGENCIES,
    "Budget": ("Operating Budget", "Growth Budget"),
}


def _account_row(index: int) -> tuple[str, str, str, str]:
    if index < len(_CHART):
        return _CHART[index]
    return (f"Other Expense {index + 1}", "Expense", "OtherMiscellaneousServiceCost", "Expense")


def _item_price(index: int) -> int:
    item, round_ = _nth(_ITEMS, index)
    return int(item[2]) + round_ * 250


# --------------------------------------------------------------------------- store


@dataclass
class Override:
    """What tests changed on one row: a new version, new fields, or a deletion."""

    sync_token: int
    updated: int
    created: int | None = None
    deleted: bool = False
    changes: JSON = field(default_factory=dict)


class Table:
    """All rows of one entity in one company: generated rows plus overrides.

    Generated rows' LastUpdatedTime grows with their index, spread over ``history`` seconds
    before ``start``; that makes time filters an index range instead of a scan.
    """

    def __init__(self, gen: Generator, entity: str, start: int, history: int) -> None:
        self.gen = gen
        self.entity = entity
        self.base_count = gen.count[entity]
        self.count = self.base_count
        self.origin = start - history
        self.history = history
        self.overrides: dict[int, Override] = {}
        self.version = 0
        self._excluded: list[int] | None = None

    def base_updated(self, index: int) -> int:
        """LastUpdatedTime (epoch seconds) of a generated, unchanged row."""
        return self.origin + ((index + 1) * self.history) // (self.base_count + 1)

    def updated(self, index: int) -> int:
        """Current LastUpdatedTime of a row."""
        override = self.overrides.get(index)
        return override.updated if override else self.base_updated(index)

    def updated_key(self, index: int) -> tuple[int, int]:
        """A row's place in time order: LastUpdatedTime, then index."""
        return (self.updated(index), index)

    def first_at_or_after(self, ts: int) -> int:
        """The first generated index whose base LastUpdatedTime is at or after ``ts``."""
        lo, hi = 0, self.base_count
        while lo < hi:
            mid = (lo + hi) // 2
            if self.base_updated(mid) < ts:
                lo = mid + 1
            else:
                hi = mid
        return lo

    def is_live(self, index: int) -> bool:
        """Whether the row exists and is not deleted."""
        override = self.overrides.get(index)
        if override is not None:
            return not override.deleted
        return 0 <= index < self.base_count

    def active(self, index: int) -> bool:
        """The row's Active flag (generated rows are all active)."""
        override = self.overrides.get(index)
        return override is None or bool(override.changes.get("Active", True))

    def excluded(self) -> list[int]:
        """Sorted generated indices that have an override (so leave the generated sequence)."""
        if self._excluded is None:
            self._excluded = sorted(i for i in self.overrides if i < self.base_count)
        return self._excluded

    def _base_version(self, index: int) -> tuple[int, int]:
        """SyncToken and age (seconds since creation) of a generated row."""
        rand = self.gen.rand(self.entity, index, 4)
        token = rand.below(4) if rand.below(10) >= 7 else 0
        return token, (rand.below(20 * 86400) + 3600) * (token > 0)

    def render(self, index: int) -> JSON:
        """The full entity as Intuit returns it."""
        override = self.overrides.get(index)
        token, age = self._base_version(index) if index < self.base_count else (0, 0)
        updated = self.base_updated(index) if override is None else override.updated
        created = self.base_updated(index) - age
        if override is not None:
            token = override.sync_token
            created = override.created if override.created is not None else created
        entity: JSON = {
            "Id": "1" if self.entity == "CompanyInfo" else str(index + 1),
            "SyncToken": str(token),
            "MetaData": {"CreateTime": self.fmt(created), "LastUpdatedTime": self.fmt(updated)},
            "domain": "QBO",
            "sparse": False,
        }
        entity.update(self.gen.body(self.entity, index, created))
        if override is not None:
            entity.update(override.changes)
        if self.entity in KEYLESS:  # Intuit's ExchangeRate: no Id, no CreateTime
            del entity["Id"], entity["MetaData"]["CreateTime"]
        if self.entity == "RecurringTransaction":  # the template, inside its type's key
            return {self.gen.template_type(index): entity}
        return entity

    def tombstone(self, index: int) -> JSON:
        """How CDC reports a deleted row."""
        return {
            "Id": str(index + 1),
            "status": "Deleted",
            "domain": "QBO",
            "MetaData": {"LastUpdatedTime": self.fmt(self.updated(index))},
        }

    def fmt(self, ts: int) -> str:
        """ISO 8601 with the company's UTC offset, as Intuit writes MetaData times."""
        return datetime.fromtimestamp(ts, self.gen.tz).isoformat()

    def touch(self, index: int, now: int, changes: Mapping[str, Any], deleted: bool) -> None:
        """Record a new version of an existing row."""
        override = self.overrides.get(index)
        if override is None:
            token = self._base_version(index)[0]
            override = self.overrides[index] = Override(sync_token=token, updated=now)
        override.sync_token += 1
        override.updated = now
        override.deleted = deleted
        override.changes.update(copy.deepcopy(dict(changes)))
        self._mutated()

    def add(self, now: int, changes: Mapping[str, Any]) -> int:
        """Append a new row created at ``now``; returns its index."""
        index = self.count
        self.count += 1
        self.overrides[index] = Override(0, now, created=now, changes=copy.deepcopy(dict(changes)))
        self._mutated()
        return index

    def _mutated(self) -> None:
        self.version += 1
        self._excluded = None


class Stream:
    """An ordered, lazily materialised result set.

    It is the generated indices ``[lo, hi)`` minus overridden ones, merged with an explicit list
    of ``extras`` (overridden rows that match); both sides are ordered by Id, or by
    LastUpdatedTime then Id, so a page is found by binary search instead of a scan.
    """

    def __init__(self, table: Table, lo: int, hi: int, extras: list[int], by_time: bool) -> None:
        self.table = table
        self.lo = lo
        self.hi = max(lo, hi)
        self.by_time = by_time
        excluded = table.excluded()
        self.excluded = excluded[bisect_left(excluded, lo) : bisect_left(excluded, self.hi)]
        self.extras = sorted(extras, key=self.key)

    def key(self, index: int) -> tuple[int, int]:
        """Sort key of any row."""
        return (self.table.updated(index), index) if self.by_time else (0, index)

    def _base_key(self, index: int) -> tuple[int, int]:
        return (self.table.base_updated(index), index) if self.by_time else (0, index)

    def __len__(self) -> int:
        return self.hi - self.lo - len(self.excluded) + len(self.extras)

    def _base_rank(self, key: tuple[int, int]) -> int:
        """How many generated rows of the stream sort before ``key``."""
        lo, hi = self.lo, self.hi
        while lo < hi:
            mid = (lo + hi) // 2
            if self._base_key(mid) < key:
                lo = mid + 1
            else:
                hi = mid
        return lo - self.lo - bisect_left(self.excluded, lo)

    def _base_at(self, rank: int) -> int:
        """The generated index at position ``rank`` among the stream's generated rows."""
        index = self.lo + rank
        while True:
            moved = self.lo + rank + bisect_right(self.excluded, index)
            if moved == index:
                return index
            index = moved

    def window(self, start: int, size: int) -> list[int]:
        """Indices at ascending positions ``[start, start + size)``."""
        positions = [j + self._base_rank(self.key(e)) for j, e in enumerate(self.extras)]
        extra = bisect_left(positions, start)
        index = self._base_at(start - extra)
        skip = bisect_left(self.excluded, index)
        out: list[int] = []
        while len(out) < size:
            while skip < len(self.excluded) and self.excluded[skip] <= index:
                index += self.excluded[skip] == index
                skip += 1
            has_base = index < self.hi
            if extra < len(self.extras) and (
                not has_base or self.key(self.extras[extra]) < self._base_key(index)
            ):
                out.append(self.extras[extra])
                extra += 1
            elif has_base:
                out.append(index)
                index += 1
            else:
                break
        return out

    def page(self, offset: int, size: int, descending: bool) -> list[int]:
        """Indices of one page; ``offset`` counts from the first row in the requested order."""
        if not descending:
            return self.window(offset, size)
        end = len(self) - offset
        start = max(0, end - size)
        return self.window(start, end - start)[::-1] if end > 0 else []


class Company:
    """One generated company: its tables and the reads the API serves."""

    def __init__(self, spec: CompanySpec, tz: timezone, start: int, history: int) -> None:
        self.spec = spec
        self.gen = Generator(spec, tz, datetime.fromtimestamp(start - history, tz).date())
        self.tables = {name: Table(self.gen, name, start, history) for name in ENTITIES}

    def select(self, plan: QueryPlan) -> tuple[int, list[int]]:
        """Total matching rows and the indices of the requested page."""
        stream = self._stream(self.tables[plan.entity], plan)
        if plan.count_only:
            return len(stream), []
        page = stream.page(plan.start_position - 1, plan.max_results, plan.descending)
        return len(stream), page

    def _stream(self, table: Table, plan: QueryPlan) -> Stream:
        low, high = plan.updated_from, plan.updated_before
        active = plan.active if plan.active is not None else frozenset({True})
        if plan.entity not in LIST_ENTITIES:
            active = frozenset({True, False})

        def matches(index: int) -> bool:
            ts = table.updated(index)
            in_time = (low is None or ts >= low) and (high is None or ts < high)
            return in_time and table.active(index) in active

        if plan.ids is not None:
            extras = [i for i in plan.ids if table.is_live(i) and matches(i)]
            return Stream(table, 0, 0, extras, plan.order_by_time)
        lo = 0 if low is None else table.first_at_or_after(low)
        hi = table.base_count if high is None else table.first_at_or_after(high)
        hi = hi if True in active else lo
        extras = [i for i, o in table.overrides.items() if not o.deleted and matches(i)]
        return Stream(table, lo, hi, extras, plan.order_by_time)

    def changes(self, entities: list[str], since: int, limit: int) -> list[tuple[str, list[JSON]]]:
        """CDC, in Intuit's documented order: rows changed at or after ``since``, grouped by
        entity in the order asked, each group by LastUpdatedTime with its deleted objects
        (tombstones) after its active ones, at most ``limit`` objects over all groups."""
        grouped: list[tuple[str, list[JSON]]] = []
        room = limit
        for entity in entities:
            table = self.tables[entity]
            extras = [i for i, o in table.overrides.items() if o.updated >= since]
            live = [i for i in extras if table.is_live(i)]
            first = table.first_at_or_after(since)
            active = Stream(table, first, table.base_count, live, True).window(0, room)
            deleted = sorted((i for i in extras if not table.is_live(i)), key=table.updated_key)
            picked = [table.render(i) for i in active]
            picked += [table.tombstone(i) for i in deleted[: room - len(active)]]
            grouped.append((entity, picked))
            room -= len(picked)
        return grouped

    def find(self, entity: str, entity_id: str) -> int | None:
        """The index of a live row by its Id, or None."""
        table = self.tables[entity]
        if entity == "CompanyInfo":
            return 0 if entity_id in ("1", self.spec.realm_id) else None
        if not entity_id.isdigit() or int(entity_id) < 1:
            return None
        index = int(entity_id) - 1
        return index if table.is_live(index) else None
