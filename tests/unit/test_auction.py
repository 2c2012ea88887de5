"""The slot auction (ems.market.auction) on books worked out by hand, and its invariants on random books."""

from __future__ import annotations

import random
from collections import defaultdict
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ems.market.auction import BookOrder, Clearing, Side, amount, clear

settings.register_profile(
    "auction", deadline=None, max_examples=300, suppress_health_check=[HealthCheck.too_slow]
)
AUCTION = settings.get_profile("auction")

_seq = iter(range(1, 10**9))


def order(side: Side, kwh: float, price: str, site: str | None = None, at: int | None = None) -> BookOrder:
    n = next(_seq)
    return BookOrder(
        order_id=f"{side[0]}{n}", site_id=site or f"site{n}", side=side, quantity_wh=round(kwh * 1000),
        limit_price=Decimal(price), entered_ms=n if at is None else at,
    )  # fmt: skip


def bid(kwh: float, price: str, **kw: object) -> BookOrder:
    return order("buy", kwh, price, **kw)  # type: ignore[arg-type]


def offer(kwh: float, price: str, **kw: object) -> BookOrder:
    return order("sell", kwh, price, **kw)  # type: ignore[arg-type]


def filled(result: Clearing) -> dict[str, int]:
    by_order: dict[str, int] = defaultdict(int)
    for f in result.fills:
        by_order[f.bid_id] += f.quantity_wh
        by_order[f.offer_id] += f.quantity_wh
    return dict(by_order)


# ---------------------------------------------------------------- by hand


def test_the_worked_example_of_the_issue() -> None:
    """Bids 10 and 8, offers 5 and 9, one kWh each: one kWh trades, interval [8, 9], price 8.5."""
    b10, b8, o5, o9 = bid(1, "10"), bid(1, "8"), offer(1, "5"), offer(1, "9")
    result = clear([b8, o9, b10, o5])
    assert (result.low, result.high, result.price) == (Decimal(8), Decimal(9), Decimal("8.5"))
    assert result.volume_wh == 1000
    assert filled(result) == {b10.order_id: 1000, o5.order_id: 1000}


def test_an_interval_with_width_clears_at_its_midpoint() -> None:
    """Bids 12 and 11 (1 kWh each) meet offers 3 and 4: both trade; nothing is rejected, so the
    interval is [highest accepted offer 4, lowest accepted bid 11] and the price 7.5."""
    result = clear([bid(1, "12"), bid(1, "11"), offer(1, "3"), offer(1, "4")])
    assert (result.low, result.high, result.price) == (Decimal(4), Decimal(11), Decimal("7.5"))
    assert result.volume_wh == 2000


def test_partial_fill_sets_the_price_at_the_partly_filled_limit() -> None:
    """Bid 3 kWh at 10; offers 1 kWh at 4 and 1 kWh at 6: 2 kWh trade, the bid keeps 1 kWh unfilled,
    so a rejected bid at 10 and the accepted bid at 10 pin the price to 10."""
    b = bid(3, "10")
    o4, o6 = offer(1, "4"), offer(1, "6")
    result = clear([b, o4, o6])
    assert result.volume_wh == 2000
    assert filled(result) == {b.order_id: 2000, o4.order_id: 1000, o6.order_id: 1000}
    assert (result.low, result.high, result.price) == (Decimal(10), Decimal(10), Decimal(10))


def test_a_partly_filled_offer_sets_the_price_at_its_limit() -> None:
    """Bids 1 kWh at 9 and 1 kWh at 7; offer 5 kWh at 6: 2 kWh trade at 6 (3 kWh left at 6)."""
    result = clear([bid(1, "9"), bid(1, "7"), offer(5, "6")])
    assert result.volume_wh == 2000
    assert result.price == Decimal(6)


def test_no_crossing_orders_trade_nothing() -> None:
    result = clear([bid(1, "5"), bid(2, "4"), offer(1, "6"), offer(1, "7")])
    assert (result.price, result.volume_wh, result.fills) == (None, 0, ())


def test_one_side_empty_trades_nothing() -> None:
    assert clear([bid(1, "5"), bid(2, "4")]).volume_wh == 0
    assert clear([offer(1, "5")]).price is None
    assert clear([]).fills == ()


