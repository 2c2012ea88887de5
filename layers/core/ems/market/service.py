"""Orders, the clearing of a slot and its settlement, and what a site sees of the market.

- `place_order` checks an order against its slot (aligned to 15 minutes, before its gate closure, at
  most a week ahead) and the site's tariff at that slot: a buyer never bids above the grid import
  price (it could buy from the grid for that), a seller never asks below the feed-in price.
- `clear_slot` closes the slot (its book is frozen from then on), runs the auction on the book,
  settles every trade with its two ledger entries (ems.market.store: transactions of 25 trades,
  idempotent by trade id), records the fills and the clearing, and publishes `MarketCleared` once.
  A re-run, or a run at the same time, computes the same trades and writes none of them twice.
- A site sees its own orders and its side of its trades, never who was on the other side.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from functools import partial

from ems.core.clock import Clock, iso_ms, parse_time, to_iso, utc_now
from ems.core.errors import Conflict, Forbidden, Invalid, NotFound
from ems.core.events import DomainEvent, EventPublisher
from ems.core.observability import logger
from ems.core.pagination import MAX_LIMIT, every
from ems.ledger.models import LedgerEntry
from ems.market import auction
from ems.market.models import (
    GRID_METER_TYPES,
    IMBALANCE_DELAY_MS,
    IMBALANCE_SOURCE,
    LEDGER_SOURCE,
    MARKET_CLEARED,
    MARKET_SOURCE,
    MAX_DAYS_AHEAD,
    SLOT_MS,
    Clearing,
    ClearingReport,
    DepthLevel,
    ImbalanceReport,
    MarketRules,
    MarketStatus,
    MarkupsIn,
    Order,
    OrderIn,
    OrderPage,
    OrdersQuery,
    Prices,
    Proposal,
    SiteImbalance,
    SiteTrade,
    SlotDepth,
    TradesQuery,
    TransactionIn,
    TransactionsPage,
)
from ems.market.ports import GridMeters, Ledger, MarketBook, Rollups, SiteDirectory, TariffSource, TradeLegs
from ems.tariffs.models import default_tariff, price_at

ORDER_ID = re.compile(r"^\d{13}-\d{13}-[0-9a-f]{8}$")
DAY_MS = 24 * 3_600_000
STATUS_SLOTS = 96  # the status shows the next day of slots that have orders


@dataclass(frozen=True)
class Stores:
    book: MarketBook
    sites: SiteDirectory
    tariffs: TariffSource
    ledger: Ledger
    events: EventPublisher
    meters: GridMeters | None = None  # with rollups: imbalance after delivery (None: not settled)
    rollups: Rollups | None = None


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def slot_of(value: str | int | float, field: str = "delivery_start") -> int:
    """A delivery start as its slot (epoch ms); 422 unless it starts a 15-minute slot."""
    slot_ms = _ms(parse_time(value, field))
    if slot_ms % SLOT_MS:
        raise Invalid("must start a 15-minute slot (:00, :15, :30 or :45, whole minutes)", field)
    return slot_ms


def _kwh(wh: int) -> Decimal:
    return Decimal(wh) / 1000


def _wh(kwh: Decimal) -> int:
    return int(kwh * 1000)


# ---------------------------------------------------------------- orders


def tariff_bounds(site_id: str, slot_ms: int, s: Stores) -> tuple[Decimal, Decimal]:
    """(grid import price, feed-in price) per kWh at the slot's start, from the site's tariff."""
    site = s.sites.get_site(site_id)
    tariff = s.tariffs.get_tariff(site_id) or default_tariff()
    at = datetime.fromtimestamp(slot_ms / 1000, UTC)
    return (
        Decimal(str(price_at(tariff.import_price, at, site.timezone))),
        Decimal(str(price_at(tariff.export_price, at, site.timezone))),
    )


def open_slot(value: str | int | float, rules: MarketRules, moment: int) -> int:
    """The slot `value` starts, while its gate is open and at most a week ahead; 422 otherwise."""
    slot_ms = slot_of(value)
    gate_ms = rules.gate_closure_ms(slot_ms)
    if slot_ms <= moment:
        raise Invalid("must be in the future", "delivery_start")
    if gate_ms <= moment:
        raise Invalid(
            f"the slot's gate closed at {iso_ms(gate_ms)} ({rules.gate_closure_minutes} minutes before delivery)",
            "delivery_start",
        )
    if slot_ms > moment + MAX_DAYS_AHEAD * DAY_MS:
        raise Invalid(f"must be at most {MAX_DAYS_AHEAD} days ahead", "delivery_start")
    return slot_ms


def check_limit(site_id: str, side: str, price: Decimal, slot_ms: int, s: Stores) -> None:
    """A buyer never above the grid import price of the slot, a seller never below the feed-in price."""
    import_price, feed_in_price = tariff_bounds(site_id, slot_ms, s)
    if side == "buy" and price > import_price:
        raise Invalid(
            f"a buyer's limit may not be above the grid import price of the slot, {import_price} per kWh",
            "price_per_kwh",
        )
    if side == "sell" and price < feed_in_price:
        raise Invalid(
            f"a seller's limit may not be below the feed-in price of the slot, {feed_in_price} per kWh",
            "price_per_kwh",
        )


def place_order(site_id: str, body: OrderIn, s: Stores, rules: MarketRules, now: Clock = utc_now) -> Order:
    moment = _ms(now())
    slot_ms = open_slot(body.delivery_start, rules, moment)
    gate_ms = rules.gate_closure_ms(slot_ms)
    check_limit(site_id, body.side, body.price_per_kwh, slot_ms, s)
    order = Order(
        order_id=f"{slot_ms:013d}-{moment:013d}-{secrets.token_hex(4)}",
        site_id=site_id, side=body.side, quantity_kwh=body.quantity_kwh, price_per_kwh=body.price_per_kwh,
        delivery_start=iso_ms(slot_ms), gate_closure=iso_ms(gate_ms), created_at=iso_ms(moment),
        client_token=body.client_token,
    )  # fmt: skip
    placed = s.book.place(order, slot_ms)
    if placed.order_id != order.order_id and not _same_order(
        placed, body, slot_ms
    ):  # a retry returns the first
        raise Conflict("this client_token was used for another order", "client_token")
    return placed


def _same_order(placed: Order, body: OrderIn, slot_ms: int) -> bool:
    return (placed.side, placed.quantity_kwh, placed.price_per_kwh, placed.delivery_start) == (
        body.side,
        body.quantity_kwh,
        body.price_per_kwh,
        iso_ms(slot_ms),
    )


def _order_slot(order_id: str) -> int:
    if not ORDER_ID.match(order_id):
        raise NotFound(f"no order {order_id!r} of this site", "id")
    return int(order_id[:13])


def cancel_order(site_id: str, order_id: str, s: Stores, rules: MarketRules, now: Clock = utc_now) -> Order:
    slot_ms = _order_slot(order_id)
    order = s.book.get_order(site_id, order_id)
    if order.status != "open":
        if order.status == "cancelled":
            return order
        raise Invalid(f"the order is {order.status.replace('_', ' ')}: only an open order is cancelled", "id")
    if rules.gate_closure_ms(slot_ms) <= _ms(now()):
        raise Invalid(f"the slot's gate closed at {order.gate_closure}: the order stays in its book", "id")
    return s.book.cancel(site_id, order_id, slot_ms)


def list_orders(site_id: str, q: OrdersQuery, book: MarketBook) -> OrderPage:
    page = book.orders(site_id, q.limit, q.next_token)
    return OrderPage(items=page.items, count=page.count, next_token=page.next_token)


def list_trades(site_id: str, q: TradesQuery, book: MarketBook) -> TransactionsPage:
    page = book.trades(site_id, q.limit, q.next_token)
    waiting = book.proposals(site_id) if q.next_token is None else []  # with the first page
    return TransactionsPage(items=page.items, count=page.count, next_token=page.next_token, proposals=waiting)


# ---------------------------------------------------------------- clearing and settlement


def book_order(order: Order) -> auction.BookOrder:
    return auction.BookOrder(
        order.order_id, order.site_id, order.side, _wh(order.quantity_kwh), order.price_per_kwh,
        entered_ms=int(order.order_id[14:27]),
    )  # fmt: skip


def trade_id(slot_ms: int, fill: auction.Fill) -> str:
    """Derived from the two orders (they meet at most once in a slot), so every run names it alike."""
    return f"{slot_ms:013d}-{hashlib.sha256(f'{fill.bid_id}|{fill.offer_id}'.encode()).hexdigest()[:16]}"


def trade_legs(
    trade: str, buyer: str, seller: str, wh: int, price: Decimal, slot_ms: int, orders: tuple[str | None, str | None],
    kind: str, currency: str, at: str,
) -> TradeLegs:  # fmt: skip
    """A trade's two sides and their ledger entries: the buyer owes `amount`, the seller is owed it
    (a site on both sides of one trade gets one entry of 0)."""
    money = auction.amount(wh, price)
    legs = tuple(
        SiteTrade(
            trade_id=trade,
            site_id=site,
            kind=kind,
            side=side,
            quantity_kwh=_kwh(wh),
            price_per_kwh=price,
            amount=sign * money,
            currency=currency,
            delivery_start=iso_ms(slot_ms),
            order_id=order_id,
            settled_at=at,
        )
        for site, side, sign, order_id in ((buyer, "buy", -1, orders[0]), (seller, "sell", 1, orders[1]))
    )
    owed: dict[str, Decimal] = defaultdict(Decimal)
    for leg in legs:
        owed[leg.site_id] += leg.amount
    entries = tuple(
        LedgerEntry(
            site_id=site,
            source=LEDGER_SOURCE,
            source_id=trade,
            amount=total,
            currency=currency,
            at=at,
            memo=f"{kind} {'purchase' if total < 0 else 'sale'} for {iso_ms(slot_ms)}",
        )
        for site, total in owed.items()
    )
    return TradeLegs(trade, legs, entries)


def clear_slot(
    delivery_start: str | int | float, s: Stores, rules: MarketRules, now: Clock = utc_now
) -> ClearingReport:
    slot_ms = slot_of(delivery_start)
    at = to_iso(now())
    s.book.close(slot_ms, at)  # from here on the book cannot change
    orders = s.book.book(slot_ms)
    result = auction.clear([book_order(o) for o in orders])
    trades = [
        trade_legs(
            trade_id(slot_ms, f),
            f.buyer,
            f.seller,
            f.quantity_wh,
            result.price,
            slot_ms,
            (f.bid_id, f.offer_id),
            "auction",
            rules.currency,
            at,
        )
        for f in result.fills
        if result.price is not None
    ]
    settled = s.book.settle(trades, s.ledger)
    filled: dict[str, int] = defaultdict(int)
    for f in result.fills:
        filled[f.bid_id] += f.quantity_wh
        filled[f.offer_id] += f.quantity_wh
    closed = [_filled(o, filled.get(o.order_id, 0), result.price) for o in orders]
    clearing = Clearing(
        delivery_start=iso_ms(slot_ms), gate_closure=iso_ms(rules.gate_closure_ms(slot_ms)),
        price_per_kwh=result.price, interval_low=result.low, interval_high=result.high,
        volume_kwh=_kwh(result.volume_wh), orders=len(orders), trades=len(trades), cleared_at=at,
    )  # fmt: skip
    first_run = s.book.record(slot_ms, clearing, closed)
    if first_run:
        sites = sorted({o.site_id for o in orders})
        s.events.publish(
            [
                DomainEvent(
                    MARKET_SOURCE,
                    MARKET_CLEARED,
                    {"sites": sites, "clearing": clearing.model_dump(mode="json")},
                )
            ]
        )
    logger.info(
        "slot cleared",
        extra={"slot": iso_ms(slot_ms), "orders": len(orders), "trades": len(trades), "settled": settled,
               "first_run": first_run},
    )  # fmt: skip
    return ClearingReport(clearing=clearing, settled=settled, first_run=first_run)


def _filled(order: Order, wh: int, price: Decimal | None) -> Order:
    whole = _wh(order.quantity_kwh)
    status = "unfilled" if wh == 0 else "filled" if wh == whole else "partially_filled"
    return order.model_copy(
        update={"status": status, "filled_kwh": _kwh(wh), "clearing_price": price if wh else None}
    )


def clear_due(s: Stores, rules: MarketRules, now: Clock = utc_now) -> list[ClearingReport]:
    """The schedule at each gate closure: every slot with orders whose gate has closed and that is not
    cleared yet (a run missed or late is caught up by the next one)."""
    moment = _ms(now())
    gate_ms = rules.gate_closure_minutes * 60_000
    due = [slot for slot in s.book.open_slots(moment - DAY_MS, moment + gate_ms) if slot - gate_ms <= moment]
    return [clear_slot(slot, s, rules, now) for slot in due]


# ---------------------------------------------------------------- the market as a site sees it


def next_gate_closure_ms(moment_ms: int, rules: MarketRules) -> int:
    gate_ms = rules.gate_closure_minutes * 60_000
    return ((moment_ms + gate_ms) // SLOT_MS + 1) * SLOT_MS - gate_ms


def depth(orders: list[Order], side: str) -> list[DepthLevel]:
    """Open quantity at each price level of one side, best first: no order ids, no sites."""
    levels: dict[Decimal, list[Decimal]] = defaultdict(list)
    for order in orders:
        if order.side == side and order.status == "open":
            levels[order.price_per_kwh].append(order.quantity_kwh)
    prices = sorted(levels, reverse=side == "buy")
    return [
        DepthLevel(price_per_kwh=p, quantity_kwh=sum(levels[p], Decimal(0)), orders=len(levels[p]))
        for p in prices
    ]


def market_status(s: Stores, rules: MarketRules, now: Clock = utc_now) -> MarketStatus:
    moment = _ms(now())
    slots = [
        slot
        for slot in s.book.open_slots(moment, moment + MAX_DAYS_AHEAD * DAY_MS)
        if rules.gate_closure_ms(slot) > moment
    ][:STATUS_SLOTS]
    depths = []
    for slot in slots:
        orders = s.book.book(slot)
        depths.append(
            SlotDepth(
                delivery_start=iso_ms(slot),
                gate_closure=iso_ms(rules.gate_closure_ms(slot)),
                bids=depth(orders, "buy"),
                offers=depth(orders, "sell"),
            )
        )
    return MarketStatus(
        slots=depths, last_clearing=s.book.last_clearing(),
        next_gate_closure=iso_ms(next_gate_closure_ms(moment, rules)), currency=rules.currency,
    )  # fmt: skip


# ---------------------------------------------------------------- bilateral transactions


def propose_transaction(
    site_id: str, body: TransactionIn, s: Stores, rules: MarketRules, now: Clock = utc_now
) -> Proposal:
    moment = _ms(now())
    slot_ms = open_slot(body.delivery_start, rules, moment)
    if body.peer == site_id:
        raise Invalid("a site does not trade with itself", "peer")
    try:
        s.sites.get_site(body.peer)
    except NotFound as exc:
        raise Invalid(f"no site {body.peer!r}", "peer") from exc
    check_limit(site_id, body.side, body.price_per_kwh, slot_ms, s)
    proposal = Proposal(
        transaction_id=f"{slot_ms:013d}-{secrets.token_hex(4)}", proposer=site_id, peer=body.peer, side=body.side,
        quantity_kwh=body.quantity_kwh, price_per_kwh=body.price_per_kwh, delivery_start=iso_ms(slot_ms),
        proposed_at=iso_ms(moment),
    )  # fmt: skip
    s.book.propose(proposal)
    return proposal


def accept_transaction(
    site_id: str, transaction_id: str, s: Stores, rules: MarketRules, now: Clock = utc_now
) -> Proposal:
    """The peer accepts: the trade settles at once at the agreed price (its sides and ledger entries
    with the acceptance, in one transaction); accepting again returns the accepted transaction."""
    moment = _ms(now())
    proposal = s.book.get_proposal(site_id, transaction_id)
    if proposal.peer != site_id:
        raise Forbidden("only the peer accepts a transaction", "id")
    if proposal.status == "accepted":
        return proposal
    slot_ms = slot_of(proposal.delivery_start)
    if rules.gate_closure_ms(slot_ms) <= moment:
        raise Invalid(f"the slot's gate closed at {iso_ms(rules.gate_closure_ms(slot_ms))}", "id")
    peer_side = "buy" if proposal.side == "sell" else "sell"
    check_limit(site_id, peer_side, proposal.price_per_kwh, slot_ms, s)
    buyer, seller = (
        (proposal.peer, proposal.proposer) if proposal.side == "sell" else (proposal.proposer, proposal.peer)
    )
    at = iso_ms(moment)
    trade = f"{transaction_id}-bilateral"
    legs = trade_legs(
        trade, buyer, seller, _wh(proposal.quantity_kwh), proposal.price_per_kwh, slot_ms, (None, None), "bilateral",
        rules.currency, at,
    )  # fmt: skip
    accepted = proposal.model_copy(update={"status": "accepted", "accepted_at": at, "trade_id": trade})
    return s.book.accept(accepted, legs, s.ledger)


# ---------------------------------------------------------------- suggested prices


def prices(site_id: str, s: Stores, rules: MarketRules, now: Clock = utc_now) -> Prices:
    """buy = market x (1 - buy%), sell = market x (1 + sell%), where market is the last clearing's
    price, or with none yet the middle of the site's import and feed-in prices at the next open slot."""
    # None set: no markups (made here, not at import, so MarkupsIn is built only where it is used).
    markups = s.book.markups(site_id) or MarkupsIn(buy_percentage=Decimal(0), sell_percentage=Decimal(0))
    last = s.book.last_clearing()
    if last is not None and last.price_per_kwh is not None:
        market, basis = last.price_per_kwh, "last_clearing"
    else:
        gate = next_gate_closure_ms(_ms(now()), rules)
        import_price, feed_in_price = tariff_bounds(site_id, gate + rules.gate_closure_minutes * 60_000, s)
        market, basis = (import_price + feed_in_price) / 2, "tariff"
    return Prices(
        buy_percentage=markups.buy_percentage, sell_percentage=markups.sell_percentage,
        market_price_per_kwh=market, basis=basis,
        buy_price_per_kwh=market * (1 - markups.buy_percentage / 100),
        sell_price_per_kwh=market * (1 + markups.sell_percentage / 100), currency=rules.currency,
    )  # fmt: skip


