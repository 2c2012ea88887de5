"""The ledger's entries in their own DynamoDB table (LEDGER_TABLE), through one PynamoDB model.

Keys: pk = "SITE#<site>", sk = "<source>#<source id>": the entry's key is its cause, so a second write
of the same entry loses its condition and changes nothing. Amounts are stored as decimal strings
(PynamoDB's NumberAttribute goes through float), so sums are exact.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from pynamodb.attributes import NumberAttribute, UnicodeAttribute
from pynamodb.exceptions import PutError
from pynamodb.models import Model
from pynamodb.transactions import TransactWrite

from ems.core.pagination import Page, decode_token, encode_token
from ems.core.tables import EnvRegion, EnvTableName
from ems.ledger.models import LedgerEntry

SITE = "SITE#"
LOST_CONDITION = "ConditionalCheckFailedException"


class LedgerItem(Model):
    class Meta:
        table_name = EnvTableName("LEDGER_TABLE", "ems-dev-ledger")
        region = EnvRegion()

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    amount = UnicodeAttribute()
    currency = UnicodeAttribute()
    at = UnicodeAttribute()
    memo = UnicodeAttribute(null=True)
    reading_ms = NumberAttribute(null=True)


def _item(entry: LedgerEntry) -> LedgerItem:
    return LedgerItem(
        SITE + entry.site_id, f"{entry.source}#{entry.source_id}", amount=str(entry.amount),
        currency=entry.currency, at=entry.at, memo=entry.memo, reading_ms=entry.reading_ms,
    )  # fmt: skip


def _entry(item: LedgerItem) -> LedgerEntry:
    source, _, source_id = item.sk.partition("#")
    return LedgerEntry(
        site_id=item.pk.removeprefix(SITE), source=source, source_id=source_id, amount=Decimal(item.amount),
        currency=item.currency, at=item.at, memo=item.memo,
        reading_ms=None if item.reading_ms is None else int(item.reading_ms),
    )  # fmt: skip


class LedgerStore:
    def stage(self, tx: TransactWrite, entries: Sequence[LedgerEntry]) -> None:
        """Add each entry's put, on the condition that it is not there yet, to a transaction the
        caller commits (the market writes a trade and its entries in one)."""
        for entry in entries:
            tx.save(_item(entry), condition=LedgerItem.pk.does_not_exist())

    def post(self, entries: Sequence[LedgerEntry]) -> int:
        """Write each entry unless it is there already; how many were new."""
        new = 0
        for entry in entries:
            try:
                _item(entry).save(condition=LedgerItem.pk.does_not_exist())
                new += 1
            except PutError as exc:
                if exc.cause_response_code != LOST_CONDITION:
                    raise
        return new

    def entries(self, site_id: str, limit: int, next_token: str | None) -> Page[LedgerEntry]:
        results = LedgerItem.query(
            SITE + site_id, page_size=limit, last_evaluated_key=decode_token(next_token, ("pk", "sk"))
        )
        page = next(results.page_iter)
        items = [_entry(LedgerItem.from_raw_data(raw)) for raw in page.get("Items", [])]
        return Page(
            items=items, count=len(items), next_token=encode_token(results.page_iter.last_evaluated_key)
        )
