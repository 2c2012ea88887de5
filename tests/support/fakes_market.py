"""In-memory fakes of the market's ports (ems.market.ports) and of the ledger's store, with the same
rules as ems.market.store and ems.ledger.store: a closed slot's book is frozen, a client token
names one order, a trade and its entries are written together or not at all, never twice."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from ems.core.errors import Conflict, NotFound
from ems.core.pagination import Page
from ems.ledger.models import LedgerEntry
from ems.market.models import Clearing, MarkupsIn, Order, Proposal, SiteTrade
from ems.market.ports import Ledger, TradeLegs


def _page(items: list[Any], limit: int, next_token: str | None) -> Page[Any]:
    start = int(next_token or 0)
    chunk = items[start : start + limit]
    more = start + limit < len(items)
    return Page(items=chunk, count=len(chunk), next_token=str(start + limit) if more else None)


class MemoryLedger:
    def __init__(self) -> None:
        self.items: dict[tuple[str, str, str], LedgerEntry] = {}

    def stage(self, tx: Any, entries: Sequence[LedgerEntry]) -> None:
        tx.extend(("ledger", (e.source, e.source_id, e.site_id), e) for e in entries)

    def post(self, entries: Sequence[LedgerEntry]) -> int:
        new = 0
        for e in entries:
            key = (e.source, e.source_id, e.site_id)
            if key not in self.items:
                self.items[key] = e
                new += 1
        return new

    def entries(self, site_id: str, limit: int, next_token: str | None) -> Page[LedgerEntry]:
        mine = sorted(
            (e for e in self.items.values() if e.site_id == site_id), key=lambda e: (e.source, e.source_id)
        )
        return _page(mine, limit, next_token)


class MemoryMarket:
    def __init__(self) -> None:
        self.by_id: dict[str, Order] = {}
        self.tokens: dict[tuple[str, str], str] = {}
        self.closed: set[int] = set()
        self.slots: set[int] = set()
        self.cleared: dict[int, Clearing] = {}
        self.legs: dict[tuple[str, str, str], SiteTrade] = {}
        self.last: Clearing | None = None
        self.transactions = 0
        self.proposed: dict[str, Proposal] = {}
        self.imbalanced: set[int] = set()
        self.site_markups: dict[str, MarkupsIn] = {}

    def place(self, order: Order, slot_ms: int) -> Order:
        if order.client_token and (order.site_id, order.client_token) in self.tokens:
            return self.by_id[self.tokens[(order.site_id, order.client_token)]]
        if slot_ms in self.closed:
            raise Conflict("the slot's gate has closed", "delivery_start")
        self.by_id[order.order_id] = order
        if order.client_token:
            self.tokens[(order.site_id, order.client_token)] = order.order_id
        self.slots.add(slot_ms)
        return order

    def get_order(self, site_id: str, order_id: str) -> Order:
        order = self.by_id.get(order_id)
        if order is None or order.site_id != site_id:
            raise NotFound(f"no order {order_id!r} of this site", "id")
        return order

    def cancel(self, site_id: str, order_id: str, slot_ms: int) -> Order:
        order = self.get_order(site_id, order_id)
        if slot_ms in self.closed:
            raise Conflict("the slot's gate has closed", "id")
        self.by_id[order_id] = order.model_copy(update={"status": "cancelled"})
        return self.by_id[order_id]

    def orders_of(self, site_id: str) -> list[Order]:
        return sorted(
            (o for o in self.by_id.values() if o.site_id == site_id), key=lambda o: o.order_id, reverse=True
        )

    def orders(self, site_id: str, limit: int, next_token: str | None) -> Page[Order]:
        return _page(self.orders_of(site_id), limit, next_token)

    def close(self, slot_ms: int, at: str) -> None:
        self.closed.add(slot_ms)

    def book(self, slot_ms: int) -> list[Order]:
        return [
            o
            for o in self.by_id.values()
            if o.order_id.startswith(f"{slot_ms:013d}-") and o.status != "cancelled"
        ]

    def open_slots(self, from_ms: int, to_ms: int) -> list[int]:
        return sorted(s for s in self.slots if from_ms <= s <= to_ms and s not in self.cleared)

    def settle(self, trades: Sequence[TradeLegs], ledger: Ledger) -> int:
        assert isinstance(ledger, MemoryLedger)
        new = 0
        for trade in trades:
            tx: list[Any] = [("leg", (leg.site_id, trade.trade_id, leg.side), leg) for leg in trade.legs]
            ledger.stage(tx, trade.entries)
            self.transactions += 1
            if any(key in (self.legs if kind == "leg" else ledger.items) for kind, key, _ in tx):
                continue  # a condition lost: nothing of this trade is written
            for kind, key, value in tx:
                (self.legs if kind == "leg" else ledger.items)[key] = value
            new += 1
        return new

    def record(self, slot_ms: int, clearing: Clearing, orders: Sequence[Order]) -> bool:
        for order in orders:
            self.by_id[order.order_id] = order
        if slot_ms in self.cleared:
            return False
        self.cleared[slot_ms] = clearing
        if self.last is None or self.last.delivery_start <= clearing.delivery_start:
            self.last = clearing
        return True

    def last_clearing(self) -> Clearing | None:
        return self.last

    def trades(self, site_id: str, limit: int, next_token: str | None) -> Page[SiteTrade]:
        mine = sorted(
            (t for t in self.legs.values() if t.site_id == site_id), key=lambda t: t.trade_id, reverse=True
        )
        return _page(mine, limit, next_token)

    # ------------------------------------------------------------ bilateral transactions

    def propose(self, proposal: Proposal) -> None:
        self.proposed[proposal.transaction_id] = proposal

    def get_proposal(self, site_id: str, transaction_id: str) -> Proposal:
        found = self.proposed.get(transaction_id)
        if found is None or site_id not in (found.proposer, found.peer):
            raise NotFound(f"no transaction {transaction_id!r} of this site", "id")
        return found

    def accept(self, proposal: Proposal, trade: TradeLegs, ledger: Ledger) -> Proposal:
        if self.proposed[proposal.transaction_id].status == "accepted":
            return self.proposed[proposal.transaction_id]
        assert self.settle([trade], ledger) == 1
        self.proposed[proposal.transaction_id] = proposal
        return proposal

    def proposals(self, site_id: str) -> list[Proposal]:
        return [
            p for p in self.proposed.values() if site_id in (p.proposer, p.peer) and p.status == "proposed"
        ]

    def markups(self, site_id: str) -> MarkupsIn | None:
        return self.site_markups.get(site_id)

    def put_markups(self, site_id: str, markups: MarkupsIn) -> None:
        self.site_markups[site_id] = markups

    # ------------------------------------------------------------ after delivery

    def positions(self, slot_ms: int) -> dict[str, Decimal]:
        traded: dict[str, Decimal] = defaultdict(Decimal)
        for order in self.book(slot_ms):
            traded[order.site_id] += order.filled_kwh if order.side == "sell" else -order.filled_kwh
        for deal in self.proposed.values():
            if deal.status == "accepted" and deal.transaction_id.startswith(f"{slot_ms:013d}-"):
                sign = 1 if deal.side == "sell" else -1
                traded[deal.proposer] += sign * deal.quantity_kwh
                traded[deal.peer] -= sign * deal.quantity_kwh
        return dict(traded)

    def delivered_slots(self, before_ms: int) -> list[int]:
        return sorted(s for s in self.cleared if s <= before_ms and s not in self.imbalanced)

    def imbalance_settled(self, slot_ms: int) -> None:
        self.imbalanced.add(slot_ms)
