"""Automation rules' edge detection (pure): a condition on one sensor's metric, held for N minutes by
the readings' own times, fires once on its rising edge and re-arms when it turns false.

A rule's state is the start of the current run of true readings (`since_ms`), whether that run has
fired (`fired`), and the time of the newest reading judged (`last_ms`). Readings are judged in time
order; one at or before `last_ms` was judged already (a redelivered batch) or arrived after newer
ones were judged: it cannot change the past decisions and is skipped. So a batch delivered twice
fires nothing the second time, and the state is a function of the readings alone.

The condition holds for N minutes when every reading from `since_ms` to now was true and the newest
is at least N minutes after `since_ms` (exactly N fires). A silence longer than MAX_GAP_MINUTES
between two true readings breaks the hold: nothing says what happened in between, so the N minutes
start again at the reading after the gap (a rule that fired already stays fired: a gap is no false).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable
from dataclasses import dataclass

MAX_GAP_MINUTES = 15
OPERATORS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le, "==": operator.eq,
}  # fmt: skip


@dataclass(frozen=True)
class EdgeState:
    since_ms: int | None = None
    fired: bool = False
    last_ms: int | None = None


def step(
    state: EdgeState,
    op: str,
    threshold: float,
    for_minutes: int,
    readings: Iterable[tuple[int, float]],
    max_gap_minutes: int = MAX_GAP_MINUTES,
) -> tuple[EdgeState, list[int]]:
    """The state after `readings` ((ts ms, value), any order), and the reading times at which the rule
    fires (one per rising edge that held `for_minutes`)."""
    holds = OPERATORS[op]
    hold_ms, gap_ms = for_minutes * 60_000, max_gap_minutes * 60_000
    since, fired, last = state.since_ms, state.fired, state.last_ms
    fires: list[int] = []
    for ts, value in sorted(readings):
        if last is not None and ts <= last:
            continue  # judged already
        if not holds(value, threshold):
            since, fired = None, False  # re-armed
        else:
            if since is None:
                since, fired = ts, False
            elif not fired and last is not None and ts - last > gap_ms:
                since = ts  # a silence breaks the hold; a rule that fired stays fired until false
            if not fired and ts - since >= hold_ms:
                fires.append(ts)
                fired = True
        last = ts
    return EdgeState(since, fired, last), fires
