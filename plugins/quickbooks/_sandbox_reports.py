"""Intuit's Reports API and the Preferences entity for the sandbox (package private).

Reports are computed from the company's own transactions, so their totals agree with what a
sync stores: every live transaction becomes double-entry postings (a debit is positive, in
cents) on the chart of accounts, and a report sums them over its dates. On the accrual basis
an invoice debits Accounts Receivable and credits its lines' income accounts, a bill credits
Accounts Payable, and so on; on the cash basis invoices, bills and their credits post nothing
and a payment (a bill payment) credits the income (debits the expense) accounts of the
document it pays, in proportion to that document's lines. The answers have Intuit's JSON shape
(``Report.xsd``: ``Header``, ``Columns.Column``, ``Rows.Row`` of ``Section``/``Data`` rows with
Intuit's group names); a report with no transaction to show answers the empty shape (the
``NoReportData`` option ``true``, no rows). Aging reports read the open documents' balances
as they are now (the sandbox keeps no balance history).
"""

from __future__ import annotations

import calendar
from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from ._sandbox_data import JSON, Company

MONTHS = tuple(calendar.month_name[1:])
"""Month names as Intuit writes them in report headers and periods (English)."""
POSTING_ENTITIES = (
    "Invoice",
    "SalesReceipt",
    "CreditMemo",
    "RefundReceipt",
    "Payment",
    "Bill",
    "VendorCredit",
    "BillPayment",
    "Purchase",
    "Deposit",
    "Transfer",
    "JournalEntry",
)
_ACCRUAL_ONLY = frozenset({"Invoice", "CreditMemo", "Bill", "VendorCredit"})
"""Documents that post nothing on the cash basis (their payments do)."""
_CREDIT_NATURE = frozenset({"Liability", "Equity", "Revenue"})
BASES = {"accrual": "Accrual", "cash": "Cash"}


class ReportProblem(Exception):
    """A request Intuit refuses with a ValidationFault (code, message, detail)."""

    def __init__(self, code: str, message: str, detail: str) -> None:
        super().__init__(detail)
        self.code, self.message, self.detail = code, message, detail


# --------------------------------------------------------------------------- the ledger


@dataclass(frozen=True)
class Account:
    """One account of the chart, as the reports name it."""

    id: str
    name: str
    type: str
    classification: str

    @property
    def sign(self) -> int:
        """+1 where a debit increases the account's natural balance, -1 where a credit does."""
        return -1 if self.classification in _CREDIT_NATURE else 1


@dataclass(frozen=True)
class Posting:
    """One leg of a transaction: ``cents`` debited (positive) or credited (negative)."""

    day: date
    account: str
    cents: int
    txn_type: str
    txn_id: str
    doc: str
    name: str
    memo: str


@dataclass(frozen=True)
class OpenItem:
    """An invoice or bill with a balance still open (what the aging reports list)."""

    day: date
    due: date
    party_id: str
    party: str
    balance: int


@dataclass
class Ledger:
    """A company's postings on one basis, by date, its chart of accounts, and its open
    invoices and bills."""

    accounts: dict[str, Account]
    postings: list[Posting]
    open_items: dict[str, list[OpenItem]] = field(default_factory=dict)
    _days: list[date] = field(init=False)

    def __post_init__(self) -> None:
        self.postings.sort(key=lambda p: p.day)
        self._days = [p.day for p in self.postings]

    def between(self, start: date | None, end: date) -> list[Posting]:
        """The postings dated from ``start`` (None: the beginning) to ``end``, both included."""
        lo = 0 if start is None else bisect_left(self._days, start)
        return self.postings[lo : bisect_right(self._days, end)]

    def balances(self, start: date | None, end: date) -> dict[str, int]:
        """Debits minus credits per account id over those dates."""
        totals: dict[str, int] = defaultdict(int)
        for posting in self.between(start, end):
            totals[posting.account] += posting.cents
        return totals

    def net_income(self, start: date | None, end: date) -> int:
        """Income minus expenses over those dates (credits to P&L accounts are income)."""
        totals = self.balances(start, end)
        return -sum(cents for account, cents in totals.items() if self.is_pnl(account))

    def is_pnl(self, account: str) -> bool:
        """Whether ``account`` is an income or expense account."""
        found = self.accounts.get(account)
        return found is not None and found.classification in ("Revenue", "Expense")

    def of_types(self, types: Sequence[str]) -> list[Account]:
        """The accounts of these ``AccountType`` values, in chart order."""
        return [a for a in self.accounts.values() if a.type in types]


