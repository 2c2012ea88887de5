"""What reading the ledger needs of its store (ems.ledger.store.LedgerStore; tests: an in-memory fake)."""

from __future__ import annotations

from typing import Protocol

from ems.core.pagination import Page
from ems.ledger.models import LedgerEntry


class Entries(Protocol):
    def entries(self, site_id: str, limit: int, next_token: str | None) -> Page[LedgerEntry]: ...