def put_markups(
    site_id: str, markups: MarkupsIn, s: Stores, rules: MarketRules, now: Clock = utc_now
) -> Prices:
    s.book.put_markups(site_id, markups)
    return prices(site_id, s, rules, now)


# ---------------------------------------------------------------- imbalance after delivery
#
# After delivery each site's metered net export in the slot (export - import at its grid meters,
# from the 15-minute rollup of power_w) is compared with what it traded (sold - bought). Only the
# traded energy is settled; the rest is ordinary grid supply, billed by the site's supplier:
#   a net seller that exported less than it sold owes its shortfall (at most what it sold) at the
#     slot's grid import price: the buyers got that energy from the grid;
#   a net buyer that imported less than it bought is owed its surplus (at most what it bought) at
#     the slot's feed-in price: the energy it paid for went to the grid.
# Seller 2 kWh sold, 1.5 exported: -0.5 kWh x import. Buyer 2 bought, 1 imported: +1 kWh x feed-in.


def imbalance_kwh(traded_export: Decimal, metered_export: Decimal) -> Decimal:
    if traded_export > 0:
        return -min(traded_export, max(Decimal(0), traded_export - metered_export))
    if traded_export < 0:
        return min(-traded_export, max(Decimal(0), metered_export - traded_export))
    return Decimal(0)


