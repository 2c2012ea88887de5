"""Orders, trades, clearings and the market's status (API.md "P2P trading"), and the slot rules (no I/O).

A slot is 15 minutes of delivery, named by its start (epoch ms, a multiple of 900,000). Its gate
closes `gate_closure_minutes` before it starts: after that no order enters or leaves its book, and
the slot is cleared (ems.market.auction). Energy is kept as integer Wh, money as Decimal.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

from pydantic import ConfigDict, Field

from ems.core.models import Model
from ems.ledger.models import Exact

SLOT_MS = 15 * 60_000
MAX_ORDER_KWH = Decimal(1000)  # one slot's order: 1 MWh in 15 minutes is a 4 MW feed-in
MAX_DAYS_AHEAD = 7  # how far ahead a slot takes orders
MARKET_SOURCE = "ems.market"
MARKET_CLEARED = "MarketCleared"
LEDGER_SOURCE = "p2p"  # ems.ledger entries of trades: ("p2p", trade id, site)
IMBALANCE_SOURCE = "imbalance"  # and of imbalances: ("imbalance", slot ms, site)
# Readings of a slot can arrive late (a device's buffer): its imbalance is settled an hour after it ends.
IMBALANCE_DELAY_MS = 3_600_000
# The sensor types that meter the grid connection (the "grid" flow of ems.overview's
# FLOW_OF_SENSOR_TYPE; tests/unit/test_market_imbalance.py holds the two equal): power_w > 0 imports.
GRID_METER_TYPES = ("main_meter", "meter")

Side = Literal["buy", "sell"]
OrderStatus = Literal["open", "cancelled", "filled", "partially_filled", "unfilled"]
ClientToken = Field(default=None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")


@dataclass(frozen=True)
class MarketRules:
    gate_closure_minutes: int = 15
    currency: str = "EUR"

    @classmethod
    def from_env(cls) -> MarketRules:
        return cls(
            gate_closure_minutes=int(os.environ.get("GATE_CLOSURE_MINUTES", "15")),
            currency=os.environ.get("MARKET_CURRENCY", "EUR"),
        )

    def gate_closure_ms(self, slot_ms: int) -> int:
        return slot_ms - self.gate_closure_minutes * 60_000


class OrderIn(Model):
    """POST /p2p/orders."""

    model_config = ConfigDict(extra="forbid")

    side: Side
    quantity_kwh: Decimal = Field(gt=0, le=MAX_ORDER_KWH, decimal_places=3)
    price_per_kwh: Decimal = Field(ge=-10, le=100, decimal_places=4)
    delivery_start: str | int | float
    client_token: str | None = ClientToken


class Order(Model):
    order_id: str  # "<slot ms 13>-<entered ms 13>-<8 hex>": the slot is in the id
    site_id: str
    side: Side
    quantity_kwh: Exact
    price_per_kwh: Exact
    delivery_start: str
    gate_closure: str
    status: OrderStatus = "open"
    filled_kwh: Exact = Decimal(0)
    clearing_price: Exact | None = None
    created_at: str
    client_token: str | None = None


class OrdersQuery(Model):
    model_config = ConfigDict(extra="forbid")

    limit: int = Field(default=50, ge=1, le=200)
    next_token: str | None = None


class ClearRequest(Model):
    """POST /p2p/market/clear."""

    model_config = ConfigDict(extra="forbid")

    delivery_start: str | int | float


class SiteTrade(Model):
    """One site's side of a trade: never the other side's identity."""

    trade_id: str
    site_id: str
    kind: Literal["auction", "bilateral"]
    side: Side
    quantity_kwh: Exact
    price_per_kwh: Exact
    amount: Exact  # what the site is owed (+) or owes (-): its ledger entry
    currency: str
    delivery_start: str
    order_id: str | None = None
    settled_at: str


class Clearing(Model):
    """A slot's clearing: the MarketCleared event's detail, and the status's last clearing."""

    delivery_start: str
    gate_closure: str
    price_per_kwh: Exact | None  # None: nothing crossed
    interval_low: Exact | None
    interval_high: Exact | None
    volume_kwh: Exact
    orders: int
    trades: int
    cleared_at: str