def cents(value: Any) -> int:
    """A JSON amount in cents, exactly (``12.5`` and ``"12.50"`` are 1250)."""
    return int((Decimal(str(value or 0)) * 100).to_integral_value(ROUND_HALF_EVEN))


def money(amount: int) -> str:
    """Cents as Intuit writes report amounts: ``"1250.00"``."""
    return f"{Decimal(amount).scaleb(-2):.2f}"


def _ref(obj: Mapping[str, Any], *path: str) -> str | None:
    value: Any = obj
    for key in path:
        value = value.get(key) if isinstance(value, Mapping) else None
    return None if value is None else str(value)


def _live(company: Company, entity: str) -> Iterator[JSON]:
    table = company.tables[entity]
    for index in range(table.count):
        if table.is_live(index):
            yield table.render(index)


class _Postings:
    """Turns one company's transactions into postings on one basis."""

    def __init__(self, company: Company, accounts: dict[str, Account], basis: str) -> None:
        self.company = company
        self.basis = basis
        first: dict[str, str] = {}
        for account in accounts.values():
            first.setdefault(account.type, account.id)
        self.ar = first.get("Accounts Receivable", "")
        self.ap = first.get("Accounts Payable", "")
        self.income = first.get("Income", "")
        self.cogs = first.get("Cost of Goods Sold", "")
        self.undeposited = next(
            (a.id for a in accounts.values() if a.name == "Undeposited Funds"), self.ar
        )

    def lines(self, txn: JSON) -> list[tuple[str, int]]:
        """The (account, cents) of a document's lines: sales, expense, deposit lines."""
        found = []
        for line in txn.get("Line") or []:
            kind = line.get("DetailType")
            detail = line.get(kind) or {}
            if kind == "SalesItemLineDetail":
                account = _ref(detail, "ItemAccountRef", "value") or self.income
            elif kind in ("AccountBasedExpenseLineDetail", "DepositLineDetail"):
                account = _ref(detail, "AccountRef", "value") or ""
            elif kind == "ItemBasedExpenseLineDetail":
                account = self.cogs
            else:
                continue
            found.append((account, cents(line.get("Amount"))))
        return found

    def legs(self, entity: str, txn: JSON) -> list[tuple[str, int]]:
        """The transaction's postings (account, cents debited)."""
        if self.basis == "cash" and entity in _ACCRUAL_ONLY:
            return []
        lines = self.lines(txn)
        total = sum(amount for _, amount in lines)
        credits = [(account, -amount) for account, amount in lines]
        deposit_to = _ref(txn, "DepositToAccountRef", "value") or self.undeposited
        if entity == "Invoice":
            return [(self.ar, total), *credits]
        if entity == "SalesReceipt":
            return [(deposit_to, total), *credits]
        if entity == "CreditMemo":
            return [*lines, (self.ar, -total)]
        if entity == "RefundReceipt":
            return [*lines, (deposit_to, -total)]
        if entity == "Payment":
            paid = cents(txn.get("TotalAmt"))
            return [(deposit_to, paid), *self.settled(txn, "Invoice", self.ar, -paid)]
        if entity == "Bill":
            return [*lines, (_ref(txn, "APAccountRef", "value") or self.ap, -total)]
        if entity == "VendorCredit":
            return [(self.ap, total), *credits]
        if entity == "BillPayment":
            paid = cents(txn.get("TotalAmt"))
            bank = _ref(txn, "CheckPayment", "BankAccountRef", "value") or _ref(
                txn, "CreditCardPayment", "CCAccountRef", "value"
            )
            return [*self.settled(txn, "Bill", self.ap, paid), (bank or "", -paid)]
        if entity == "Purchase":
            sign = -1 if txn.get("Credit") else 1
            paid_from = _ref(txn, "AccountRef", "value") or ""
            return [(a, sign * c) for a, c in [*lines, (paid_from, -total)]]
        if entity == "Deposit":
            return [(_ref(txn, "DepositToAccountRef", "value") or "", total), *credits]
        if entity == "Transfer":
            amount = cents(txn.get("Amount"))
            to, source = _ref(txn, "ToAccountRef", "value"), _ref(txn, "FromAccountRef", "value")
            return [(to or "", amount), (source or "", -amount)]
        return [self.journal_leg(line) for line in txn.get("Line") or []]  # JournalEntry

    @staticmethod
    def journal_leg(line: JSON) -> tuple[str, int]:
        """A journal entry line: its account, debited or credited as its PostingType says."""
        detail = line.get("JournalEntryLineDetail") or {}
        amount = cents(line.get("Amount"))
        debit = detail.get("PostingType") == "Debit"
        return _ref(detail, "AccountRef", "value") or "", amount if debit else -amount

    def settled(self, txn: JSON, linked: str, control: str, amount: int) -> list[tuple[str, int]]:
        """The leg a payment posts against the document it pays: the control account (A/R,
        A/P) on the accrual basis; on the cash basis that document's line accounts, in
        proportion (the last line takes the rounding), or the control account if none."""
        if self.basis == "cash":
            target = next(
                (
                    _ref(link, "TxnId")
                    for line in txn.get("Line") or []
                    for link in line.get("LinkedTxn") or []
                    if link.get("TxnType") == linked
                ),
                None,
            )
            index = self.company.find(linked, target) if target else None
            if index is not None:
                lines = self.lines(self.company.tables[linked].render(index))
                whole = sum(c for _, c in lines)
                if whole:
                    shares = [(a, amount * c // whole) for a, c in lines]
                    rest = amount - sum(c for _, c in shares)
                    return [*shares[:-1], (shares[-1][0], shares[-1][1] + rest)]
        return [(control, amount)]


def chart(company: Company) -> dict[str, Account]:
    """The company's live accounts by id, in chart order."""
    return {
        row["Id"]: Account(
            row["Id"],
            row.get("Name", ""),
            row.get("AccountType", ""),
            row.get("Classification", ""),
        )
        for row in _live(company, "Account")
    }


def build_ledger(company: Company, basis: str) -> Ledger:
    """Every live transaction of ``company`` as postings on ``basis``."""
    accounts = chart(company)
    rules = _Postings(company, accounts, basis)
    postings = []
    open_items: dict[str, list[OpenItem]] = {"Invoice": [], "Bill": []}
    for entity in POSTING_ENTITIES:
        for txn in _live(company, entity):
            day = date.fromisoformat(str(txn.get("TxnDate")))
            party = txn.get("CustomerRef") or txn.get("VendorRef") or txn.get("EntityRef") or {}
            if entity in open_items and (balance := cents(txn.get("Balance"))):
                due = date.fromisoformat(str(txn.get("DueDate") or day))
                item = OpenItem(
                    day, due, str(party.get("value", "")), str(party.get("name", "")), balance
                )
                open_items[entity].append(item)
            for account, amount in rules.legs(entity, txn):
                if amount and account in accounts:
                    posting = Posting(
                        day,
                        account,
                        amount,
                        entity,
                        str(txn["Id"]),
                        str(txn.get("DocNumber", "")),
                        str(party.get("name", "")),
                        str(txn.get("PrivateNote", "")),
                    )
                    postings.append(posting)
    return Ledger(accounts, postings, open_items)


# --------------------------------------------------------------------------- JSON shapes


def _col(value: str, col_id: str | None = None) -> JSON:
    return {"value": value} if col_id is None else {"value": value, "id": col_id}


def _data(cols: Sequence[JSON]) -> JSON:
    return {"ColData": list(cols), "type": "Data"}


def _account_row(account: Account, *values: str) -> JSON:
    return _data([_col(account.name, account.id), *(_col(v) for v in values)])


def _section(
    group: str, title: str | None, rows: Sequence[JSON], summary: Sequence[str], width: int
) -> JSON:
    """A ``Section`` row: optional Header (title), its Rows, and a Summary."""
    section: JSON = {}
    if title is not None:
        section["Header"] = {"ColData": [_col(title), *(_col("") for _ in range(width - 1))]}
    if rows:
        section["Rows"] = {"Row": list(rows)}
    section["Summary"] = {"ColData": [_col(value) for value in summary]}
    section["type"] = "Section"
    section["group"] = group
    return section


def _columns(columns: Sequence[tuple[str, str, str]]) -> JSON:
    return {
        "Column": [
            {"ColTitle": title, "ColType": kind, "MetaData": [{"Name": "ColKey", "Value": key}]}
            for title, kind, key in columns
        ]
    }


_TOTAL_COLUMNS = (("", "Account", "account"), ("Total", "Money", "total"))


@dataclass(frozen=True)
class Request:
    """One report request, its parameters resolved."""

    name: str
    start: date
    end: date
    basis: str
    fiscal_start: date
    currency: str
    time: str


def _report(request: Request, columns: JSON, rows: list[JSON], *, basis: bool = True) -> JSON:
    """The report document; with no ``rows``, Intuit's empty report."""
    header: JSON = {"Time": request.time, "ReportName": request.name}
    if basis:
        header["ReportBasis"] = BASES[request.basis]
    header |= {
        "StartPeriod": request.start.isoformat(),
        "EndPeriod": request.end.isoformat(),
        "SummarizeColumnsBy": "Total",
        "Currency": request.currency,
        "Option": [
            {"Name": "AccountingStandard", "Value": "GAAP"},
            {"Name": "NoReportData", "Value": "false" if rows else "true"},
        ],
    }
    return {"Header": header, "Columns": columns, "Rows": {"Row": rows} if rows else {}}


# --------------------------------------------------------------------------- the reports


_PNL = (
    ("Income", "Income", "Income"),
    ("Cost of Goods Sold", "COGS", "Cost of Goods Sold"),
    ("Expense", "Expenses", "Expenses"),
    ("Other Income", "OtherIncome", "Other Income"),
    ("Other Expense", "OtherExpenses", "Other Expenses"),
)


def profit_and_loss(ledger: Ledger, request: Request) -> JSON:
    """Income, cost of goods sold, expenses and the profit lines over the dates."""
    totals = ledger.balances(request.start, request.end)
    sections: dict[str, JSON] = {}
    amount: dict[str, int] = {}
    for account_type, group, title in _PNL:
        rows = []
        for account in ledger.of_types([account_type]):
            value = account.sign * totals.get(account.id, 0)
            if value:
                rows.append(_account_row(account, money(value)))
                amount[group] = amount.get(group, 0) + value
        if rows:
            total = (f"Total {title}", money(amount[group]))
            sections[group] = _section(group, title, rows, total, 2)
    if not sections:
        return _report(request, _columns(_TOTAL_COLUMNS), [])
    gross = amount.get("Income", 0) - amount.get("COGS", 0)
    operating = gross - amount.get("Expenses", 0)
    other = amount.get("OtherIncome", 0) - amount.get("OtherExpenses", 0)

    def line(group: str, title: str, value: int) -> JSON:
        return _section(group, None, (), (title, money(value)), 2)

    rows = [sections[g] for g in ("Income", "COGS") if g in sections]
    rows.append(line("GrossProfit", "Gross Profit", gross))
    rows += [sections[g] for g in ("Expenses",) if g in sections]
    rows.append(line("NetOperatingIncome", "Net Operating Income", operating))
    if "OtherIncome" in sections or "OtherExpenses" in sections:
        rows += [sections[g] for g in ("OtherIncome", "OtherExpenses") if g in sections]
        rows.append(line("NetOtherIncome", "Net Other Income", other))
    rows.append(line("NetIncome", "Net Income", operating + other))
    return _report(request, _columns(_TOTAL_COLUMNS), rows)


@dataclass(frozen=True)
class _Node:
    group: str
    title: str
    total: str
    types: tuple[str, ...] = ()
    children: tuple[_Node, ...] = ()


_ASSETS = _Node(
    "TotalAssets",
    "ASSETS",
    "TOTAL ASSETS",
    children=(
        _Node(
            "CurrentAssets",
            "Current Assets",
            "Total Current Assets",
            children=(
                _Node("BankAccounts", "Bank Accounts", "Total Bank Accounts", ("Bank",)),
                _Node(
                    "AR",
                    "Accounts Receivable",
                    "Total Accounts Receivable",
                    ("Accounts Receivable",),
                ),
                _Node(
                    "OtherCurrentAssets",
                    "Other Current Assets",
                    "Total Other Current Assets",
                    ("Other Current Asset",),
                ),
            ),
        ),
        _Node("FixedAssets", "Fixed Assets", "Total Fixed Assets", ("Fixed Asset",)),
        _Node("OtherAssets", "Other Assets", "Total Other Assets", ("Other Asset",)),
    ),
)
_LIABILITIES_AND_EQUITY = _Node(
    "TotalLiabilitiesAndEquity",
    "LIABILITIES AND EQUITY",
    "TOTAL LIABILITIES AND EQUITY",
    children=(
        _Node(
            "Liabilities",
            "Liabilities",
            "Total Liabilities",
            children=(
                _Node(
                    "CurrentLiabilities",
                    "Current Liabilities",
                    "Total Current Liabilities",
                    children=(
                        _Node(
                            "AP",
                            "Accounts Payable",
                            "Total Accounts Payable",
                            ("Accounts Payable",),
                        ),
                        _Node(
                            "CreditCards", "Credit Cards", "Total Credit Cards", ("Credit Card",)
                        ),
                        _Node(
                            "OtherCurrentLiabilities",
                            "Other Current Liabilities",
                            "Total Other Current Liabilities",
                            ("Other Current Liability",),
                        ),
                    ),
                ),
                _Node(
                    "LongTermLiabilities",
                    "Long-Term Liabilities",
                    "Total Long-Term Liabilities",
                    ("Long Term Liability",),
                ),
            ),
        ),
        _Node("Equity", "Equity", "Total Equity", ("Equity",)),
    ),
)


def _tree(
    node: _Node, ledger: Ledger, totals: Mapping[str, int], extra: Mapping[str, list[JSON]]
) -> tuple[JSON | None, int]:
    """A balance-sheet section and its total; None when nothing inside has a balance."""
    rows: list[JSON] = []
    total = 0
    for account in ledger.of_types(node.types):
        value = account.sign * totals.get(account.id, 0)
        if value:
            rows.append(_account_row(account, money(value)))
            total += value
    for row in extra.get(node.group, []):
        rows.append(row)
        total += cents(row["ColData"][1]["value"])
    for child in node.children:
        section, value = _tree(child, ledger, totals, extra)
        if section is not None:
            rows.append(section)
            total += value
    if not rows:
        return None, 0
    return _section(node.group, node.title, rows, (node.total, money(total)), 2), total


def balance_sheet(ledger: Ledger, request: Request) -> JSON:
    """Assets, liabilities and equity on the end date; equity holds the retained earnings
    (net income before the fiscal year) and the fiscal year's net income to that date."""
    if not ledger.between(None, request.end):
        return _report(request, _columns(_TOTAL_COLUMNS), [])
    totals = ledger.balances(None, request.end)
    retained = ledger.net_income(None, request.fiscal_start - timedelta(days=1))
    earned = ledger.net_income(request.fiscal_start, request.end)
    equity = [
        _data([_col("Retained Earnings"), _col(money(retained))]),
        _data([_col("Net Income"), _col(money(earned))]),
    ]
    rows = [
        section
        for node in (_ASSETS, _LIABILITIES_AND_EQUITY)
        for section in [_tree(node, ledger, totals, {"Equity": equity})[0]]
        if section is not None
    ]
    return _report(request, _columns(_TOTAL_COLUMNS), rows)


def trial_balance(ledger: Ledger, request: Request) -> JSON:
    """Every account's debit or credit balance on the end date (income and expense accounts
    over the fiscal year to that date, earlier years' result as Retained Earnings)."""
    columns = _columns(
        (("", "Account", "account"), ("Debit", "Money", "debt"), ("Credit", "Money", "credit"))
    )
    if not ledger.between(None, request.end):
        return _report(request, columns, [])
    sheet = ledger.balances(None, request.end)
    year = ledger.balances(request.fiscal_start, request.end)
    balances = [
        (account, (year if ledger.is_pnl(account.id) else sheet).get(account.id, 0))
        for account in ledger.accounts.values()
    ]
    rows = [_account_row(account, *_sides(value)) for account, value in balances if value]
    retained = -ledger.net_income(None, request.fiscal_start - timedelta(days=1))
    if retained:
        rows.append(_data([_col("Retained Earnings"), *(_col(v) for v in _sides(retained))]))
    values = [value for _, value in balances] + [retained]
    debits, credits = sum(v for v in values if v > 0), -sum(v for v in values if v < 0)
    rows.append(_section("GrandTotal", None, (), ("TOTAL", money(debits), money(credits)), 3))
    return _report(request, columns, rows)


def _sides(value: int) -> tuple[str, str]:
    return (money(value), "") if value > 0 else ("", money(-value))


_OPERATING = (
    "Accounts Receivable",
    "Other Current Asset",
    "Accounts Payable",
    "Credit Card",
    "Other Current Liability",
)
_INVESTING = ("Fixed Asset", "Other Asset")
_FINANCING = ("Long Term Liability", "Equity")


def cash_flow(ledger: Ledger, request: Request) -> JSON:
    """Net income adjusted by the changes of the other balance-sheet accounts (indirect
    method), the net change of the bank accounts, and their balances before and after."""
    if not ledger.between(request.start, request.end):
        return _report(request, _columns(_TOTAL_COLUMNS), [], basis=False)
    moved = ledger.balances(request.start, request.end)
    income = ledger.net_income(request.start, request.end)

    def changes(types: Sequence[str]) -> tuple[list[JSON], int]:
        rows, total = [], 0
        for account in ledger.of_types(types):
            if value := -moved.get(account.id, 0):
                rows.append(_account_row(account, money(value)))
                total += value
        return rows, total

    adjusted, adjustment = changes(_OPERATING)
    operating_rows = [_data([_col("Net Income"), _col(money(income))])]
    if adjusted:
        title = "Adjustments to reconcile Net Income to Net Cash provided by operations:"
        summary = (f"Total {title}", money(adjustment))
        operating_rows.append(_section("OperatingAdjustments", title, adjusted, summary, 2))
    operating = income + adjustment
    rows = [
        _section(
            "OperatingActivities",
            "OPERATING ACTIVITIES",
            operating_rows,
            ("Net cash provided by operating activities", money(operating)),
            2,
        )
    ]
    increase = operating
    for group, title, types in (
        ("InvestingActivities", "INVESTING ACTIVITIES", _INVESTING),
        ("FinancingActivities", "FINANCING ACTIVITIES", _FINANCING),
    ):
        found, moved_by = changes(types)
        if found:
            line = (f"Net cash provided by {title.lower()}", money(moved_by))
            rows.append(_section(group, title, found, line, 2))
            increase += moved_by
    banks = [a.id for a in ledger.of_types(("Bank",))]
    before = ledger.balances(None, request.start - timedelta(days=1))
    beginning = sum(before.get(a, 0) for a in banks)
    for group, title, value in (
        ("CashIncrease", "NET CASH INCREASE FOR PERIOD", increase),
        ("BeginningCash", "Cash at beginning of period", beginning),
        ("EndingCash", "CASH AT END OF PERIOD", beginning + increase),
    ):
        rows.append(_section(group, None, (), (title, money(value)), 2))
    return _report(request, _columns(_TOTAL_COLUMNS), rows, basis=False)


_GL_COLUMNS = (
    ("Date", "Date", "tx_date"),
    ("Transaction Type", "String", "txn_type"),
    ("Num", "String", "doc_num"),
    ("Name", "String", "name"),
    ("Memo/Description", "String", "memo"),
    ("Amount", "Money", "subt_nat_amount"),
    ("Balance", "Money", "rbal_nat_amount"),
)


def general_ledger(ledger: Ledger, request: Request) -> JSON:
    """Every posting over the dates, by account, with each account's running balance."""
    by_account: dict[str, list[Posting]] = defaultdict(list)
    for posting in ledger.between(request.start, request.end):
        by_account[posting.account].append(posting)
    rows = []
    for account in ledger.accounts.values():
        postings = by_account.get(account.id)
        if not postings:
            continue
        lines, balance = [], 0
        for p in postings:
            balance += account.sign * p.cents
            lines.append(
                _data(
                    [
                        _col(p.day.isoformat()),
                        _col(p.txn_type, p.txn_id),
                        _col(p.doc),
                        _col(p.name),
                        _col(p.memo),
                        _col(money(account.sign * p.cents)),
                        _col(money(balance)),
                    ]
                )
            )
        header = {"ColData": [_col(account.name, account.id), *(_col("") for _ in range(6))]}
        summary = (f"Total for {account.name}", "", "", "", "", money(balance), "")
        section = _section("", None, lines, summary, 7)
        del section["group"]  # an account's section has no group, as Intuit answers
        rows.append({"Header": header, **section})
    return _report(request, _columns(_GL_COLUMNS), rows)


_AGING = ("Current", "1 - 30", "31 - 60", "61 - 90", "91 and over")


def _aging(ledger: Ledger, request: Request, entity: str, kind: str) -> JSON:
    columns = _columns(
        (
            ("", kind, kind.lower()),
            *((title, "Money", str(i)) for i, title in enumerate(_AGING)),
            ("Total", "Money", "total"),
        )
    )
    owed: dict[str, list[int]] = {}
    names: dict[str, str] = {}
    for item in ledger.open_items.get(entity, []):
        if item.day > request.end:
            continue
        late = (request.end - item.due).days
        bucket = 0 if late <= 0 else min(4, (late - 1) // 30 + 1)
        names[item.party_id] = item.party
        owed.setdefault(item.party_id, [0] * 5)[bucket] += item.balance
    rows = [
        _data([_col(names[key], key), *(_col(money(v)) for v in [*owed[key], sum(owed[key])])])
        for key in sorted(owed, key=lambda k: names[k])
    ]
    if rows:
        sums = [sum(owed[k][i] for k in owed) for i in range(5)]
        summary = ("TOTAL", *(money(v) for v in [*sums, sum(sums)]))
        rows.append(_section("GrandTotal", None, (), summary, 7))
    return _report(request, columns, rows, basis=False)


def aged_receivables(ledger: Ledger, request: Request) -> JSON:
    """Open invoice balances per customer on the report date, by days past due."""
    return _aging(ledger, request, "Invoice", "Customer")


def aged_payables(ledger: Ledger, request: Request) -> JSON:
    """Open bill balances per vendor on the report date, by days past due."""
    return _aging(ledger, request, "Bill", "Vendor")


AGING_REPORTS = frozenset({"AgedReceivables", "AgedPayables"})
REPORTS: dict[str, Callable[[Ledger, Request], JSON]] = {
    "ProfitAndLoss": profit_and_loss,
    "BalanceSheet": balance_sheet,
    "TrialBalance": trial_balance,
    "CashFlow": cash_flow,
    "GeneralLedger": general_ledger,
    "AgedReceivables": aged_receivables,
    "AgedPayables": aged_payables,
}
_BASIS_PARAM = frozenset({"ProfitAndLoss", "BalanceSheet", "TrialBalance", "GeneralLedger"})
"""The reports that take ``accounting_method`` (CashFlow and aging reports do not)."""


# --------------------------------------------------------------------------- the book


def fiscal_year_start(day: date, first_month: int) -> date:
    """The first day of the fiscal year containing ``day``."""
    year = day.year if day.month >= first_month else day.year - 1
    return date(year, first_month, 1)


def _date_param(query: Mapping[str, str], name: str, default: date) -> date:
    text = query.get(name)
    if text is None:
        return default
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ReportProblem(
            "2010",
            "Invalid date",
            f"Parameter {name} must be a date in the format yyyy-MM-dd, got {text[:40]!r}",
        ) from None


class ReportBook:
    """Per company: the Preferences the sandbox answers, and ledgers cached until a
    transaction or account changes."""

    def __init__(self) -> None:
        self._basis: dict[str, str] = {}
        self._ledgers: dict[tuple[str, str], tuple[tuple[int, ...], Ledger]] = {}

    def set_report_basis(self, realm_id: str, basis: str) -> None:
        """Set the company's ``ReportPrefs.ReportBasis`` (``accrual`` or ``cash``)."""
        if basis not in BASES:
            raise ValueError(f"basis must be one of {sorted(BASES)}")
        self._basis[realm_id] = basis

    def report_basis(self, realm_id: str) -> str:
        """The company's default report basis (accrual unless set)."""
        return self._basis.get(realm_id, "accrual")

    def ledger(self, company: Company, basis: str) -> Ledger:
        """The company's ledger on ``basis``, rebuilt only after a change."""
        versions = tuple(company.tables[e].version for e in ("Account", *POSTING_ENTITIES))
        key = (company.spec.realm_id, basis)
        cached = self._ledgers.get(key)
        if cached is None or cached[0] != versions:
            cached = self._ledgers[key] = (versions, build_ledger(company, basis))
        return cached[1]

    def preferences(self, company: Company, now: datetime) -> JSON:
        """The company's Preferences entity as Intuit answers ``GET …/preferences``."""
        info = company.tables["CompanyInfo"].render(0)
        first_month = str(info.get("FiscalYearStartMonth", "January"))
        stamp = now.isoformat(timespec="seconds")
        realm = company.spec.realm_id
        return {
            "AccountingInfoPrefs": {
                "TrackDepartments": True,
                "DepartmentTerminology": "Location",
                "ClassTrackingPerTxn": False,
                "CustomerTerminology": "Customers",
                "FirstMonthOfFiscalYear": first_month,
                "TaxYearMonth": first_month,
            },
            "SalesFormsPrefs": {"AllowDeposit": True, "AllowDiscount": True},
            "VendorAndPurchasesPrefs": {
                "TrackingByCustomer": True,
                "BillableExpenseTracking": True,
            },
            "TaxPrefs": {"UsingSalesTax": False},
            "CurrencyPrefs": {
                "MultiCurrencyEnabled": False,
                "HomeCurrency": {"value": "USD"},
            },
            "ReportPrefs": {
                "ReportBasis": BASES[self.report_basis(realm)],
                "CalcAgingReportFromTxnDate": False,
            },
            "Id": "1",
            "SyncToken": "0",
            "MetaData": {"CreateTime": stamp, "LastUpdatedTime": stamp},
            "domain": "QBO",
            "sparse": False,
        }

    def report(self, company: Company, now: datetime, name: str, query: Mapping[str, str]) -> JSON:
        """The report ``name`` for the request's parameters, as Intuit answers it.

        :raise ReportProblem: an unknown report, a bad date, an unknown accounting method.
        """
        if name not in REPORTS:
            raise ReportProblem(
                "2010", "Unsupported report", f"Report {name[:60]!r} is not supported"
            )
        info = company.tables["CompanyInfo"].render(0)
        month = str(info.get("FiscalYearStartMonth", "January"))
        first_month = MONTHS.index(month) + 1 if month in MONTHS else 1
        today = now.date()
        basis = self.report_basis(company.spec.realm_id)
        method = query.get("accounting_method")
        if method is not None and name in _BASIS_PARAM:
            basis = method.lower()
            if basis not in BASES:
                detail = f"accounting_method must be Cash or Accrual, got {method[:20]!r}"
                raise ReportProblem("2010", "Invalid accounting_method", detail)
        if name in AGING_REPORTS:
            end = _date_param(query, "report_date", today)
            start = end
        else:
            start = _date_param(query, "start_date", fiscal_year_start(today, first_month))
            end = _date_param(query, "end_date", today)
        if start > end:
            raise ReportProblem("2010", "Invalid date range", "start_date is after end_date")
        request = Request(
            name,
            start,
            end,
            basis,
            fiscal_year_start(end, first_month),
            "USD",
            now.isoformat(timespec="seconds"),
        )
        on_accrual = name == "CashFlow" or name in AGING_REPORTS  # they take no basis
        return REPORTS[name](self.ledger(company, "accrual" if on_accrual else basis), request)
