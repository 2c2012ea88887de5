"""Issue 14's accuracy harness through the HTTP API of the local cloud: England and Wales' demand
(bench/data/taylor.csv) shifted by whole weeks to end at the local cloud's clock, ingested as a meter's
power, trained with POST /api/v1/forecast/train, and the same backtest run in-process (the library call).

The data is half-hourly; the service trains at 15 minutes (ems.forecast.models.SLOT_MINUTES), so each
half-hour's demand is the power of both its quarter hours: one reading at :00 and one at :15 (or :30
and :45), one reading in each 15-minute rollup, whose mean is that reading. MW are posted as W / 1000
(a reading of `mw * 1000` W is `mw` kW), so the API's kW figures read as the bench's MW.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from bench import local_cloud
from ems.core.holidays import public_holidays
from ems.forecast.features import calendar_columns
from ems.forecast.history import SLOT_MS
from ems.forecast.model import Settings
from ems.forecast.models import SLOT_MINUTES
from ems.forecast.service import TRAIN_HORIZON_HOURS, backtest, calendar_of
from ems.registry.models import Site

DATA = Path(__file__).resolve().parent / "data" / "taylor.csv"
HALF_HOUR_MS = 30 * 60_000
WEEK_MS = 7 * 86_400_000
# The series' first half-hour: Monday 5 June 2000, 00:00 in London (BST, UTC+1); it ends 12 weeks on.
ORIGINAL_START = datetime(2000, 6, 4, 23, 0, tzinfo=UTC)
# Monday 30 November 2026, 00:00 at UTC+1: where the shifted 12 weeks end, and the local cloud's clock.
CLOCK = datetime(2026, 11, 29, 23, 0, tzinfo=UTC)
SHIFT_WEEKS = (CLOCK - ORIGINAL_START).days // 7 - 12
# Europe/London leaves BST on 25 October 2026, inside the shifted window; the original has no change,
# so a fixed UTC+1 keeps the shifted local midnights on the original's.
TIMEZONE = "Etc/GMT-1"
COUNTRY = "GB-ENG"
SITE = "taylor"
METER = "taylor-meter"
# Readings a request: under the HTTP API's 30 s on a loaded machine (each reading is a transaction in moto).
BATCH = 250
# Days a raw reading is kept in the harness's stack: the 12 weeks and a margin (ingest refuses older).
RETENTION_DAYS = 100


def taylor() -> np.ndarray:
    return np.loadtxt(DATA, skiprows=1)


@dataclass(frozen=True)
class Slice:
    """Whole weeks of the data, `first_week` on, shifted by whole weeks to end at CLOCK."""

    half_hours_mw: np.ndarray
    original_start: datetime
    start: datetime

    @property
    def start_ms(self) -> int:
        return int(self.start.timestamp() * 1000)

    @property
    def end(self) -> datetime:
        return self.start + timedelta(milliseconds=len(self.half_hours_mw) * HALF_HOUR_MS)

    @property
    def quarter_hours_kw(self) -> np.ndarray:
        """The series the service trains on: each half-hour's value in both its quarter hours."""
        return np.repeat(self.half_hours_mw, 2)


def weeks_of(values: np.ndarray, first_week: int, weeks: int) -> Slice:
    per_week = WEEK_MS // HALF_HOUR_MS
    part = values[first_week * per_week : (first_week + weeks) * per_week]
    original = ORIGINAL_START + timedelta(weeks=first_week)
    shift = (CLOCK - timedelta(weeks=weeks) - original) // timedelta(weeks=1)
    return Slice(part, original, original + timedelta(weeks=shift))


def holidays_between(start: datetime, end: datetime, country: str = COUNTRY) -> list[date]:
    """The public holidays of `country` on the local days of [start, end) at UTC+1."""
    local = timedelta(hours=1)
    first, last = (start + local).date(), (end + local - timedelta(milliseconds=1)).date()
    found = public_holidays(country, list(range(first.year, last.year + 1)))
    return sorted(d for d in found if first <= d <= last)


def readings(part: Slice) -> list[dict[str, Any]]:
    """Two readings a half hour (at its two quarter hours), power in W."""
    out = []
    for k, mw in enumerate(part.half_hours_mw.tolist()):
        at = part.start_ms + k * HALF_HOUR_MS
        for ts in (at, at + SLOT_MS):
            out.append({"sensor_id": METER, "ts": ts, "metrics": {"power_w": mw * 1000}})
    return out