def metered_export_kwh(site_id: str, slot_ms: int, meters: GridMeters, rollups: Rollups) -> Decimal | None:
    """Net export (kWh) at the site's grid meters in the slot; None unless every meter reported in it."""
    ids = [
        sensor.sensor_id
        for sensor_type in GRID_METER_TYPES
        for sensor in every(partial(meters.list_sensors, site_id, None, sensor_type, MAX_LIMIT))
    ]
    if not ids:
        return None
    buckets = rollups.read_rollups(site_id, ids, "power_w", "15m", slot_ms, slot_ms + SLOT_MS)
    means_w = [buckets.get(i, {}).get(slot_ms) for i in ids]
    if any(b is None or not b.count for b in means_w):
        return None
    import_w = sum(b.sum / b.count for b in means_w if b is not None)
    return -Decimal(str(round(import_w / 1000 * SLOT_MS / 3_600_000, 3)))  # mean W over a quarter hour


def settle_imbalance(slot_ms: int, s: Stores, rules: MarketRules, now: Clock = utc_now) -> ImbalanceReport:
    assert s.meters is not None and s.rollups is not None
    at = to_iso(now())
    sites, entries = [], []
    for site_id, traded in sorted(s.book.positions(slot_ms).items()):
        if traded == 0:
            continue
        metered = metered_export_kwh(site_id, slot_ms, s.meters, s.rollups)
        deviation = Decimal(0) if metered is None else imbalance_kwh(traded, metered)
        import_price, feed_in_price = tariff_bounds(site_id, slot_ms, s)
        money = deviation * (import_price if deviation < 0 else feed_in_price)
        sites.append(
            SiteImbalance(
                site_id=site_id,
                traded_export_kwh=traded,
                metered_export_kwh=metered,
                imbalance_kwh=deviation,
                amount=money,
            )
        )
        if money:
            entries.append(
                LedgerEntry(
                    site_id=site_id,
                    source=IMBALANCE_SOURCE,
                    source_id=f"{slot_ms:013d}",
                    amount=money,
                    currency=rules.currency,
                    at=at,
                    reading_ms=slot_ms + SLOT_MS - 1,
                    memo=f"imbalance of {deviation} kWh in {iso_ms(slot_ms)}",
                )
            )
    posted = s.ledger.post(entries)
    s.book.imbalance_settled(slot_ms)
    logger.info("imbalance settled", extra={"slot": iso_ms(slot_ms), "sites": len(sites), "posted": posted})
    return ImbalanceReport(delivery_start=iso_ms(slot_ms), sites=sites, posted=posted)


def settle_delivered(s: Stores, rules: MarketRules, now: Clock = utc_now) -> list[ImbalanceReport]:
    """The schedule: every cleared slot that ended IMBALANCE_DELAY_MS ago and is not settled yet."""
    if s.meters is None or s.rollups is None:
        return []
    before = _ms(now()) - IMBALANCE_DELAY_MS - SLOT_MS
    return [settle_imbalance(slot, s, rules, now) for slot in s.book.delivered_slots(before)]
