"""Imbalance after delivery (ems.market.service.settle_imbalance) through fakes: each trading site's
metered net export in the slot (its grid meters' 15-minute rollup of power_w) against what it
traded, the traded part settled at the slot's grid prices, once; and the limits of a token on it.

Sites a, b: grid import 0.30, feed-in 0.08 per kWh. In the slot a buys 2 kWh from b at 0.15."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from ems.ledger import service as ledger
from ems.market import service as market
from ems.market.models import GRID_METER_TYPES, MarketRules, OrderIn
from ems.overview.service import FLOW_OF_SENSOR_TYPE
from ems.tariffs.models import Tariff
from ems.telemetry.models import Reading
from tests.support.fakes import ListPublisher, MemoryRegistry, MemoryTelemetry, caller
from tests.support.fakes_market import MemoryLedger, MemoryMarket

NOW = datetime(2030, 1, 7, 9, 0, tzinfo=UTC)
SLOT = datetime(2030, 1, 7, 10, 0, tzinfo=UTC)
SLOT_MS = int(SLOT.timestamp() * 1000)
RULES = MarketRules()


@pytest.mark.parametrize(
    ("traded", "metered", "expected"),
    [
        ("2", "1.5", "-0.5"),  # a seller short by 0.5
        ("2", "3", "0"),  # a seller that exported more: ordinary feed-in
        ("2", "-1", "-2"),  # a seller that imported: short by all it sold, no more
        ("-2", "-1", "1"),  # a buyer that imported 1 of its 2: 1 went to the grid
        ("-2", "-5", "0"),  # a buyer that imported more: ordinary supply
        ("-2", "1", "2"),  # a buyer that exported: surplus of all it bought, no more
        ("0", "4", "0"),
    ],
)
def test_only_the_traded_energy_is_settled(traded: str, metered: str, expected: str) -> None:
    assert market.imbalance_kwh(Decimal(traded), Decimal(metered)) == Decimal(expected)


def test_the_grid_meter_types_are_the_overviews_grid_flow() -> None:
    assert sorted(GRID_METER_TYPES) == sorted(t for t, flow in FLOW_OF_SENSOR_TYPE.items() if flow == "grid")


class World:
    def __init__(self) -> None:
        self.now = NOW
        self.registry = MemoryRegistry()
        for site in ("a", "b"):
            self.registry.add_site(site, timezone="UTC")
            self.registry.put_tariff(Tariff(site_id=site, import_price=0.30, export_price=0.08), NOW)
            self.registry.add_sensor(site, f"{site}-grid", "main_meter")
        self.telemetry = MemoryTelemetry()
        self.book, self.ledger = MemoryMarket(), MemoryLedger()
        self.stores = market.Stores(
            book=self.book, sites=self.registry, tariffs=self.registry, ledger=self.ledger, events=ListPublisher(),
            meters=self.registry, rollups=self.telemetry,
        )  # fmt: skip
        for site, side, price in (("a", "buy", "0.20"), ("b", "sell", "0.10")):
            body = OrderIn(
                side=side, quantity_kwh=Decimal(2), price_per_kwh=Decimal(price), delivery_start=SLOT_MS
            )
            market.place_order(site, body, self.stores, RULES, lambda: self.now)
        market.clear_slot(SLOT_MS, self.stores, RULES, lambda: self.now)  # 2 kWh at 0.15

    def meter(self, site: str, *watts: float) -> None:
        """power_w readings of the site's grid meter, evenly within the slot (> 0 imports)."""
        self.telemetry.write(
            [Reading(site, f"{site}-grid", "power_w", SLOT_MS + i * 60_000, w) for i, w in enumerate(watts)]
        )


def test_a_short_seller_pays_and_a_buyer_with_surplus_is_paid_once() -> None:
    """b sold 2 kWh but exported at a mean 6 kW for the quarter hour: 1.5 kWh, short 0.5 at 0.30 = -0.15.
    a bought 2 kWh and imported at a mean 4 kW: 1 kWh, 1 kWh surplus at 0.08 = +0.08."""
    w = World()
    w.meter("b", -5000, -7000)
    w.meter("a", 4000)
    later = SLOT + timedelta(minutes=15) + timedelta(hours=1)
    [report] = market.settle_delivered(w.stores, RULES, lambda: later)
    by_site = {x.site_id: x for x in report.sites}
    assert (by_site["b"].metered_export_kwh, by_site["b"].imbalance_kwh, by_site["b"].amount) == (
        Decimal("1.5"), Decimal("-0.5"), Decimal("-0.150"),
    )  # fmt: skip
    assert (by_site["a"].metered_export_kwh, by_site["a"].imbalance_kwh, by_site["a"].amount) == (
        Decimal("-1"), Decimal("1"), Decimal("0.08"),
    )  # fmt: skip
    assert report.posted == 2
    assert market.settle_imbalance(SLOT_MS, w.stores, RULES, lambda: later).posted == 0  # never twice
    assert market.settle_delivered(w.stores, RULES, lambda: later) == []
    everyone = caller()
    assert ledger.balance("b", "EUR", 50, None, everyone, w.ledger, lambda: later).balance == Decimal("0.15")
    assert ledger.balance("a", "EUR", 50, None, everyone, w.ledger, lambda: later).balance == Decimal("-0.22")


def test_not_before_an_hour_after_delivery_and_not_without_a_reading() -> None:
    w = World()
    w.meter("b", -8000)
    assert market.settle_delivered(w.stores, RULES, lambda: SLOT + timedelta(minutes=30)) == []
    [report] = market.settle_delivered(w.stores, RULES, lambda: SLOT + timedelta(hours=2))
    a = next(x for x in report.sites if x.site_id == "a")
    assert (a.metered_export_kwh, a.amount) == (None, 0)  # a's meter never reported: nothing settled
    assert report.posted == 0  # b exported 2 kWh as it sold: no imbalance


def test_a_token_that_may_not_see_the_slot_gets_neither_the_entry_nor_its_share() -> None:
    """b's imbalance (-0.15) is derived from its 15-minute meter readings: an hourly token, or one
    embargoed past the slot, sees b's trade (+0.30) alone."""
    w = World()
    w.meter("b", -6000)
    w.meter("a", 8000)
    later = SLOT + timedelta(hours=2)
    market.settle_delivered(w.stores, RULES, lambda: later)
    full = ledger.balance("b", "EUR", 50, None, caller(sites=["b"]), w.ledger, lambda: later)
    hourly = ledger.balance(
        "b", "EUR", 50, None, caller(sites=["b"], time_aggregation="1h"), w.ledger, lambda: later
    )
    embargoed = ledger.balance(
        "b", "EUR", 50, None, caller(sites=["b"], embargo_minutes=180), w.ledger, lambda: later
    )
    assert (full.balance, full.count, full.withheld) == (Decimal("0.15"), 2, 0)
    for limited in (hourly, embargoed):
        assert (limited.balance, limited.count, limited.withheld) == (Decimal("0.30"), 1, 1)
        assert [e.source for e in limited.entries] == ["p2p"]
