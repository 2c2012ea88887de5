"""The market's service through fakes (ems.market.service): order checks against the slot and the
tariff, idempotent placing, cancelling until gate closure, clearing and settlement into the ledger
(never twice), the status's depth without identities, and what each site sees of its trades."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from ems.core.errors import Conflict, Forbidden, Invalid, NotFound
from ems.ledger import service as ledger
from ems.market import service as market
from ems.market.models import (
    MARKET_CLEARED,
    MarketRules,
    MarkupsIn,
    OrderIn,
    OrdersQuery,
    TradesQuery,
    TransactionIn,
)
from ems.tariffs.models import Tariff
from tests.support.fakes import ListPublisher, MemoryRegistry, caller
from tests.support.fakes_market import MemoryLedger, MemoryMarket

NOW = datetime(2030, 1, 7, 9, 0, tzinfo=UTC)  # a Monday
SLOT = datetime(2030, 1, 7, 10, 0, tzinfo=UTC)  # its gate closes at 09:45
SLOT_MS = int(SLOT.timestamp() * 1000)
RULES = MarketRules(gate_closure_minutes=15, currency="EUR")


class World:
    """Sites a, b, c with grid import at 0.30 and feed-in at 0.08 per kWh; d has no tariff."""

    def __init__(self) -> None:
        self.now = NOW
        self.registry = MemoryRegistry()
        for site in ("a", "b", "c", "d"):
            self.registry.add_site(site, timezone="UTC")
        for site in ("a", "b", "c"):
            self.registry.put_tariff(Tariff(site_id=site, import_price=0.30, export_price=0.08), NOW)
        self.book = MemoryMarket()
        self.ledger = MemoryLedger()
        self.events = ListPublisher()
        self.stores = market.Stores(
            book=self.book, sites=self.registry, tariffs=self.registry, ledger=self.ledger, events=self.events
        )

    def clock(self) -> datetime:
        return self.now

    def order(self, site: str, side: str, kwh: str, price: str, start: Any = None, **kw: Any) -> Any:
        body = OrderIn(
            side=side, quantity_kwh=Decimal(kwh), price_per_kwh=Decimal(price),
            delivery_start=start or SLOT.isoformat(), **kw,
        )  # fmt: skip
        placed = market.place_order(site, body, self.stores, RULES, self.clock)
        self.now += timedelta(milliseconds=1)  # distinct times of entry
        return placed

    def clear(self) -> Any:
        return market.clear_slot(SLOT_MS, self.stores, RULES, self.clock)

    def balance(self, site: str) -> Decimal:
        return ledger.balance(site, "EUR", 50, None, caller(), self.ledger, self.clock).balance


@pytest.fixture
def w() -> World:
    return World()


# ---------------------------------------------------------------- orders


@pytest.mark.parametrize(
    ("start", "why"),
    [
        ("2030-01-07T10:05:00Z", "15-minute slot"),
        ("2030-01-07T08:45:00Z", "in the future"),
        ("2030-01-07T09:15:00Z", "gate closed at 2030-01-07T09:00:00.000Z"),
        ("2030-01-20T10:00:00Z", "7 days ahead"),
    ],
)
def test_an_order_outside_an_open_slot_is_refused_naming_delivery_start(
    w: World, start: str, why: str
) -> None:
    with pytest.raises(Invalid) as refused:
        w.order("a", "buy", "1", "0.2", start=start)
    assert refused.value.field == "delivery_start"
    assert why in refused.value.message


def test_limits_stay_within_the_tariff(w: World) -> None:
    with pytest.raises(Invalid) as above:
        w.order("a", "buy", "1", "0.31")
    assert (above.value.field, "0.3" in above.value.message) == ("price_per_kwh", True)
    with pytest.raises(Invalid) as below:
        w.order("a", "sell", "1", "0.07")
    assert (below.value.field, "0.08" in below.value.message) == ("price_per_kwh", True)
    assert w.order("a", "buy", "1", "0.30").status == "open"  # the bound itself is allowed
    assert w.order("b", "sell", "1", "0.08").status == "open"


def test_a_site_without_a_tariff_is_bounded_by_the_default_zero_prices(w: World) -> None:
    with pytest.raises(Invalid):
        w.order("d", "buy", "1", "0.01")
    with pytest.raises(NotFound):
        w.order("nowhere", "buy", "1", "0")


def test_a_client_token_makes_placing_idempotent(w: World) -> None:
    first = w.order("a", "buy", "2", "0.2", client_token="t-1")
    again = w.order("a", "buy", "2", "0.2", client_token="t-1")
    assert again.order_id == first.order_id
    assert len(w.book.by_id) == 1
    with pytest.raises(Conflict) as other:
        w.order("a", "buy", "3", "0.2", client_token="t-1")
    assert other.value.field == "client_token"
    assert w.order("b", "buy", "2", "0.2", client_token="t-1").order_id != first.order_id  # b's own token


def test_cancel_until_gate_closure_and_only_ones_own(w: World) -> None:
    mine = w.order("a", "buy", "1", "0.2")
    with pytest.raises(NotFound):
        market.cancel_order("b", mine.order_id, w.stores, RULES, w.clock)
    with pytest.raises(NotFound):
        market.cancel_order("a", "not-an-id", w.stores, RULES, w.clock)
    assert market.cancel_order("a", mine.order_id, w.stores, RULES, w.clock).status == "cancelled"
    late = w.order("a", "buy", "1", "0.2")
    w.now = datetime(2030, 1, 7, 9, 45, tzinfo=UTC)
    with pytest.raises(Invalid) as closed:
        market.cancel_order("a", late.order_id, w.stores, RULES, w.clock)
    assert "gate closed" in closed.value.message


def test_orders_list_a_page_at_a_time_and_only_the_sites_own(w: World) -> None:
    for n in range(5):
        w.order("a", "buy", "1", f"0.1{n}")
    w.order("b", "sell", "1", "0.1")
    first = market.list_orders("a", OrdersQuery(limit=3), w.book)
    rest = market.list_orders("a", OrdersQuery(limit=3, next_token=first.next_token), w.book)
    assert (first.count, rest.count, rest.next_token) == (3, 2, None)
    assert {o.site_id for o in first.items + rest.items} == {"a"}


# ---------------------------------------------------------------- clearing and settlement


def test_the_worked_example_clears_and_settles_into_the_ledger(w: World) -> None:
    """The issue's example at a fiftieth of its prices, within the tariff: bids 0.20 (a) and 0.16 (c),
    offers 0.10 and 0.18 (b), 1 kWh each. a buys 1 kWh from b; the interval is [0.16, 0.18], the
    price 0.17; a owes 0.17, b is owed 0.17, c nothing."""
    w.order("a", "buy", "1", "0.20")
    w.order("c", "buy", "1", "0.16")
    w.order("b", "sell", "1", "0.10")
    w.order("b", "sell", "1", "0.18")
    report = w.clear()
    assert report.clearing.price_per_kwh == Decimal("0.17")
    assert (report.clearing.interval_low, report.clearing.interval_high) == (Decimal("0.16"), Decimal("0.18"))
    assert (report.clearing.volume_kwh, report.clearing.trades, report.settled) == (Decimal(1), 1, 1)
    assert (w.balance("a"), w.balance("b"), w.balance("c")) == (Decimal("-0.17"), Decimal("0.17"), 0)
    statuses = sorted((o.site_id, o.side, o.status) for o in w.book.by_id.values())
    assert statuses == [
        ("a", "buy", "filled"), ("b", "sell", "filled"), ("b", "sell", "unfilled"), ("c", "buy", "unfilled"),
    ]  # fmt: skip
    [event] = w.events.events
    assert event.detail_type == MARKET_CLEARED
    assert event.detail["sites"] == ["a", "b", "c"]
    assert event.detail["clearing"]["price_per_kwh"] == 0.17


def test_a_rerun_settles_nothing_twice(w: World) -> None:
    w.order("a", "buy", "2", "0.20")
    w.order("b", "sell", "1", "0.10")
    w.order("c", "sell", "3", "0.12")
    first = w.clear()
    again = w.clear()
    assert (first.settled, first.first_run) == (2, True)
    assert (again.settled, again.first_run) == (0, False)
    # a partly fills c's offer, so c's limit is the price: 0.12; a pays 2 x 0.12
    assert first.clearing.price_per_kwh == Decimal("0.12")
    assert (w.balance("a"), w.balance("b"), w.balance("c")) == (
        Decimal("-0.24"),
        Decimal("0.12"),
        Decimal("0.12"),
    )
    assert len(w.ledger.items) == 4
    assert len(w.events.events) == 1


def test_the_book_is_frozen_once_the_slot_is_cleared(w: World) -> None:
    w.order("a", "buy", "1", "0.20")
    w.clear()  # an administrator clears before gate closure
    with pytest.raises(Conflict):
        w.order("b", "sell", "1", "0.10")


def test_each_site_sees_its_side_and_never_the_other(w: World) -> None:
    w.order("a", "buy", "1", "0.20")
    w.order("b", "sell", "1", "0.10")
    w.clear()
    [bought] = market.list_trades("a", TradesQuery(), w.book).items
    [sold] = market.list_trades("b", TradesQuery(), w.book).items
    assert (bought.side, bought.amount, sold.side, sold.amount) == (
        "buy",
        Decimal("-0.15"),
        "sell",
        Decimal("0.15"),
    )
    assert (
        "b" not in bought.model_dump().values() and "a" not in sold.model_dump().values()
    )  # no counterparty
    assert market.list_trades("c", TradesQuery(), w.book).items == []


def test_the_schedule_clears_every_slot_whose_gate_has_closed(w: World) -> None:
    w.order("a", "buy", "1", "0.20")
    w.order("b", "sell", "1", "0.10")
    w.order("a", "buy", "1", "0.20", start="2030-01-07T10:15:00Z")
    w.now = datetime(2030, 1, 7, 9, 45, 2, tzinfo=UTC)  # 10:00's gate closed 2 s ago, 10:15's is open
    [report] = market.clear_due(w.stores, RULES, w.clock)
    assert report.clearing.delivery_start == "2030-01-07T10:00:00.000Z"
    assert market.clear_due(w.stores, RULES, w.clock) == []  # done once


def test_the_status_shows_depth_per_open_slot_without_identities(w: World) -> None:
    w.order("a", "buy", "1", "0.20")
    w.order("c", "buy", "2", "0.20")
    w.order("c", "buy", "1", "0.25")
    w.order("b", "sell", "1.5", "0.10")
    status = market.market_status(w.stores, RULES, w.clock)
    [slot] = status.slots
    assert [(lvl.price_per_kwh, lvl.quantity_kwh, lvl.orders) for lvl in slot.bids] == [
        (Decimal("0.25"), Decimal(1), 1), (Decimal("0.20"), Decimal(3), 2),
    ]  # fmt: skip
    assert [(lvl.price_per_kwh, lvl.quantity_kwh) for lvl in slot.offers] == [
        (Decimal("0.10"), Decimal("1.5"))
    ]
    assert '"a"' not in status.model_dump_json() and '"c"' not in status.model_dump_json()
    assert status.next_gate_closure == "2030-01-07T09:15:00.000Z"
    assert status.last_clearing is None
    w.clear()
    after = market.market_status(w.stores, RULES, w.clock)
    assert after.slots == []
    assert after.last_clearing is not None and after.last_clearing.volume_kwh == Decimal("1.5")


# ---------------------------------------------------------------- bilateral transactions and prices


def propose(w: World, by: str, peer: str, side: str = "sell", price: str = "0.12", kwh: str = "2") -> Any:
    body = TransactionIn(
        peer=peer,
        quantity_kwh=Decimal(kwh),
        price_per_kwh=Decimal(price),
        delivery_start=SLOT.isoformat(),
        side=side,
    )
    return market.propose_transaction(by, body, w.stores, RULES, w.clock)


def test_a_bilateral_transaction_settles_once_when_the_peer_accepts(w: World) -> None:
    proposal = propose(w, "a", "b")  # a sells 2 kWh to b at 0.12
    assert w.balance("a") == 0 and market.list_trades("b", TradesQuery(), w.book).proposals == [proposal]
    with pytest.raises(Forbidden):
        market.accept_transaction("a", proposal.transaction_id, w.stores, RULES, w.clock)
    with pytest.raises(NotFound):
        market.accept_transaction("c", proposal.transaction_id, w.stores, RULES, w.clock)
    accepted = market.accept_transaction("b", proposal.transaction_id, w.stores, RULES, w.clock)
    again = market.accept_transaction("b", proposal.transaction_id, w.stores, RULES, w.clock)
    assert (accepted.status, again.trade_id) == ("accepted", accepted.trade_id)
    assert (w.balance("a"), w.balance("b")) == (Decimal("0.24"), Decimal("-0.24"))
    [bought] = market.list_trades("b", TradesQuery(), w.book).items
    assert (bought.kind, bought.side, bought.quantity_kwh, bought.price_per_kwh) == (
        "bilateral", "buy", Decimal(2), Decimal("0.12"),
    )  # fmt: skip
    assert market.list_trades("b", TradesQuery(), w.book).proposals == []


def test_a_proposal_is_checked_against_the_peer_and_both_tariffs(w: World) -> None:
    with pytest.raises(Invalid) as itself:
        propose(w, "a", "a")
    with pytest.raises(Invalid) as nobody:
        propose(w, "a", "nowhere")
    with pytest.raises(Invalid) as below:
        propose(w, "a", "b", price="0.05")  # a sells below its feed-in price
    assert (itself.value.field, nobody.value.field, below.value.field) == ("peer", "peer", "price_per_kwh")
    w.registry.put_tariff(Tariff(site_id="b", import_price=0.10, export_price=0.05), NOW)
    offer = propose(w, "a", "b", price="0.12")
    with pytest.raises(Invalid) as above:  # b would pay above its own import price
        market.accept_transaction("b", offer.transaction_id, w.stores, RULES, w.clock)
    assert above.value.field == "price_per_kwh"


def test_suggested_prices_apply_the_markups_to_the_market_price(w: World) -> None:
    """No clearing yet: the market price is the middle of a's import 0.30 and feed-in 0.08, 0.19.
    Markups 10 % and 20 %: buy 0.19 x 0.9 = 0.171, sell 0.19 x 1.2 = 0.228."""
    suggested = market.put_markups(
        "a", MarkupsIn(buy_percentage=Decimal(10), sell_percentage=Decimal(20)), w.stores, RULES, w.clock
    )
    assert (suggested.basis, suggested.market_price_per_kwh) == ("tariff", Decimal("0.19"))
    assert (suggested.buy_price_per_kwh, suggested.sell_price_per_kwh) == (Decimal("0.171"), Decimal("0.228"))
    w.order("a", "buy", "1", "0.20")
    w.order("b", "sell", "1", "0.10")
    w.clear()  # at 0.15
    after = market.prices("a", w.stores, RULES, w.clock)
    assert (after.basis, after.buy_price_per_kwh, after.sell_price_per_kwh) == (
        "last_clearing", Decimal("0.135"), Decimal("0.18"),
    )  # fmt: skip
    assert market.prices("b", w.stores, RULES, w.clock).buy_price_per_kwh == Decimal("0.15")  # b set none