def test_ties_at_one_price_fill_by_time_of_entry() -> None:
    """Two offers at 5 for a 1 kWh bid at 9: the earlier one fills, whatever order the book lists them."""
    early, late = offer(1, "5", at=100), offer(1, "5", at=200)
    b = bid(1, "9", at=150)
    for book in ([late, early, b], [b, early, late], [early, b, late]):
        result = clear(book)
        assert filled(result) == {b.order_id: 1000, early.order_id: 1000}
        # Rejected offer at 5 and accepted offer at 5: price 5 (low = max(5, no bid left) = 5, high = 5).
        assert result.price == Decimal(5)


def test_money_of_a_fill_is_exact() -> None:
    assert amount(333, Decimal("0.1")) == Decimal("0.0333")
    assert amount(1000, Decimal("8.5")) == Decimal("8.5")


# ---------------------------------------------------------------- invariants on random books

prices = st.integers(min_value=1, max_value=40).map(lambda n: Decimal(n) / 4)  # 0.25 .. 10, with ties
orders = st.lists(
    st.tuples(st.sampled_from(["buy", "sell"]), st.integers(min_value=1, max_value=5_000), prices),
    max_size=25,
)


def book_of(rows: list[tuple[str, int, Decimal]]) -> list[BookOrder]:
    return [
        BookOrder(f"o{n}", f"s{n % 5}", side, wh, price, n)  # type: ignore[arg-type]
        for n, (side, wh, price) in enumerate(rows)
    ]


def best_uniform_volume(book: list[BookOrder]) -> int:
    """The brute force: at each limit price p of the book, min(demand at p, supply at p); the best."""
    best = 0
    for p in {o.limit_price for o in book}:
        demand = sum(o.quantity_wh for o in book if o.side == "buy" and o.limit_price >= p)
        supply = sum(o.quantity_wh for o in book if o.side == "sell" and o.limit_price <= p)
        best = max(best, min(demand, supply))
    return best


@AUCTION
@given(orders)
def test_no_accepted_order_trades_beyond_its_limit(rows: list[tuple[str, int, Decimal]]) -> None:
    book = book_of(rows)
    result = clear(book)
    by_id = {o.order_id: o for o in book}
    for f in result.fills:
        assert result.price is not None
        assert by_id[f.bid_id].limit_price >= result.price
        assert by_id[f.offer_id].limit_price <= result.price


@AUCTION
@given(orders)
def test_no_rejected_quantity_would_want_to_trade(rows: list[tuple[str, int, Decimal]]) -> None:
    book = book_of(rows)
    result = clear(book)
    if result.price is None:
        return
    done = filled(result)
    for o in book:
        if done.get(o.order_id, 0) < o.quantity_wh:  # quantity left over
            if o.side == "buy":
                assert o.limit_price <= result.price
            else:
                assert o.limit_price >= result.price


@AUCTION
@given(orders)
def test_the_cleared_volume_is_the_largest_possible(rows: list[tuple[str, int, Decimal]]) -> None:
    book = book_of(rows)
    assert clear(book).volume_wh == best_uniform_volume(book)


@AUCTION
@given(orders)
def test_money_and_energy_sum_to_zero(rows: list[tuple[str, int, Decimal]]) -> None:
    book = book_of(rows)
    result = clear(book)
    energy: dict[str, int] = defaultdict(int)
    money: dict[str, Decimal] = defaultdict(Decimal)
    for f in result.fills:
        assert result.price is not None
        energy[f.buyer] += f.quantity_wh
        energy[f.seller] -= f.quantity_wh
        money[f.buyer] -= amount(f.quantity_wh, result.price)
        money[f.seller] += amount(f.quantity_wh, result.price)
    assert sum(energy.values()) == 0
    assert sum(money.values(), Decimal(0)) == 0
    # and no order fills beyond its quantity
    by_id = {o.order_id: o for o in book}
    assert all(done <= by_id[oid].quantity_wh for oid, done in filled(result).items())


@AUCTION
@given(orders, st.randoms(use_true_random=False))
def test_price_and_volume_do_not_depend_on_arrival_order(
    rows: list[tuple[str, int, Decimal]], rnd: random.Random
) -> None:
    book = book_of(rows)
    shuffled = list(rows)
    rnd.shuffle(shuffled)
    again = book_of(shuffled)  # other entry times and ids: who fills at a tied price may change
    first, second = clear(book), clear(again)
    assert (first.price, first.volume_wh) == (second.price, second.volume_wh)
