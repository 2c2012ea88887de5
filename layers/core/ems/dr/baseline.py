"""The baseline an event's delivery is measured against, and the delivery (pure).

The rule, as the usual "10-of-10" utility customer baselines (CAISO, PJM, NYISO) write it:
- a slot is 15 minutes; a day's slot is the mean kW the site drew from the grid then;
- an event on a weekday that is no public holiday: the 10 most recent such weekdays before it that
  had no event, each with every slot of the event's window metered; an event on a weekend day or a
  holiday: the 4 most recent days of that kind (weekend days and holidays), likewise;
- fewer days: what there is, but at least 3, else the baseline is unknown;
- baseline per slot = the mean of that slot (the same local clock time) over the days chosen;
- day-of adjustment: factor = (mean kW on the event day over the 2 hours before the notice) /
  (the same 2 hours' mean over the days chosen), capped to [0.8, 1.2]; every baseline slot is
  multiplied by it (1.0, and said so, when those hours are not metered);
- delivered kWh = sum over the event's slots of (baseline kW - actual kW) x 0.25 h.
"""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

SLOT = timedelta(minutes=15)
SLOT_HOURS = 0.25
WEEKDAY_DAYS, SAME_KIND_DAYS, MIN_DAYS = 10, 4, 3
ADJUSTMENT_WINDOW = timedelta(hours=2)
ADJUSTMENT_CAP = 0.2  # the factor stays within 1 - cap and 1 + cap
LOOKBACK_DAYS = 60  # how far back comparable days are looked for


@dataclass(frozen=True)
class Baseline:
    slots_kw: list[float] | None  # None: unknown (fewer than MIN_DAYS comparable days)
    days: list[date]
    adjustment: float | None
    note: str | None = None
    unadjusted_kw: list[float] = field(default_factory=list)


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def slot_starts(start: datetime, slots: int) -> list[int]:
    return [_ms(start + i * SLOT) for i in range(slots)]


def same_time_on(moment: datetime, day: date, timezone: str) -> datetime:
    """`moment`'s local clock time on `day` (through daylight saving changes)."""
    local = moment.astimezone(ZoneInfo(timezone))
    return datetime.combine(day, local.time().replace(tzinfo=None), ZoneInfo(timezone)).astimezone(UTC)


def is_ordinary(day: date, holidays: AbstractSet[date]) -> bool:
    """A weekday that is no public holiday."""
    return day.weekday() < 5 and day not in holidays


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def baseline(
    start: datetime, slots: int, notice: datetime, timezone: str, history_kw: Mapping[int, float],
    event_days: set[date], holidays: AbstractSet[date],
) -> Baseline:  # fmt: skip
    """The baseline of an event of `slots` slots from `start`, notified at `notice`, from the site's
    metered history (slot start ms -> mean kW)."""
    zone = ZoneInfo(timezone)
    event_day = start.astimezone(zone).date()
    ordinary = is_ordinary(event_day, holidays)
    wanted = WEEKDAY_DAYS if ordinary else SAME_KIND_DAYS
    chosen: list[tuple[date, list[float]]] = []
    for back in range(1, LOOKBACK_DAYS + 1):
        day = event_day - timedelta(days=back)
        if day in event_days or is_ordinary(day, holidays) != ordinary:
            continue
        values = [history_kw.get(ms) for ms in slot_starts(same_time_on(start, day, timezone), slots)]
        if any(v is None for v in values):
            continue  # not every slot metered
        chosen.append((day, [v for v in values if v is not None]))
        if len(chosen) == wanted:
            break
    days = [d for d, _ in chosen]
    kind = "weekdays" if ordinary else "weekend days or holidays"
    if len(chosen) < MIN_DAYS:
        return Baseline(
            None, days, None, f"baseline unknown: {len(chosen)} comparable {kind} (at least {MIN_DAYS})"
        )
    unadjusted = [_mean([values[i] for _, values in chosen]) for i in range(slots)]
    factor, note = _adjustment(notice, timezone, history_kw, days)
    note = (
        note
        if len(chosen) == wanted
        else f"{len(chosen)} comparable {kind}, not {wanted}" + (f"; {note}" if note else "")
    )
    return Baseline([u * factor for u in unadjusted], days, factor, note, unadjusted)


def _adjustment(notice: datetime, timezone: str, history_kw: Mapping[int, float],
                days: list[date]) -> tuple[float, str | None]:  # fmt: skip
    first = datetime.fromtimestamp(_ms(notice - ADJUSTMENT_WINDOW) // 900_000 * 900_000 / 1000, UTC)
    count = int(ADJUSTMENT_WINDOW / SLOT)
    today = [history_kw.get(ms) for ms in slot_starts(first, count)]
    before = [history_kw.get(ms) for d in days for ms in slot_starts(same_time_on(first, d, timezone), count)]
    if any(v is None for v in today + before):
        return 1.0, "no day-of adjustment: the 2 hours before the notice are not all metered"
    baseline_kw = _mean([v for v in before if v is not None])
    if baseline_kw <= 0:
        return 1.0, "no day-of adjustment: the baseline days drew nothing before the notice"
    ratio = _mean([v for v in today if v is not None]) / baseline_kw
    return min(max(ratio, 1 - ADJUSTMENT_CAP), 1 + ADJUSTMENT_CAP), None


def delivered_kwh(baseline_kw: list[float], actual_kw: list[float]) -> float:
    return sum((b - a) * SLOT_HOURS for b, a in zip(baseline_kw, actual_kw, strict=True))