def library_metrics(part: Slice, site: Site, trained_at: str, backtest_days: int) -> dict[str, Any]:
    """What POST /forecast/train computes, in-process: `backtest` on the same 15-minute series (from
    the first reading to the slot of `trained_at`, so empty slots after the last reading count as
    they do there), with the service's horizon, slot, calendar (the site's, as the API holds it)."""
    end_ms = int(datetime.fromisoformat(trained_at.replace("Z", "+00:00")).timestamp() * 1000)
    end_ms -= end_ms % SLOT_MS
    series = np.full((end_ms - part.start_ms) // SLOT_MS, np.nan)
    series[: len(part.quarter_hours_kw)] = part.quarter_hours_kw
    count = len(series) + TRAIN_HORIZON_HOURS * 60 // SLOT_MINUTES
    # The years as ems.forecast.service._columns takes them.
    years = sorted(
        {datetime.fromtimestamp(ms / 1000).year for ms in (part.start_ms, part.start_ms + count * SLOT_MS)}
    )
    columns = calendar_columns(part.start_ms, count, SLOT_MINUTES, calendar_of(site, years, None))
    settings = Settings(horizon_slots=TRAIN_HORIZON_HOURS * 60 // SLOT_MINUTES, slot_minutes=SLOT_MINUTES)
    _model, metrics = backtest(series, columns, settings, backtest_days)
    return metrics


METRICS = ("mae_kw", "mape_pct", "skill", "interval_coverage_pct", "naive_mae_kw", "backtest_days")


@dataclass(frozen=True)
class ApiRun:
    sent: int
    accepted: int
    duplicates: int
    ingest_s: float
    trained: dict[str, Any]  # POST /forecast/train's answer
    listed: dict[str, Any]  # the consumption model in GET /forecast/models
    site: Site  # as GET /sites/{id} answers


def _post(http: httpx.Client, path: str, body: Any, headers: dict[str, str]) -> httpx.Response:
    """A POST retried on a gateway timeout or 5xx (ingest is idempotent: a retry answers the same)."""
    for attempt in range(3):
        answer = http.post(path, json=body, headers=headers)
        if answer.status_code < 500:
            return answer
        time.sleep(1 + attempt)
    return answer


def run_through_api(http_url: str, admin_token: str, part: Slice, backtest_days: int) -> ApiRun:
    """Site (UTC+1, GB-ENG), a meter, the readings in batches, a training run, the model listed."""
    admin = {"authorization": f"Bearer {admin_token}"}
    at_site = {**admin, "x-site": SITE}
    with httpx.Client(base_url=http_url, timeout=120) as http:
        made = _post(http, "/api/v1/sites", {"site_id": SITE, "name": "England and Wales demand (2000)",
                                             "timezone": TIMEZONE, "country": COUNTRY}, admin)  # fmt: skip
        if made.status_code not in (200, 201):
            raise RuntimeError(f"POST /sites: {made.status_code} {made.text}")
        meter = {"sensor_id": METER, "name": "Demand", "sensor_type": "meter", "unit": "W"}
        made = _post(http, "/api/v1/sensors", meter, at_site)
        if made.status_code not in (200, 201):
            raise RuntimeError(f"POST /sensors: {made.status_code} {made.text}")
        sent = readings(part)
        accepted = duplicates = 0
        began = time.perf_counter()
        for i in range(0, len(sent), BATCH):
            answer = _post(http, "/api/v1/data/ingest", {"readings": sent[i : i + BATCH]}, at_site)
            if answer.status_code != 200:
                raise RuntimeError(f"POST /data/ingest: {answer.status_code} {answer.text}")
            result = answer.json()
            if result["rejected"]:
                raise RuntimeError(f"readings rejected: {result['rejected'][:3]}")
            accepted += result["accepted"]
            duplicates += result["duplicates"]
        ingest_s = time.perf_counter() - began
        answer = _post(http, "/api/v1/forecast/train",
                       {"target": "consumption", "backtest_days": backtest_days}, at_site)  # fmt: skip
        if answer.status_code != 200:
            raise RuntimeError(f"POST /forecast/train: {answer.status_code} {answer.text}")
        trained = answer.json()
        page = http.get("/api/v1/forecast/models", headers=at_site).json()
        listed = next(m for m in page["items"] if m["series"] == "consumption")
        site = Site.model_validate(http.get(f"/api/v1/sites/{SITE}", headers=admin).json())
    return ApiRun(len(sent), accepted, duplicates, ingest_s, trained, listed, site)


def cloud_args(clock: datetime = CLOCK) -> list[str]:
    """`ems local up`'s arguments for the harness: no demo site, the clock at the data's end (speed 1:
    the training run is minutes away, inside the same 15-minute slot), retention over 12 weeks."""
    return ["--empty", "--clock", clock.isoformat().replace("+00:00", "Z"),
            "--param", f"RawRetentionDays={RETENTION_DAYS}"]  # fmt: skip


def backtest_origins(slots: int, days: int) -> tuple[int, int]:
    """(origins, slots scored) of `backtest` on `slots` 15-minute values with `days` held out (its
    own rule: one origin a day whose horizon ends inside the data)."""
    day, horizon = 24 * 60 // SLOT_MINUTES, TRAIN_HORIZON_HOURS * 60 // SLOT_MINUTES
    origins = list(range(slots - days * day, slots - horizon + 1, day)) or [slots - days * day]
    return len(origins), sum(min(horizon, slots - o) for o in origins)


@dataclass(frozen=True)
class Harness:
    """The 12 weeks through the API and in-process; `api` None when the local cloud run failed (`why`)."""

    part: Slice
    backtest_days: int
    library: dict[str, Any]
    api: ApiRun | None
    why: str | None
    train_s: float  # POST /forecast/train's wall time
    trailing_empty_slots: int  # slots between the last reading and the training run's slot


def harness(scratch: Path, backtest_days: int = 28) -> Harness:
    """All 12 weeks: the local cloud's run, then the library call on the series it trained on."""
    part = weeks_of(taylor(), first_week=0, weeks=12)
    home = scratch / "forecast-api"
    home.mkdir(exist_ok=True)
    run, why, train_s = None, None, float("nan")
    try:
        with local_cloud.running(home, cloud_args()) as stack:
            began = time.perf_counter()
            run = run_through_api(stack["http"], stack["admin_token"], part, backtest_days)
            train_s = time.perf_counter() - began - run.ingest_s
    except (RuntimeError, httpx.HTTPError) as exc:
        why = f"not run: {str(exc).splitlines()[0]}"
    if run is not None:
        site, trained_at = run.site, str(run.trained["trained_at"])
    else:  # the site as the harness would have created it, trained at the clock's start
        site = Site(site_id=SITE, name=SITE, timezone=TIMEZONE, country=COUNTRY, created_at=CLOCK,
                    updated_at=CLOCK)  # fmt: skip
        trained_at = CLOCK.isoformat()
    end_ms = int(datetime.fromisoformat(trained_at.replace("Z", "+00:00")).timestamp() * 1000)
    trailing = (end_ms - end_ms % SLOT_MS - part.start_ms) // SLOT_MS - len(part.quarter_hours_kw)
    library = library_metrics(part, site, trained_at, backtest_days)
    return Harness(part, backtest_days, library, run, why, train_s, trailing)


def _f(x: Any, digits: int) -> str:
    return "n/a" if x is None or x != x else f"{x:,.{digits}f}"


def _day(moment: datetime) -> str:
    return f"{moment:%A} {moment.day} {moment:%B %Y}"


def section(h: Harness, headline: Any, headline_origins: int, headline_slots: int) -> str:
    """The three rows (the headline: library, 30 minutes, 24 h; the library on the 15-minute series with
    the service's settings; the HTTP API) and what the run did. `headline` an ems.forecast.model.Accuracy."""
    n = len(h.part.quarter_hours_kw) + h.trailing_empty_slots
    origins, slots = backtest_origins(n, h.backtest_days)
    horizon = f"{TRAIN_HORIZON_HOURS} h"

    def row(name: str, m: dict[str, Any]) -> list[str]:
        return [name, f"{SLOT_MINUTES} min", horizon, str(origins), f"{slots:,}", _f(m["mae_kw"], 3),
                f"{_f(m['mape_pct'], 3)} %", _f(m["skill"], 3), f"{_f(m['interval_coverage_pct'], 3)} %"]  # fmt: skip

    rows = [
        ["library, the bench's settings (the headline above)", "30 min", "24 h", str(headline_origins),
         f"{headline_slots:,}", _f(headline.mae, 1), f"{_f(headline.mape_pct, 2)} %", _f(headline.skill, 3),
         f"{_f(headline.coverage_pct, 1)} %"],
        row(f"library: ems.forecast.service.backtest, {h.backtest_days} days, in-process", h.library),
    ]  # fmt: skip
    api = h.api
    if api is None:
        rows.append([f"HTTP API, local cloud: {h.why}", *["-"] * 8])
        verdict = f"the HTTP API's run failed ({h.why})"
    else:
        rows.append(row("HTTP API, local cloud: POST /api/v1/forecast/train", api.trained))
        same = {k: api.trained[k] for k in METRICS} == h.library
        listed = {k: api.listed[k] for k in METRICS} == h.library
        verdict = (
            f"the API's MAE, MAPE, skill and coverage **{'equal' if same else 'differ from'}** the library "
            f"call's (to the API's 3 digits); GET /api/v1/forecast/models lists "
            f"{'the same' if listed else 'other'} figures; model {api.trained['model']}, served "
            f"{api.trained['served']}"
        )
    table = "\n".join(
        ["| run | slot | horizon | origins | slots scored | MAE (MW) | MAPE | skill | 10-90% coverage |",
         "|---|---|---|---|---|---|---|---|---|", *("| " + " | ".join(r) + " |" for r in rows)]
    )  # fmt: skip
    original_end = h.part.original_start + (h.part.end - h.part.start)
    holidays = (holidays_between(h.part.original_start, original_end),
                holidays_between(h.part.start, h.part.end))  # fmt: skip
    said = ["none" if not found else ", ".join(str(d) for d in found) for found in holidays]
    local = timedelta(hours=1)
    ingest = (
        "" if api is None else
        f" {api.sent:,} readings sent in batches of {BATCH}, {api.accepted:,} accepted ({api.duplicates} "
        f"duplicates), ingested in **{api.ingest_s:.1f} s** ({api.sent / api.ingest_s:,.0f} readings/s); "
        f"POST /forecast/train answered in {h.train_s:.1f} s; {h.trailing_empty_slots} empty slots between "
        f"the last reading and the training run's slot."
    )  # fmt: skip
    return f"""**The same harness through the HTTP API** (issue 14; `bench/forecast_api.py`, and on two weeks
tests/e2e/test_forecast_harness.py): `ems local up --empty --clock {cloud_args()[2]}
--param RawRetentionDays={RETENTION_DAYS}` for real; the 12 weeks shifted by {SHIFT_WEEKS:,} weeks, so
{_day(h.part.start + local)} to {_day(h.part.end + local)} 00:00 at UTC+1, ending at the
clock; a site in timezone {TIMEZONE} (fixed UTC+1: the original is all BST, the shifted window crosses
25 October's change in Europe/London) with country {COUNTRY}; one meter; each half-hour's demand posted
as the power of both its quarter hours (two readings, one in each 15-minute rollup; W = MW x 1000, so kW
read as MW) through POST /api/v1/data/ingest; then POST /api/v1/forecast/train with backtest_days
{h.backtest_days}. Public holidays of England and Wales (computed, ems.core.holidays.public_holidays)
in the original window: {said[0]}; in the shifted one: {said[1]}.{ingest}

{table}

Rows 2 and 3 are not row 1's run: the service trains at {SLOT_MINUTES}-minute slots and scores a
{horizon} horizon (ems.forecast.service.TRAIN_HORIZON_HOURS) where the headline forecasts 48 half-hours
(24 h), and with {h.backtest_days} days held out a {horizon} horizon fits {origins} origins inside the
data, not {h.backtest_days}. All three train once on weeks 1-8 (rows 2 and 3: all but the last
{h.backtest_days} days), and there the model chooses its decomposition and trees on 15-minute rows. Row 2
is `backtest` on the very series the API trained on (from the first reading to the training run's slot),
with the service's settings and the site's calendar as GET /api/v1/sites answers it: {verdict}.
"""
