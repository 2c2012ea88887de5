"""A site's tariff (API.md `GET, PUT /api/v1/tariffs`) and the price of energy at a moment (no I/O).

A price is a flat number, a time-of-use table (bands of local hours, optionally per weekday, that
cover every hour of every day exactly once) or an explicit series of prices from given instants
(each holds until the next; before the first, the first holds). Prices are per kWh in the site's
currency; demand charge per kW of the period's peak.
"""

from __future__ import annotations

from datetime import datetime
from functools import cache
from typing import Annotated
from zoneinfo import ZoneInfo

from pydantic import ConfigDict, Field, field_validator

from ems.core.clock import parse_time
from ems.core.models import Model

PricePerKwh = Annotated[float, Field(ge=-10, le=100)]  # negative prices happen on real markets
WEEKDAYS = tuple(range(7))  # Monday = 0, as datetime.weekday()


class TouBand(Model):
    model_config = ConfigDict(extra="forbid")

    weekdays: list[Annotated[int, Field(ge=0, le=6)]] | None = None  # None: every day
    hour_from: int = Field(ge=0, le=23)
    hour_to: int = Field(ge=1, le=24)  # exclusive
    price: PricePerKwh


class PriceFrom(Model):
    model_config = ConfigDict(extra="forbid")

    start: str | int | float
    price: PricePerKwh

    def starts_at(self) -> datetime:
        return parse_time(self.start, "start")


Price = PricePerKwh | list[TouBand] | list[PriceFrom]


def _check_price(value: Price) -> Price:
    """A time-of-use table covers each hour of each weekday exactly once; a series is in time order."""
    if isinstance(value, float | int) or not value:
        if isinstance(value, list):
            raise ValueError("a price table needs at least one entry")
        return value
    if all(isinstance(v, TouBand) for v in value):
        bands = [v for v in value if isinstance(v, TouBand)]
        for band in bands:
            if band.hour_to <= band.hour_from:
                raise ValueError(f"band {band.hour_from}-{band.hour_to}: hour_to must be after hour_from")
        for day in WEEKDAYS:
            hours = [0] * 24
            for band in bands:
                if band.weekdays is None or day in band.weekdays:
                    for hour in range(band.hour_from, band.hour_to):
                        hours[hour] += 1
            if any(n > 1 for n in hours):
                raise ValueError(f"bands overlap on weekday {day} at hour {hours.index(max(hours))}")
            if 0 in hours:
                raise ValueError(f"no price on weekday {day} at hour {hours.index(0)}")
        return value
    series = [v for v in value if isinstance(v, PriceFrom)]
    try:
        starts = [v.starts_at() for v in series]
    except Exception as exc:  # parse_time raises Invalid naming "start"
        raise ValueError(f"a start is not a time: {exc}") from None
    if starts != sorted(starts) or len(set(starts)) != len(starts):
        raise ValueError("a price series must be in time order without repeated starts")
    return value


class TariffIn(Model):
    model_config = ConfigDict(extra="forbid")

    import_price: Price
    export_price: Price
    demand_charge_per_kw: float | None = Field(default=None, ge=0, le=10_000)
    co2_kg_per_kwh: float | None = Field(default=None, ge=0, le=5)
    grid_import_limit_kw: float | None = Field(default=None, gt=0)
    grid_export_limit_kw: float | None = Field(default=None, gt=0)
    currency: str | None = Field(default=None, pattern=r"^[A-Z]{3}$")

    _prices = field_validator("import_price", "export_price")(classmethod(lambda cls, v: _check_price(v)))


class Tariff(TariffIn):
    site_id: str
    updated_at: str | None = None  # None: the site has set none, these are the defaults
    is_default: bool = False


@cache
def default_tariff() -> TariffIn:
    """What a site without a tariff of its own is priced at: zero prices (costs are then 0, not
    made-up) and no CO2 factor (CO2 is then null). Made when first asked for: made at import, it
    built TariffIn's validator in every function that imports this module."""
    return TariffIn(import_price=0.0, export_price=0.0)


def price_at(price: Price, at: datetime, timezone: str) -> float:
    """The price per kWh at instant `at` (aware), reading a time-of-use table in the site's zone."""
    if isinstance(price, float | int):
        return float(price)
    if isinstance(price[0], TouBand):
        local = at.astimezone(ZoneInfo(timezone))
        for band in price:
            assert isinstance(band, TouBand)
            if (
                band.weekdays is None or local.weekday() in band.weekdays
            ) and band.hour_from <= local.hour < band.hour_to:
                return band.price
        raise AssertionError("a validated table covers every hour")  # _check_price
    chosen = price[0].price
    for entry in price:
        assert isinstance(entry, PriceFrom)
        if entry.starts_at() <= at:
            chosen = entry.price
        else:
            break
    return chosen
