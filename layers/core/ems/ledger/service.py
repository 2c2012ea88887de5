"""Reading the ledger: a site's balance (the sum of its entries) and its entries, a page at a time."""

from __future__ import annotations

from ems.ledger.models import Balance
from ems.ledger.ports import Entries


def balance(site_id: str, currency: str, limit: int, next_token: str | None, ledger: Entries) -> Balance:
    page = ledger.entries(site_id, limit, next_token)
    return Balance(
        site_id=site_id, balance=ledger.total(site_id, currency), currency=currency, entries=page.items,
        count=page.count, next_token=page.next_token,
    )  # fmt: skip
