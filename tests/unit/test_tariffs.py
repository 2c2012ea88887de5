"""Tariff prices at a moment, and the rules a price table must keep (pure)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from ems.tariffs.models import PriceFrom, TariffIn, TouBand, price_at

WEEKDAY_PEAK = [
    TouBand(weekdays=[0, 1, 2, 3, 4], hour_from=0, hour_to=17, price=0.20),
    TouBand(weekdays=[0, 1, 2, 3, 4], hour_from=17, hour_to=21, price=0.45),
    TouBand(weekdays=[0, 1, 2, 3, 4], hour_from=21, hour_to=24, price=0.20),
    TouBand(weekdays=[5, 6], hour_from=0, hour_to=24, price=0.15),
]


def test_a_flat_price_holds_at_every_moment() -> None:
    assert price_at(0.3, datetime(2026, 1, 1, tzinfo=UTC), "UTC") == 0.3


@pytest.mark.parametrize(
    ("utc", "price"),
    [
        (datetime(2026, 11, 23, 16, 30, tzinfo=UTC), 0.45),  # Monday 17:30 in Paris (UTC+1): peak
        (datetime(2026, 11, 23, 15, 30, tzinfo=UTC), 0.20),  # Monday 16:30 in Paris
        (datetime(2026, 11, 23, 20, 0, tzinfo=UTC), 0.20),  # Monday 21:00 in Paris: the peak has ended
        (datetime(2026, 11, 28, 17, 0, tzinfo=UTC), 0.15),  # Saturday
        (datetime(2026, 11, 29, 23, 30, tzinfo=UTC), 0.20),  # Sunday 23:30 UTC is Monday 00:30 in Paris
    ],
)
def test_a_time_of_use_table_is_read_in_the_sites_zone(utc: datetime, price: float) -> None:
    assert price_at(WEEKDAY_PEAK, utc, "Europe/Paris") == price


def test_a_series_price_holds_from_its_start_until_the_next() -> None:
    series = [
        PriceFrom(start="2026-01-01T00:00:00Z", price=0.1),
        PriceFrom(start="2026-01-01T12:00:00Z", price=0.5),
    ]
    assert price_at(series, datetime(2025, 12, 31, tzinfo=UTC), "UTC") == 0.1  # before the first: the first
    assert price_at(series, datetime(2026, 1, 1, 11, 59, tzinfo=UTC), "UTC") == 0.1
    assert price_at(series, datetime(2026, 1, 1, 12, 0, tzinfo=UTC), "UTC") == 0.5


@pytest.mark.parametrize(
    ("price", "reason"),
    [
        ([{"hour_from": 0, "hour_to": 23, "price": 0.1}], "no price on weekday 0 at hour 23"),
        (
            [
                {"hour_from": 0, "hour_to": 24, "price": 0.1},
                {"weekdays": [6], "hour_from": 8, "hour_to": 9, "price": 0.2},
            ],
            "bands overlap on weekday 6 at hour 8",
        ),
        ([{"hour_from": 5, "hour_to": 5, "price": 0.1}], "hour_to must be after hour_from"),
        (
            [
                {"start": "2026-01-02T00:00:00Z", "price": 0.1},
                {"start": "2026-01-01T00:00:00Z", "price": 0.2},
            ],
            "in time order",
        ),
        ([], "at least one entry"),
    ],
)
def test_a_broken_table_is_refused_with_the_reason(price: object, reason: str) -> None:
    with pytest.raises(ValidationError) as caught:
        TariffIn.model_validate({"import_price": price, "export_price": 0})
    assert reason in str(caught.value)
    assert caught.value.errors()[0]["loc"][0] == "import_price"
