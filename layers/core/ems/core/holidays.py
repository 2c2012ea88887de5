"""Public holidays by country, from the `holidays` package (the CoreLayer's; imported only when a
country is given: ~0.2 s and a few MB that most routes never load). A country is ISO 3166-1 alpha-2,
optionally with an ISO 3166-2 subdivision: "DE", "GB-ENG" (England and Wales), "US-CA"."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import date

from ems.core.observability import logger

COUNTRY_PATTERN = r"[A-Z]{2}(-[A-Z0-9]{1,3})?"


def unknown_country(value: str) -> str | None:
    """Why `value` names no country whose holidays are known; None when it does."""
    if not re.fullmatch(COUNTRY_PATTERN, value):
        return f"{value!r} is not an ISO 3166 code: two capital letters, optionally a subdivision (like DE, GB-ENG, US-CA)"
    import holidays

    code, _, subdiv = value.partition("-")
    supported = holidays.list_supported_countries()
    if code not in supported:
        return f"{code!r} is not a country whose public holidays are known"
    if subdiv and subdiv not in supported[code]:
        return f"{subdiv!r} is not a subdivision of {code} whose public holidays are known"
    return None


def public_holidays(country: str | None, years: Iterable[int]) -> frozenset[date]:
    """The country's public holidays in `years`; none (with a warning) for a country not known."""
    if not country:
        return frozenset()
    if unknown_country(country.upper()) is not None:
        logger.warning("no public holidays known for this country: none used", extra={"country": country})
        return frozenset()
    import holidays

    code, _, subdiv = country.upper().partition("-")
    return frozenset(holidays.country_holidays(code, subdiv=subdiv or None, years=sorted(set(years))).keys())
