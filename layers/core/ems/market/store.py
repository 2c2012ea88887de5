"""The market's orders, trades and clearings in one DynamoDB table (MARKET_TABLE), one PynamoDB model.

Keys:
- "SLOT#<slot ms>" / "ORDER#<order id>": the slot's book (one Query reads it, strongly consistent);
  the order's site in `site_pk` ("SITE#<site>") with the same sk, index "by-site", for its listing.
- "SLOT#<slot ms>" / "CLOSED": the slot's gate has closed. Placing and cancelling an order check in
  their transaction that it is absent, so once it is written the book is frozen: every run of the
  slot's clearing reads the same book, computes the same trades (ids derived from the two orders)
  and a trade written twice loses its condition.
- "SLOT#<slot ms>" / "CLEARING": the slot's result, written once.
- "SITE#<site>" / "TOKEN#<client token>": the order a client token created (idempotent retries).
- "SITE#<site>" / "TRADE#<trade id>#<side>": the site's side of a trade, written with the trade's
  ledger entries in one transaction.
- "SITE#<site>" / "BILAT#<transaction id>": a bilateral transaction, once under each of its two sites;
  accepting it updates both on the condition that it is still proposed, with its trade's sides and
  ledger entries in the same transaction. "SITE#<site>" / "MARKUPS": the site's suggested-price markups.
- "MARKET" / "SLOT#<slot ms>": a slot that has orders (the status and the schedule find them);
  "MARKET" / "LAST": the latest slot cleared.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from decimal import Decimal
from typing import Any

from pynamodb.attributes import BooleanAttribute, JSONAttribute, NumberAttribute, UnicodeAttribute
from pynamodb.exceptions import DoesNotExist, PutError, TransactWriteError
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex
from pynamodb.models import Model
from pynamodb.transactions import TransactWrite

from ems.core.errors import Conflict, NotFound
from ems.core.pagination import Page, decode_token, encode_token
from ems.core.tables import EnvRegion, EnvTableName
from ems.market.models import Clearing, MarkupsIn, Order, Proposal, SiteTrade
from ems.market.ports import Ledger, TradeLegs

SLOT, SITE, ORDER, TRADE, TOKEN, BILATERAL = "SLOT#", "SITE#", "ORDER#", "TRADE#", "TOKEN#", "BILAT#"
MARKUPS = "MARKUPS"
CLOSED, CLEARING, MARKET, LAST = "CLOSED", "CLEARING", "MARKET", "LAST"
BY_SITE_PAGE_KEYS = ("pk", "sk", "site_pk")
# DynamoDB takes at most 100 items a transaction; a trade is 4 (two sides, two ledger entries).
TRADES_PER_TRANSACTION = 25
LOST_CONDITION = "ConditionalCheckFailedException"
RETRIES = 5  # TransactionConflict: another transaction holds one of the items; try again


def slot_key(slot_ms: int) -> str:
    return f"{SLOT}{slot_ms:013d}"


class BySite(GlobalSecondaryIndex["MarketItem"]):
    class Meta:
        index_name = "by-site"
        projection = AllProjection()

    site_pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)


class MarketItem(Model):
    class Meta:
        table_name = EnvTableName("MARKET_TABLE", "ems-dev-market")
        region = EnvRegion()

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    site_pk = UnicodeAttribute(null=True)
    by_site = BySite()
    doc = JSONAttribute(null=True)
    status = UnicodeAttribute(null=True)
    filled_kwh = UnicodeAttribute(null=True)
    clearing_price = UnicodeAttribute(null=True)
    order_id = UnicodeAttribute(null=True)  # a client token's order
    slot = NumberAttribute(null=True)  # MARKET items
    closed = BooleanAttribute(null=True)
    imbalance = BooleanAttribute(null=True)  # the slot's imbalance is settled


def _has_trading(slot_ms: int) -> None:
    """The slot has orders or trades (an update: it keeps the slot's other flags)."""
    MarketItem(MARKET, slot_key(slot_ms)).update(actions=[MarketItem.slot.set(slot_ms)])


def _transaction() -> TransactWrite:
    return TransactWrite(connection=MarketItem._get_connection().connection)


def _reasons(exc: TransactWriteError) -> list[str | None]:
    if exc.cause_response_code != "TransactionCanceledException":
        return []
    return [None if r is None else r.code for r in exc.cancellation_reasons]


def _order(item: MarketItem) -> Order:
    doc = dict(item.doc)
    doc["status"] = item.status or "open"
    doc["filled_kwh"] = item.filled_kwh or "0"
    doc["clearing_price"] = item.clearing_price
    return Order.model_validate(doc)


def _order_item(order: Order, slot_ms: int) -> MarketItem:
    doc = order.model_dump(mode="python", exclude={"status", "filled_kwh", "clearing_price"})
    doc = {k: str(v) if isinstance(v, Decimal) else v for k, v in doc.items()}
    return MarketItem(
        slot_key(slot_ms), ORDER + order.order_id, site_pk=SITE + order.site_id, doc=doc, status=order.status,
        filled_kwh=str(order.filled_kwh),
        clearing_price=None if order.clearing_price is None else str(order.clearing_price),
    )  # fmt: skip


def _json(model: Any) -> dict[str, Any]:
    """A model as a JSON document whose Decimals stay exact (as strings)."""
    return {k: str(v) if isinstance(v, Decimal) else v for k, v in model.model_dump(mode="python").items()}


class MarketStore:
    # ------------------------------------------------------------ orders

    def place(self, order: Order, slot_ms: int) -> Order:
        try:
            with _transaction() as tx:
                tx.condition_check(
                    MarketItem, slot_key(slot_ms), CLOSED, condition=MarketItem.pk.does_not_exist()
                )
                tx.save(_order_item(order, slot_ms), condition=MarketItem.pk.does_not_exist())
                if order.client_token:
                    tx.save(
                        MarketItem(SITE + order.site_id, TOKEN + order.client_token, order_id=order.order_id),
                        condition=MarketItem.pk.does_not_exist(),
                    )
        except TransactWriteError as exc:
            reasons = _reasons(exc)  # in the transaction's order: the slot's check, the order, the token
            if order.client_token and reasons[2:3] == ["ConditionalCheckFailed"]:  # a retry
                token = MarketItem.get(SITE + order.site_id, TOKEN + order.client_token, consistent_read=True)
                return self.get_order(order.site_id, str(token.order_id))
            if reasons[:1] == ["ConditionalCheckFailed"]:
                raise Conflict("the slot's gate has closed", "delivery_start") from exc
            raise
        _has_trading(slot_ms)
        return order

    def get_order(self, site_id: str, order_id: str) -> Order:
        slot = order_id.split("-", 1)[0]
        try:
            item = MarketItem.get(SLOT + slot, ORDER + order_id, consistent_read=True)
        except DoesNotExist as exc:
            raise NotFound(f"no order {order_id!r} of this site", "id") from exc
        if item.site_pk != SITE + site_id:  # another site's order: as if there were none
            raise NotFound(f"no order {order_id!r} of this site", "id")
        return _order(item)

    def cancel(self, site_id: str, order_id: str, slot_ms: int) -> Order:
        order = self.get_order(site_id, order_id)
        if order.status == "cancelled":
            return order  # a retried cancel
        try:
            with _transaction() as tx:
                tx.condition_check(
                    MarketItem, slot_key(slot_ms), CLOSED, condition=MarketItem.pk.does_not_exist()
                )
                tx.update(
                    MarketItem(slot_key(slot_ms), ORDER + order_id),
                    actions=[MarketItem.status.set("cancelled")],
                    condition=MarketItem.status == "open",
                )
        except TransactWriteError as exc:
            reasons = _reasons(exc)
            if reasons[:1] == ["ConditionalCheckFailed"]:
                raise Conflict("the slot's gate has closed: the order stays in its book", "id") from exc
            if reasons[1:2] == ["ConditionalCheckFailed"]:
                return self.get_order(site_id, order_id)  # cancelled meanwhile
            raise
        return order.model_copy(update={"status": "cancelled"})

    def orders(self, site_id: str, limit: int, next_token: str | None) -> Page[Order]:
        """Newest slot first (the index is eventually consistent: a just-placed order may lag)."""
        results = MarketItem.by_site.query(
            SITE + site_id, MarketItem.sk.startswith(ORDER), scan_index_forward=False, page_size=limit,
            last_evaluated_key=decode_token(next_token, BY_SITE_PAGE_KEYS),
        )  # fmt: skip
        page = next(results.page_iter)
        items = [_order(MarketItem.from_raw_data(raw)) for raw in page.get("Items", [])]
        return Page(
            items=items, count=len(items), next_token=encode_token(results.page_iter.last_evaluated_key)
        )

    # ------------------------------------------------------------ the slot

    def close(self, slot_ms: int, at: str) -> None:
        try:
            MarketItem(slot_key(slot_ms), CLOSED, doc={"closed_at": at}).save(
                condition=MarketItem.pk.does_not_exist()
            )
        except PutError as exc:
            if exc.cause_response_code != LOST_CONDITION:
                raise

    def _slot_items(self, slot_ms: int) -> Iterator[MarketItem]:
        return MarketItem.query(slot_key(slot_ms), MarketItem.sk.startswith(ORDER), consistent_read=True)

    def book(self, slot_ms: int) -> list[Order]:
        return [_order(item) for item in self._slot_items(slot_ms) if item.status != "cancelled"]

    def open_slots(self, from_ms: int, to_ms: int) -> list[int]:
        return [
            int(item.slot)
            for item in MarketItem.query(MARKET, MarketItem.sk.between(slot_key(from_ms), slot_key(to_ms)))
            if not item.closed and item.slot is not None
        ]

    # ------------------------------------------------------------ settlement

    def settle(self, trades: Sequence[TradeLegs], ledger: Ledger) -> int:
        """Transactions of 25 trades (100 items). A chunk that loses a condition has trades written
        already (a re-run, or a concurrent run): one BatchGet finds which, and the rest go again in
        one transaction; should that lose too (a run at the same time), each goes alone."""
        new = 0
        for start in range(0, len(trades), TRADES_PER_TRANSACTION):
            chunk = trades[start : start + TRADES_PER_TRANSACTION]
            written = self._write(chunk, ledger)
            if written is None:
                missing = self._missing(chunk)
                written = self._write(missing, ledger) if missing else 0
            if written is None:
                written = sum(self._write([trade], ledger) or 0 for trade in self._missing(chunk))
            new += written
        return new

    @staticmethod
    def _missing(trades: Sequence[TradeLegs]) -> list[TradeLegs]:
        """The trades not written yet (a trade's sides are written together: its first tells)."""
        keys = {(SITE + t.legs[0].site_id, f"{TRADE}{t.trade_id}#{t.legs[0].side}"): t for t in trades}
        found = {(item.pk, item.sk) for item in MarketItem.batch_get(list(keys), consistent_read=True)}
        return [trade for key, trade in keys.items() if key not in found]

    def _write(self, trades: Sequence[TradeLegs], ledger: Ledger) -> int | None:
        """All of `trades` or none: their number, or None when a condition was lost (or 0 for a
        single trade that is there already)."""
        for attempt in range(RETRIES):
            try:
                with _transaction() as tx:
                    for trade in trades:
                        for leg in trade.legs:
                            tx.save(
                                MarketItem(
                                    SITE + leg.site_id, f"{TRADE}{trade.trade_id}#{leg.side}", doc=_json(leg)
                                ),
                                condition=MarketItem.pk.does_not_exist(),
                            )
                        ledger.stage(tx, trade.entries)
                return len(trades)
            except TransactWriteError as exc:
                reasons = _reasons(exc)
                if "ConditionalCheckFailed" in reasons:
                    return 0 if len(trades) == 1 else None
                if "TransactionConflict" in reasons and attempt < RETRIES - 1:
                    time.sleep(0.05 * (attempt + 1))
                    continue
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    def record(self, slot_ms: int, clearing: Clearing, orders: Sequence[Order]) -> bool:
        """The orders' fills first (the auction's, the same in every run, so a run that stopped half
        way is completed by the next), then the clearing, once."""
        with MarketItem.batch_write() as batch:
            for order in orders:
                batch.save(_order_item(order, slot_ms))
        MarketItem(MARKET, slot_key(slot_ms), slot=slot_ms, closed=True).save()
        try:
            MarketItem(slot_key(slot_ms), CLEARING, doc=_json(clearing)).save(
                condition=MarketItem.pk.does_not_exist()
            )
        except PutError as exc:
            if exc.cause_response_code != LOST_CONDITION:
                raise
            return False
        try:
            MarketItem(MARKET, LAST, slot=slot_ms, doc=_json(clearing)).save(
                condition=MarketItem.slot.does_not_exist() | (MarketItem.slot <= slot_ms)
            )
        except PutError as exc:
            if exc.cause_response_code != LOST_CONDITION:
                raise
        return True

    def last_clearing(self) -> Clearing | None:
        try:
            return Clearing.model_validate(MarketItem.get(MARKET, LAST).doc)
        except DoesNotExist:
            return None

    # ------------------------------------------------------------ after delivery

    def positions(self, slot_ms: int) -> dict[str, Decimal]:
        traded: dict[str, Decimal] = {}
        for item in MarketItem.query(slot_key(slot_ms), consistent_read=True):
            if item.sk.startswith(ORDER) and item.filled_kwh and Decimal(item.filled_kwh):
                site, sign = str(item.site_pk).removeprefix(SITE), 1 if item.doc["side"] == "sell" else -1
                traded[site] = traded.get(site, Decimal(0)) + sign * Decimal(item.filled_kwh)
            elif item.sk.startswith(BILATERAL) and item.status == "accepted":
                deal = Proposal.model_validate(item.doc)
                sign = 1 if deal.side == "sell" else -1
                traded[deal.proposer] = traded.get(deal.proposer, Decimal(0)) + sign * deal.quantity_kwh
                traded[deal.peer] = traded.get(deal.peer, Decimal(0)) - sign * deal.quantity_kwh
        return traded

    def delivered_slots(self, before_ms: int) -> list[int]:
        return [
            int(item.slot)
            for item in MarketItem.query(MARKET, MarketItem.sk.between(slot_key(0), slot_key(before_ms)))
            if item.closed and not item.imbalance and item.slot is not None
        ]

    def imbalance_settled(self, slot_ms: int) -> None:
        MarketItem(MARKET, slot_key(slot_ms)).update(actions=[MarketItem.imbalance.set(True)])

    def trades(self, site_id: str, limit: int, next_token: str | None) -> Page[SiteTrade]:
        """Newest slot first."""
        results = MarketItem.query(
            SITE + site_id, MarketItem.sk.startswith(TRADE), scan_index_forward=False, page_size=limit,
            last_evaluated_key=decode_token(next_token, ("pk", "sk")),
        )  # fmt: skip
        page = next(results.page_iter)
        items = [SiteTrade.model_validate(MarketItem.from_raw_data(raw).doc) for raw in page.get("Items", [])]
        return Page(
            items=items, count=len(items), next_token=encode_token(results.page_iter.last_evaluated_key)
        )

    # ------------------------------------------------------------ bilateral transactions

    @staticmethod
    def _proposal_items(proposal: Proposal) -> list[MarketItem]:
        doc = _json(proposal)
        return [
            MarketItem(SITE + site, BILATERAL + proposal.transaction_id, doc=doc, status=proposal.status)
            for site in (proposal.proposer, proposal.peer)
        ]

    def propose(self, proposal: Proposal) -> None:
        with _transaction() as tx:
            for item in self._proposal_items(proposal):
                tx.save(item, condition=MarketItem.pk.does_not_exist())

    def get_proposal(self, site_id: str, transaction_id: str) -> Proposal:
        try:
            item = MarketItem.get(SITE + site_id, BILATERAL + transaction_id, consistent_read=True)
        except DoesNotExist as exc:
            raise NotFound(f"no transaction {transaction_id!r} of this site", "id") from exc
        return Proposal.model_validate(item.doc)

    def accept(self, proposal: Proposal, trade: TradeLegs, ledger: Ledger) -> Proposal:
        try:
            with _transaction() as tx:
                for item in self._proposal_items(proposal):
                    tx.save(item, condition=MarketItem.status == "proposed")
                for leg in trade.legs:
                    tx.save(
                        MarketItem(SITE + leg.site_id, f"{TRADE}{trade.trade_id}#{leg.side}", doc=_json(leg)),
                        condition=MarketItem.pk.does_not_exist(),
                    )
                ledger.stage(tx, trade.entries)
                slot_ms = int(proposal.transaction_id[:13])
                tx.save(  # in the slot's partition too, for its positions after delivery
                    MarketItem(slot_key(slot_ms), BILATERAL + proposal.transaction_id, doc=_json(proposal),
                               status="accepted"),
                    condition=MarketItem.pk.does_not_exist(),
                )  # fmt: skip
        except TransactWriteError as exc:
            if "ConditionalCheckFailed" in _reasons(exc):  # accepted meanwhile
                return self.get_proposal(proposal.peer, proposal.transaction_id)
            raise
        _has_trading(slot_ms)
        return proposal

    def proposals(self, site_id: str) -> list[Proposal]:
        return [
            Proposal.model_validate(item.doc)
            for item in MarketItem.query(
                SITE + site_id,
                MarketItem.sk.startswith(BILATERAL),
                filter_condition=MarketItem.status == "proposed",
            )
        ]

    # ------------------------------------------------------------ suggested prices

    def markups(self, site_id: str) -> MarkupsIn | None:
        try:
            return MarkupsIn.model_validate(MarketItem.get(SITE + site_id, MARKUPS).doc)
        except DoesNotExist:
            return None

    def put_markups(self, site_id: str, markups: MarkupsIn) -> None:
        MarketItem(SITE + site_id, MARKUPS, doc=_json(markups)).save()
