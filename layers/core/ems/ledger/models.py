"""Ledger entries and balances (no I/O).

An entry is keyed by (source, source id, site): `p2p` and a trade id, `dr` and an invitation id,
`imbalance` and a slot. The same entry written twice is one entry. `amount` is what the site is owed
(positive) or owes (negative), exact (Decimal); a balance is the sum of a site's entries, never stored.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from pydantic import Field, PlainSerializer

from ems.core.models import Model

# Exact in the service and the table; a JSON number on the wire (API.md answers numbers).
Exact = Annotated[Decimal, PlainSerializer(float, return_type=float, when_used="json")]
SOURCE_PATTERN = r"^[a-z][a-z0-9_-]{0,31}$"


class LedgerEntry(Model):
    site_id: str
    source: str = Field(pattern=SOURCE_PATTERN)
    source_id: str = Field(min_length=1, max_length=200)
    amount: Exact
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    at: str  # ISO 8601: when it was owed
    memo: str | None = None
    # The newest reading the amount derives from (epoch ms; an imbalance's metered slot), so that a
    # token's data-sharing limits apply to it; None: derived from no reading (a trade, a benefit).
    reading_ms: int | None = None


class Balance(Model):
    """GET /p2p/balance: the sum of every entry of the site, and one page of its entries."""

    site_id: str
    balance: Exact
    currency: str
    entries: list[LedgerEntry]
    count: int
    next_token: str | None = None
    withheld: int = 0  # entries derived from readings this token may not see: in neither list nor sum
