"""The hub's own checks of the figures a model extracted: arithmetic and plausibility the hub
can decide without the model. A disagreement is a *flag* stored with the result (the figures
are kept as the model read them, for a person to look at), never a silent correction.

Rules: a receipt's tax is not above its total, and subtotal + tax = total; an invoice's lines
add up to its subtotal (else its total) and subtotal + tax = total; a bank statement's opening
balance + deposits - withdrawals = closing balance; a balance sheet's assets = liabilities +
equity; a tax return's tax year is not in the future nor more than :data:`TAX_YEARS_BACK`
years old; a period does not end before it starts. Sums agree within :data:`TOLERANCE`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import date
from decimal import Decimal
from typing import Any

from .schemas import Answer, BankStatement, FinancialStatement, Invoice, Receipt, TaxReturn

TOLERANCE = Decimal("0.01")
"""Sums may differ by at most a cent (rounding on the document)."""
TAX_YEARS_BACK = 10
Flag = dict[str, Any]


def _flag(check: str, message: str, expected: Decimal | int | None, found: Decimal | int) -> Flag:
    return {
        "check": check,
        "message": message,
        "expected": None if expected is None else str(expected),
        "found": str(found),
    }


def _sum_differs(check: str, what: str, expected: Decimal, found: Decimal) -> Iterator[Flag]:
    if abs(expected - found) > TOLERANCE:
        yield _flag(check, f"{what}: {found} read, the parts make {expected}", expected, found)


def _period(start: date | None, end: date | None) -> Iterator[Flag]:
    if start is not None and end is not None and end < start:
        yield {
            "check": "period",
            "message": f"the period ends ({end}) before it starts ({start})",
            "expected": None,
            "found": f"{start}..{end}",
        }


def _receipt(answer: Receipt, today: date) -> Iterator[Flag]:
    if answer.tax is not None and answer.tax > answer.total:
        yield _flag(
            "receipt_tax",
            f"the tax {answer.tax} is above the total {answer.total}",
            None,
            answer.tax,
        )
    if answer.subtotal is not None and answer.tax is not None:
        yield from _sum_differs(
            "receipt_total", "total", answer.subtotal + answer.tax, answer.total
        )


def _invoice(answer: Invoice, today: date) -> Iterator[Flag]:
    if answer.lines:
        lines = sum((line.amount for line in answer.lines), Decimal(0))
        if answer.subtotal is not None:
            yield from _sum_differs("invoice_lines", "subtotal", lines, answer.subtotal)
        elif answer.tax is None:
            yield from _sum_differs("invoice_lines", "total", lines, answer.total)
        else:
            yield from _sum_differs("invoice_lines", "total", lines + answer.tax, answer.total)
    if answer.subtotal is not None and answer.tax is not None:
        yield from _sum_differs(
            "invoice_total", "total", answer.subtotal + answer.tax, answer.total
        )
    if answer.issue_date is not None and answer.due_date is not None:
        yield from _period(answer.issue_date, answer.due_date)


def _tax_return(answer: TaxReturn, today: date) -> Iterator[Flag]:
    year = answer.tax_year
    if year > today.year:
        yield _flag("tax_year", f"the tax year {year} is in the future", today.year, year)
    elif year < today.year - TAX_YEARS_BACK:
        yield _flag(
            "tax_year",
            f"the tax year {year} is more than {TAX_YEARS_BACK} years old",
            today.year - TAX_YEARS_BACK,
            year,
        )


def _bank_statement(answer: BankStatement, today: date) -> Iterator[Flag]:
    parts = (
        answer.opening_balance,
        answer.total_deposits,
        answer.total_withdrawals,
        answer.closing_balance,
    )
    opening, deposits, withdrawals, closing = parts
    if None not in parts:
        assert opening is not None and deposits is not None and withdrawals is not None
        assert closing is not None
        expected = opening + deposits - withdrawals
        yield from _sum_differs("bank_balance", "closing balance", expected, closing)
    yield from _period(answer.period_start, answer.period_end)


def _financial_statement(answer: FinancialStatement, today: date) -> Iterator[Flag]:
    assets, liabilities, equity = answer.total_assets, answer.total_liabilities, answer.equity
    if answer.statement == "balance_sheet" and None not in (assets, liabilities, equity):
        assert assets is not None and liabilities is not None and equity is not None
        yield from _sum_differs("balance_sheet", "total assets", liabilities + equity, assets)
    yield from _period(answer.period_start, answer.period_end)


CHECKS: dict[type[Answer], Callable[[Any, date], Iterator[Flag]]] = {
    Receipt: _receipt,
    Invoice: _invoice,
    TaxReturn: _tax_return,
    BankStatement: _bank_statement,
    FinancialStatement: _financial_statement,
}


def check(answer: Answer, today: date) -> list[Flag]:
    """The hub's disagreements with ``answer`` (empty: every check it could make agreed).

    :param today: the date "the future" and "too old" are measured from.
    """
    rules = CHECKS.get(type(answer))
    return list(rules(answer, today)) if rules is not None else []
