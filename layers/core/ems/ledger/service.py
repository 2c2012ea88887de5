"""Reading the ledger: a site's balance (the sum of its entries) and its entries, a page at a time.

An entry derived from readings (`reading_ms` set: an imbalance, from a slot's metered energy) is a
15-minute figure of the site: a token that may not see 15-minute data (time_aggregation 1h or 1d),
or that is embargoed past that reading, gets neither the entry nor its share of the sum.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from functools import partial

from ems.auth.models import Claims
from ems.core.clock import Clock, utc_now
from ems.core.pagination import MAX_LIMIT, every
from ems.ledger.models import Balance, LedgerEntry
from ems.ledger.ports import Entries

FIFTEEN_MINUTE_GRAINS = ("raw", "15m")


def within_limits(entry: LedgerEntry, caller: Claims, now: datetime) -> bool:
    if entry.reading_ms is None:
        return True
    cutoff = caller.embargo_cutoff_ms(now)
    return caller.time_aggregation in FIFTEEN_MINUTE_GRAINS and (cutoff is None or entry.reading_ms <= cutoff)


def balance(
    site_id: str, currency: str, limit: int, next_token: str | None, caller: Claims, ledger: Entries,
    now: Clock = utc_now,
) -> Balance:  # fmt: skip
    moment = now()
    seen = partial(within_limits, caller=caller, now=moment)
    everything = list(every(partial(ledger.entries, site_id, MAX_LIMIT)))
    total = sum((e.amount for e in everything if e.currency == currency and seen(e)), Decimal(0))
    page = ledger.entries(site_id, limit, next_token)
    shown = [e for e in page.items if seen(e)]
    return Balance(
        site_id=site_id, balance=total, currency=currency, entries=shown, count=len(shown),
        next_token=page.next_token, withheld=sum(not seen(e) for e in everything),
    )  # fmt: skip
