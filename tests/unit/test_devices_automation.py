"""Automation rules: edge detection on hand-made series (ems.devices.automation.step), and
evaluate_rules on fakes (one command per rising edge, redelivery, a concurrent writer, control priority).

The rule throughout: temperature_c > 26 for 5 minutes. Times are minutes after T0.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ems.core.errors import Invalid
from ems.devices import service as devices
from ems.devices.automation import EdgeState, step
from ems.devices.models import CommandRequest, DeviceIn, ListQuery, RuleIn, RuleUpdate
from ems.telemetry.models import ReceivedReading, TelemetryReceived
from tests.support.fakes_devices import MemoryRules, memory_stores

T0_MS = 1_900_000_000_000
MIN = 60_000
SITE = "hq"


def series(*points: tuple[float, float]) -> list[tuple[int, float]]:
    """(minutes after T0, °C) as (ts ms, value)."""
    return [(T0_MS + int(m * MIN), v) for m, v in points]


def run(points: list[tuple[int, float]], state: EdgeState = EdgeState()) -> tuple[EdgeState, list[float]]:
    new, fires = step(state, ">", 26.0, 5, points)
    return new, [(ts - T0_MS) / MIN for ts in fires]


def test_held_exactly_five_minutes_fires_at_five() -> None:
    assert run(series((0, 27), (1, 27), (2, 27), (3, 27), (4, 27), (5, 27)))[1] == [5]


def test_one_millisecond_short_of_five_minutes_does_not_fire() -> None:
    short = [*series((0, 27)), (T0_MS + 5 * MIN - 1, 27.0)]
    assert run(short)[1] == []


def test_a_false_reading_inside_the_window_restarts_it() -> None:
    assert run(series((0, 27), (2, 27), (3, 26), (4, 27), (8, 27), (9, 27)))[1] == [9]


def test_it_fires_once_while_true_and_again_after_false_then_true() -> None:
    twenty_minutes_above = series(*[(m, 27.5) for m in range(21)])
    state, fires = run(twenty_minutes_above)
    assert fires == [5]
    state, fires = run(series((21, 25), (22, 27), (26, 27), (27, 27)), state)
    assert fires == [27]


def test_equal_to_the_threshold_is_not_above_it() -> None:
    assert run(series((0, 26), (5, 26), (10, 26)))[1] == []


def test_out_of_order_readings_are_judged_in_time_order() -> None:
    assert run(series((5, 27), (0, 27), (3, 27)))[1] == [5]
    # A false reading in the middle of the batch, whatever the order it came in.
    assert run(series((5, 27), (2, 25), (0, 27)))[1] == []


def test_a_reading_older_than_the_newest_judged_is_skipped() -> None:
    state, _ = run(series((0, 27), (3, 27)))
    state, fires = run(series((1, 20), (5, 27)), state)  # the late 20 °C at minute 1 cannot undo minute 3
    assert fires == [5]


def test_the_same_batch_again_fires_nothing() -> None:
    batch = series((0, 27), (5, 27))
    state, fires = run(batch)
    assert fires == [5]
    assert run(batch, state) == (state, [])


def test_across_batches_the_hold_counts_by_the_readings_times() -> None:
    state, fires = run(series((0, 27), (2, 27)))
    assert (fires, state.since_ms) == ([], T0_MS)
    assert run(series((4, 27), (5, 27)), state)[1] == [5]


def test_a_silence_longer_than_fifteen_minutes_restarts_the_hold() -> None:
    assert run(series((0, 27), (16, 27), (20, 27)))[1] == []
    assert run(series((0, 27), (16, 27), (21, 27)))[1] == [21]
    assert run(series((0, 27), (15, 27)))[1] == [15]  # 15 minutes is no gap yet


def test_a_gap_after_firing_does_not_fire_again() -> None:
    state, fires = run(series((0, 27), (5, 27)))
    assert fires == [5]
    assert run(series((30, 27), (40, 27)), state)[1] == []


@pytest.mark.parametrize(
    ("op", "values", "fires"),
    [
        (">=", (26, 26), 1),
        ("<", (18, 18), 1),
        ("<=", (18.5, 18.5), 1),
        ("==", (21, 21), 1),
        ("==", (21, 21.1), 0),
    ],
)
def test_each_operator(op: str, values: tuple[float, float], fires: int) -> None:
    threshold = {">=": 26.0, "<": 18.5, "<=": 18.5, "==": 21.0}[op]
    _, fired = step(EdgeState(), op, threshold, 5, series((0, values[0]), (5, values[1])))
    assert len(fired) == fires


# ---------------------------------------------------------------- evaluate_rules on fakes


@pytest.fixture
def s() -> devices.Stores:
    stores = memory_stores()
    devices.register(SITE, DeviceIn(device_id="DEVICE_001", name="HVAC", device_type="hvac"), stores)
    return stores


def office_rule(s: devices.Stores) -> str:
    rule = RuleIn.model_validate({
        "name": "Office too warm", "enabled": True,
        "condition": {"sensor_id": "TEMP_OFFICE", "metric": "temperature_c", "op": ">", "threshold": 26, "for_minutes": 5},
        "action": {"device_id": "DEVICE_001", "command": "set_mode", "params": {"mode": "cool"}},
    })  # fmt: skip
    return devices.create_rule(SITE, rule, s).rule_id


def batch(*points: tuple[float, float], sensor: str = "TEMP_OFFICE") -> TelemetryReceived:
    return TelemetryReceived(
        site=SITE,
        readings=[
            ReceivedReading(sensor_id=sensor, ts=ts, metrics={"temperature_c": v})
            for ts, v in series(*points)
        ],
    )


def commands(s: devices.Stores) -> list[Any]:
    return devices.list_commands(SITE, "DEVICE_001", ListQuery(), s).items


def test_a_rule_sends_its_action_once_per_rising_edge(s: devices.Stores) -> None:
    rule_id = office_rule(s)
    now = lambda: datetime(2030, 3, 17, 12, tzinfo=UTC)  # noqa: E731
    for minute in range(0, 21, 2):  # twenty minutes above 26, every two minutes
        devices.evaluate_rules(batch((minute, 27.0)), s, now)
    sent = commands(s)
    assert [(c.command, c.params, c.source, c.sent_by) for c in sent] == [
        ("set_mode", {"mode": "cool"}, "rule", f"rule:{rule_id}")
    ]
    assert sent[0].command_id == f"{rule_id}-{T0_MS + 6 * MIN}"  # the first reading 5 min into the run
    devices.evaluate_rules(batch((22, 25.0), (24, 27.0), (30, 27.5)), s, now)
    assert len(commands(s)) == 2
    view = devices.get_rule(SITE, rule_id, s)
    assert [(f.value, f.outcome) for f in view.last_firings] == [(27.5, "sent"), (27.0, "sent")]


def test_a_redelivered_batch_fires_nothing_more(s: devices.Stores) -> None:
    office_rule(s)
    once = batch((0, 27.0), (5, 27.0))
    assert devices.evaluate_rules(once, s)["fired"] == 1
    assert devices.evaluate_rules(once, s)["fired"] == 0
    assert len(commands(s)) == 1


def test_a_concurrent_evaluation_that_wrote_first_is_judged_again(s: devices.Stores) -> None:
    rule_id = office_rule(s)
    rules = s.rules
    assert isinstance(rules, MemoryRules)
    # Another invocation judged minutes 0..5 and fired while this one judged the same batch.
    rules.lose_next_writes.append(EdgeState(since_ms=T0_MS, fired=True, last_ms=T0_MS + 5 * MIN))
    assert devices.evaluate_rules(batch((0, 27.0), (5, 27.0)), s)["fired"] == 0
    assert rules.get(SITE, rule_id).last_ms == T0_MS + 5 * MIN


def test_a_rule_cannot_undo_a_dr_shed_its_firing_is_skipped_and_visible(s: devices.Stores) -> None:
    rule_id = office_rule(s)
    devices.send(SITE, "DEVICE_001", CommandRequest(command="off"), "dr", s, "dr")
    report = devices.evaluate_rules(batch((0, 27.0), (5, 27.0)), s)
    assert (report["fired"], report["skipped"]) == (0, 1)
    assert [c.command for c in commands(s)] == ["off"]
    (firing,) = devices.get_rule(SITE, rule_id, s).last_firings
    assert firing.outcome.startswith("skipped: device 'DEVICE_001' is controlled by dr")


def test_a_disabled_rule_and_other_sensors_do_nothing(s: devices.Stores) -> None:
    rule_id = office_rule(s)
    assert devices.evaluate_rules(batch((0, 30.0), (9, 30.0), sensor="TEMP_LAB"), s)["rules"] == 0
    devices.update_rule(SITE, rule_id, RuleUpdate(enabled=False), s)
    assert devices.evaluate_rules(batch((0, 30.0), (9, 30.0)), s)["rules"] == 0
    assert commands(s) == []


def test_a_new_condition_starts_unarmed(s: devices.Stores) -> None:
    rule_id = office_rule(s)
    devices.evaluate_rules(batch((0, 27.0), (5, 27.0)), s)
    changed = RuleUpdate.model_validate({"condition": {"sensor_id": "TEMP_OFFICE", "metric": "temperature_c",
                                                       "op": ">", "threshold": 25, "for_minutes": 5}})  # fmt: skip
    rule = devices.update_rule(SITE, rule_id, changed, s)
    assert (rule.since_ms, rule.fired, rule.last_ms) == (None, False, None)


def test_a_rule_whose_action_the_device_cannot_take_is_422(s: devices.Stores) -> None:
    bad = {"name": "x", "condition": {"sensor_id": "T", "metric": "temperature_c", "op": ">", "threshold": 1},
           "action": {"device_id": "DEVICE_001", "command": "set_setpoint", "params": {"celsius": 40}}}  # fmt: skip
    with pytest.raises(Invalid) as refused:
        devices.create_rule(SITE, RuleIn.model_validate(bad), s)
    assert (refused.value.field, "16 to 30" in refused.value.message) == ("action.params.celsius", True)
    bad["action"] = {"device_id": "NOPE", "command": "on"}
    with pytest.raises(Invalid) as refused:
        devices.create_rule(SITE, RuleIn.model_validate(bad), s)
    assert refused.value.field == "action.device_id"


# ---------------------------------------------------------------- invariants (hypothesis)

EDGES = settings(max_examples=200, deadline=None)
# A series of (minutes after T0, above 26 or not): increasing times, steps of 1 to 20 minutes.
steps = st.lists(st.tuples(st.integers(1, 20), st.booleans()), min_size=1, max_size=40)


def as_series(raw: list[tuple[int, bool]]) -> list[tuple[int, float]]:
    minute, out = 0, []
    for gap, hot in raw:
        minute += gap
        out.append((T0_MS + minute * MIN, 27.0 if hot else 25.0))
    return out


@EDGES
@given(steps, st.lists(st.integers(1, 40), max_size=5))
def test_cutting_a_series_into_batches_fires_the_same(raw: list[tuple[int, bool]], cuts: list[int]) -> None:
    points = as_series(raw)
    whole = run(points)[1]
    state, fired, start = EdgeState(), [], 0
    for cut in sorted({min(c, len(points)) for c in cuts} | {len(points)}):
        state, fires = run(points[start:cut], state)
        fired += fires
        start = cut
    assert fired == whole


@EDGES
@given(steps)
def test_each_firing_ends_a_true_run_of_five_minutes_and_runs_fire_at_most_once(
    raw: list[tuple[int, bool]],
) -> None:
    points = as_series(raw)
    fires = run(points)[1]
    hot_runs = 0
    previous_hot = False
    for _, value in points:
        hot = value > 26
        hot_runs += hot and not previous_hot
        previous_hot = hot
    assert len(fires) <= hot_runs
    for minute in fires:
        at = T0_MS + int(minute * MIN)
        before = [(ts, v) for ts, v in points if ts <= at]
        assert before[-1][1] > 26
        # Back from the firing: every reading true, no silence over 15 minutes, over at least 5 minutes.
        i = len(before) - 1
        while i > 0 and before[i - 1][1] > 26 and before[i][0] - before[i - 1][0] <= 15 * MIN:
            i -= 1
        assert at - before[i][0] >= 5 * MIN
    # Delivered again, it fires nothing.
    state = run(points)[0]
    assert run(points, state)[1] == []
