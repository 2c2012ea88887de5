"""The forecast calendar's public holidays: the site's `country` wins, the deployment's
ForecastHolidayCountry (HOLIDAY_COUNTRY) is the default for a site that names none."""

from __future__ import annotations

from datetime import UTC, date, datetime

from ems.forecast.service import calendar_of
from ems.registry.models import Site

AT = datetime(2030, 1, 1, tzinfo=UTC)
UNITY_DAY = date(2030, 10, 3)  # Germany's only
ENGLISH_SUMMER_BANK_HOLIDAY = date(2030, 8, 26)  # last Monday of August, England and Wales


def site(country: str | None) -> Site:
    return Site(site_id="hq", name="HQ", country=country, created_at=AT, updated_at=AT)


def test_the_site_s_country_wins_over_the_deployment_s() -> None:
    holidays = calendar_of(site("GB-ENG"), [2030], "DE").holidays
    assert ENGLISH_SUMMER_BANK_HOLIDAY in holidays and UNITY_DAY not in holidays


def test_a_site_without_a_country_takes_the_deployment_s() -> None:
    holidays = calendar_of(site(None), [2030], "DE").holidays
    assert UNITY_DAY in holidays and ENGLISH_SUMMER_BANK_HOLIDAY not in holidays
    assert calendar_of(site(None), [2030], None).holidays == frozenset()
