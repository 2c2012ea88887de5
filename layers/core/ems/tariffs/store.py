"""A site's tariff: one item of the registry table (pk = site id, sk = "TARIFF")."""

from __future__ import annotations

from typing import Any

from pynamodb.exceptions import DoesNotExist

from ems.registry.store import TARIFF_SK, RegistryItem
from ems.tariffs.models import Tariff


class TariffStore:
    def get(self, site_id: str) -> Tariff | None:
        try:
            item = RegistryItem.get(site_id, TARIFF_SK)
        except DoesNotExist:
            return None
        data: dict[str, Any] = dict(item.metadata or {})
        return Tariff.model_validate({**data, "site_id": site_id, "updated_at": item.updated_at.isoformat()})

    def put(self, tariff: Tariff, created_at: Any) -> None:
        data = tariff.model_dump(exclude={"site_id", "updated_at", "is_default"})
        RegistryItem(
            pk=tariff.site_id, sk=TARIFF_SK, metadata=data, created_at=created_at, updated_at=created_at
        ).save()