class ClearingReport(Model):
    """What one run of a slot's clearing did: `settled` counts the trades this run wrote (a re-run: 0)."""

    clearing: Clearing
    settled: int
    first_run: bool


class DepthLevel(Model):
    price_per_kwh: Exact
    quantity_kwh: Exact
    orders: int


class SlotDepth(Model):
    delivery_start: str
    gate_closure: str
    bids: list[DepthLevel]  # best (highest) first
    offers: list[DepthLevel]  # best (lowest) first


class MarketStatus(Model):
    slots: list[SlotDepth]
    last_clearing: Clearing | None
    next_gate_closure: str
    currency: str


class TradesQuery(Model):
    model_config = ConfigDict(extra="forbid")

    limit: int = Field(default=50, ge=1, le=200)
    next_token: str | None = None


class OrderPage(Model):
    items: list[Order]
    count: int
    next_token: str | None = None


# ---------------------------------------------------------------- bilateral transactions

ProposalStatus = Literal["proposed", "accepted"]


class TransactionIn(Model):
    """POST /p2p/transactions (the seed's body): the proposing site sells to `peer` unless
    `side` is "buy"; it counts once the peer accepts it."""

    model_config = ConfigDict(extra="forbid")

    peer: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
    quantity_kwh: Decimal = Field(gt=0, le=MAX_ORDER_KWH, decimal_places=3)
    price_per_kwh: Decimal = Field(ge=-10, le=100, decimal_places=4)
    delivery_start: str | int | float
    side: Side = "sell"


class Proposal(Model):
    """A bilateral transaction: both sites named it, so both see each other here."""

    transaction_id: str  # "<slot ms 13>-<8 hex>"
    proposer: str
    peer: str
    side: Side  # the proposer's side
    quantity_kwh: Exact
    price_per_kwh: Exact
    delivery_start: str
    status: ProposalStatus = "proposed"
    proposed_at: str
    accepted_at: str | None = None
    trade_id: str | None = None


class TransactionsPage(Model):
    """GET /p2p/transactions: the site's side of its trades (auction fills and accepted bilateral
    trades), and the bilateral proposals it made or was made that wait for acceptance."""

    items: list[SiteTrade]
    count: int
    next_token: str | None = None
    proposals: list[Proposal] = []


# ---------------------------------------------------------------- suggested prices


class MarkupsIn(Model):
    """PUT /p2p/prices: the original dashboard's markups, in percent."""

    model_config = ConfigDict(extra="forbid")

    buy_percentage: Decimal = Field(ge=0, le=100, decimal_places=2)
    sell_percentage: Decimal = Field(ge=0, le=100, decimal_places=2)


class Prices(Model):
    """Suggested limits for order entry: buy = market x (1 - buy%), sell = market x (1 + sell%).
    Never applied at settlement (a trade settles at its clearing or agreed price)."""

    buy_percentage: Exact
    sell_percentage: Exact
    market_price_per_kwh: Exact
    basis: Literal["last_clearing", "tariff"]  # the last clearing's price, else the tariff's mid price
    buy_price_per_kwh: Exact
    sell_price_per_kwh: Exact
    currency: str


# ---------------------------------------------------------------- imbalance after delivery


class SiteImbalance(Model):
    site_id: str
    traded_export_kwh: Exact  # sold - bought in the slot
    metered_export_kwh: Exact | None  # export - import at the grid meters; None: no meter reported
    imbalance_kwh: Exact  # < 0 a seller's shortfall, > 0 a buyer's surplus (only the traded part)
    amount: Exact


class ImbalanceReport(Model):
    delivery_start: str
    sites: list[SiteImbalance]
    posted: int  # ledger entries this run wrote (a re-run: 0)
