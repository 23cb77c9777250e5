"""What the model must answer, per document type: pydantic models that become the structured
output's JSON schema (strict) and validate the answer.

Money is a decimal *string* in the schema (``"1234.50"``) and a :class:`~decimal.Decimal` once
validated, so no amount ever passes through a binary float; a JSON number where an amount
belongs is a non-conforming answer. Every analysis carries ``summary``, ``confidence`` (0-1)
and ``recommendations`` beside its type's figures.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema

from .settings import DocumentType

MONEY_PATTERN = r"^-?\d{1,13}(\.\d{1,4})?$"


def _decimal_string(value: object) -> object:
    if not isinstance(value, str):
        raise ValueError("an amount is a decimal string such as '1234.50'")
    return value


Money = Annotated[
    Decimal,
    BeforeValidator(_decimal_string),
    WithJsonSchema({"type": "string", "pattern": MONEY_PATTERN}),
]
"""An exact amount: ``"1234.50"`` in the answer, a Decimal here."""
Text = Annotated[str, Field(max_length=2000)]
Name = Annotated[str, Field(max_length=300)]
Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$")]


class Answer(BaseModel):
    """The fields every answer has (the model's narrative of the document)."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    summary: Text
    """Two or three sentences on what the document is and says."""
    confidence: float = Field(ge=0, le=1)
    """How sure the model is of the figures it read (0-1)."""
    recommendations: list[Text] = Field(max_length=10)
    """What the accountant should do or check."""


class TaxReturn(Answer):
    """A filed or draft income tax return."""

    form: Name
    """The form (``1040``, ``1120``, ``SA100``, …)."""
    tax_year: int
    filer_name: Name
    filing_status: Name | None
    total_income: Money | None
    adjusted_gross_income: Money | None
    taxable_income: Money | None
    total_tax: Money | None
    refund: Money | None
    amount_owed: Money | None


class FinancialStatement(Answer):
    """An income statement, balance sheet or cash-flow statement."""

    statement: Literal["income_statement", "balance_sheet", "cash_flow", "other"]
    company: Name
    currency: Currency
    period_start: date | None
    period_end: date | None
    revenue: Money | None
    expenses: Money | None
    net_income: Money | None
    total_assets: Money | None
    total_liabilities: Money | None
    equity: Money | None


class Receipt(Answer):
    """A receipt for a purchase."""

    merchant: Name
    purchase_date: date | None
    currency: Currency
    subtotal: Money | None
    tax: Money | None
    total: Money


class InvoiceLine(BaseModel):
    """One line of an invoice."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    description: Name
    quantity: Money | None
    unit_price: Money | None
    amount: Money


class Invoice(Answer):
    """An invoice (issued or received)."""

    invoice_number: Name | None
    vendor: Name
    customer: Name | None
    issue_date: date | None
    due_date: date | None
    currency: Currency
    lines: list[InvoiceLine] = Field(max_length=500)
    subtotal: Money | None
    tax: Money | None
    total: Money


class BankStatement(Answer):
    """A bank account's statement for a period."""

    bank: Name
    account_last4: Annotated[str, Field(pattern=r"^[0-9]{4}$")] | None
    currency: Currency
    period_start: date | None
    period_end: date | None
    opening_balance: Money | None
    closing_balance: Money | None
    total_deposits: Money | None
    total_withdrawals: Money | None


class Amount(BaseModel):
    """A labelled amount found in a document."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    label: Name
    amount: Money
    currency: Currency | None


class Generic(Answer):
    """Any other document."""

    title: Name
    kind: Name
    """What kind of document it is, in a few words."""
    key_points: list[Text] = Field(max_length=20)
    amounts: list[Amount] = Field(max_length=50)


SCHEMAS: dict[DocumentType, type[Answer]] = {
    "tax_return": TaxReturn,
    "financial_statement": FinancialStatement,
    "receipt": Receipt,
    "invoice": Invoice,
    "bank_statement": BankStatement,
    "generic": Generic,
}
"""The answer model of each document type."""
