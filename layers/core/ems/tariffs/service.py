"""Reading and setting a site's tariff."""

from __future__ import annotations

from ems.core.clock import Clock, to_iso, utc_now
from ems.registry.store import RegistryStore
from ems.tariffs.models import DEFAULT_TARIFF, Tariff, TariffIn
from ems.tariffs.store import TariffStore


def get_tariff(site_id: str, tariffs: TariffStore, registry: RegistryStore) -> Tariff:
    """The site's tariff, or DEFAULT_TARIFF (marked `is_default`) when it has set none."""
    registry.get_site(site_id)  # 404 for a site that does not exist
    found = tariffs.get(site_id)
    if found is not None:
        return found
    return Tariff(**DEFAULT_TARIFF.model_dump(), site_id=site_id, is_default=True)


def put_tariff(
    site_id: str, tariff: TariffIn, tariffs: TariffStore, registry: RegistryStore, now: Clock = utc_now
) -> Tariff:
    """Replace the site's tariff (a PUT: the same body twice is the same tariff)."""
    registry.get_site(site_id)
    moment = now()
    stored = Tariff(**tariff.model_dump(), site_id=site_id, updated_at=to_iso(moment))
    tariffs.put(stored, moment)
    return stored
