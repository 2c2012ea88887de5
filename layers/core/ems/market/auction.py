"""One slot's uniform-price double auction: a pure function of the book (no I/O, no clock).

The rule (DESIGN.md "Peer-to-peer market", issue 13):

1. Bids sorted by limit price descending, offers by limit price ascending; ties by time of entry
   (then order id, so the order is total and the result deterministic).
2. Walk both lists matching the best remaining bid with the best remaining offer while
   bid >= offer, each match for the smaller of the two remaining quantities (partial fills). This
   trades the largest volume that any single price can clear, and with the highest bids and the
   lowest offers, so it maximises the traded surplus.
3. The clearing price is the midpoint of the interval [low, high] of prices at which every accepted
   order stays within its limit and no rejected quantity would want to trade:
       low  = max(highest accepted offer, highest rejected bid)
       high = min(lowest accepted bid, lowest rejected offer)
   where "rejected" is any quantity left over, including the rest of a partly filled order (so a
   partly filled order's limit is the price). A side with nothing left over sets no bound.
   The interval is never empty: the last match had offer <= bid, and the walk stopped because the
   next bid was below the next offer (or a side ran out).

Worked example (one kWh each): bids 10 and 8, offers 5 and 9. Bid 10 meets offer 5: one kWh trades.
Bid 8 < offer 9: the walk stops. Accepted: bid 10, offer 5; rejected: bid 8, offer 9.
low = max(5, 8) = 8, high = min(10, 9) = 9: the interval is [8, 9] and the price 8.5.

Cost: two sorts, O(n log n), and one linear walk. Energy is integer Wh and prices are Decimals, so
every amount (Wh x price / 1000) is exact and money and energy sum to zero.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from operator import attrgetter
from typing import Literal, NamedTuple

Side = Literal["buy", "sell"]
TWO = Decimal(2)


@dataclass(frozen=True, slots=True)
class BookOrder:
    order_id: str
    site_id: str
    side: Side
    quantity_wh: int  # > 0
    limit_price: Decimal  # per kWh
    entered_ms: int  # time of entry: breaks ties at one price


class Fill(NamedTuple):
    """`quantity_wh` of bid `bid_id` (from `buyer`) met offer `offer_id` (from `seller`). A tuple: a
    large slot makes tens of thousands, and a frozen dataclass's __init__ is several times slower."""

    bid_id: str
    offer_id: str
    buyer: str
    seller: str
    quantity_wh: int


@dataclass(frozen=True, slots=True)
class Clearing:
    price: Decimal | None  # None: nothing traded
    low: Decimal | None
    high: Decimal | None
    volume_wh: int
    fills: tuple[Fill, ...]


def amount(quantity_wh: int, price: Decimal) -> Decimal:
    """What `quantity_wh` costs at `price` per kWh, exactly."""
    return Decimal(quantity_wh) * price / 1000


def clear(book: list[BookOrder]) -> Clearing:
    # Stable sorts, least significant key first: order id, time of entry, then price (a reverse sort
    # keeps the time order within a price). One key a sort: no key tuples to build.
    by_entry = sorted(book, key=attrgetter("order_id"))
    by_entry.sort(key=attrgetter("entered_ms"))
    bids = sorted((o for o in by_entry if o.side == "buy"), key=attrgetter("limit_price"), reverse=True)
    offers = sorted((o for o in by_entry if o.side == "sell"), key=attrgetter("limit_price"))
    fills: list[Fill] = []
    n_bids, n_offers = len(bids), len(offers)
    i = j = volume = 0
    bid_left = bids[0].quantity_wh if bids else 0
    offer_left = offers[0].quantity_wh if offers else 0
    last_bid = last_offer = Decimal(0)  # the last match's limits: lowest accepted bid, highest offer
    while i < n_bids and j < n_offers and bids[i].limit_price >= offers[j].limit_price:
        bid, offer = bids[i], offers[j]
        last_bid, last_offer = bid.limit_price, offer.limit_price
        quantity = bid_left if bid_left < offer_left else offer_left
        fills.append(Fill(bid.order_id, offer.order_id, bid.site_id, offer.site_id, quantity))
        volume += quantity
        bid_left -= quantity
        offer_left -= quantity
        if bid_left == 0:
            i += 1
            bid_left = bids[i].quantity_wh if i < n_bids else 0
        if offer_left == 0:
            j += 1
            offer_left = offers[j].quantity_wh if j < n_offers else 0
    if not fills:
        return Clearing(price=None, low=None, high=None, volume_wh=0, fills=())
    # The first bid and offer with quantity left over (i, j point at them) are the best rejected ones.
    low = max(last_offer, bids[i].limit_price) if i < n_bids else last_offer
    high = min(last_bid, offers[j].limit_price) if j < n_offers else last_bid
    return Clearing(price=(low + high) / TWO, low=low, high=high, volume_wh=volume, fills=tuple(fills))
