"""What the market needs: its own store (ems.market.store.MarketStore) and, in its own words, what it
needs of other domains: the site and its tariff (ems.registry.store.RegistryStore) and the ledger
(ems.ledger.store.LedgerStore). functions/market/app.py wires them; tests pass in-memory fakes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol

from ems.core.pagination import Page
from ems.ledger.models import LedgerEntry
from ems.market.models import Clearing, MarkupsIn, Order, Proposal, SiteTrade
from ems.registry.models import Sensor, Site
from ems.tariffs.models import Tariff
from ems.telemetry.rollup import Bucket


@dataclass(frozen=True)
class TradeLegs:
    """One trade as it is settled: each site's side of it and the ledger entries they are owed."""

    trade_id: str
    legs: tuple[SiteTrade, ...]
    entries: tuple[LedgerEntry, ...]


class SiteDirectory(Protocol):
    def get_site(self, site_id: str) -> Site: ...  # raises NotFound


class TariffSource(Protocol):
    """The site's own tariff, or None when it has set none."""

    def get_tariff(self, site_id: str) -> Tariff | None: ...


class Ledger(Protocol):
    def stage(self, tx: Any, entries: Sequence[LedgerEntry]) -> None:
        """Add the entries' conditional puts to the market's transaction `tx` (it commits them)."""
        ...

    def post(self, entries: Sequence[LedgerEntry]) -> int:
        """Write each entry unless it is there already; how many were new."""
        ...


class GridMeters(Protocol):
    """The site's sensors of one type (the grid meters)."""

    def list_sensors(
        self, site_id: str, room: str | None, sensor_type: str | None, limit: int, next_token: str | None
    ) -> Page[Sensor]: ...


class Rollups(Protocol):
    """Buckets of each sensor's metric whose start is in [start_ms, end_ms), by bucket start."""

    def read_rollups(
        self,
        site_id: str,
        sensor_ids: Sequence[str],
        metric: str,
        resolution: str,
        start_ms: int,
        end_ms: int,
    ) -> dict[str, dict[int, Bucket]]: ...


class MarketBook(Protocol):
    def place(self, order: Order, slot_ms: int) -> Order:
        """Store a new order unless the slot is closed (Conflict) or its client token was used
        (then the order stored with it is returned)."""
        ...

    def get_order(self, site_id: str, order_id: str) -> Order: ...  # NotFound for another site's
    def cancel(self, site_id: str, order_id: str, slot_ms: int) -> Order: ...  # Conflict once closed
    def orders(self, site_id: str, limit: int, next_token: str | None) -> Page[Order]: ...
    def close(self, slot_ms: int, at: str) -> None: ...  # no order enters or leaves the slot after
    def book(self, slot_ms: int) -> list[Order]: ...  # every order of the slot that was not cancelled
    def open_slots(self, from_ms: int, to_ms: int) -> list[int]: ...  # slots with orders, not closed
    def settle(self, trades: Sequence[TradeLegs], ledger: Ledger) -> int:
        """Write each trade with its entries, all or nothing per trade; how many were new."""
        ...

    def record(self, slot_ms: int, clearing: Clearing, orders: Sequence[Order]) -> bool:
        """The slot's clearing and its orders' fills; False when a run before this one recorded it."""
        ...

    def last_clearing(self) -> Clearing | None: ...
    def positions(self, slot_ms: int) -> dict[str, Decimal]: ...  # kWh sold - bought, auction and bilateral
    def delivered_slots(self, before_ms: int) -> list[int]: ...  # closed, imbalance not settled yet
    def imbalance_settled(self, slot_ms: int) -> None: ...
    def trades(self, site_id: str, limit: int, next_token: str | None) -> Page[SiteTrade]: ...

    # bilateral transactions
    def propose(self, proposal: Proposal) -> None: ...
    def get_proposal(self, site_id: str, transaction_id: str) -> Proposal: ...  # NotFound unless a party
    def accept(self, proposal: Proposal, trade: TradeLegs, ledger: Ledger) -> Proposal:
        """Mark it accepted and write its trade with the entries, together; a second accept returns
        the first one's result."""
        ...

    def proposals(self, site_id: str) -> list[Proposal]: ...  # waiting for acceptance, by or to the site

    # suggested prices
    def markups(self, site_id: str) -> MarkupsIn | None: ...
    def put_markups(self, site_id: str, markups: MarkupsIn) -> None: ...
