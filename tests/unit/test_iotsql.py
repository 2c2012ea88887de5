"""AWS IoT rules SQL on single MQTT messages: what fires, what the action receives, what is refused."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ems_local.iotsql import PayloadNotJson, parse, topic_matches

NOW_MS = 1_711_846_800_000  # 2024-03-31T01:00:00Z
TELEMETRY = "SELECT *, topic(2) AS site, topic(4) AS device_id, timestamp() AS received_ms FROM 'ems/+/devices/+/telemetry'"


def run(sql: str, payload: Any, topic: str = "ems/hq/devices/m1/telemetry", client_id: str = "m1") -> Any:
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return parse(sql).apply(topic, raw, client_id, NOW_MS)


# --- topic filters ----------------------------------------------------------------------------


def test_topic_filter_literal_levels() -> None:
    assert topic_matches("ems/hq/telemetry", "ems/hq/telemetry")
    assert not topic_matches("ems/hq/telemetry", "ems/lab/telemetry")
    assert not topic_matches("ems/hq", "ems/hq/telemetry")
    assert not topic_matches("ems/hq/telemetry", "ems/hq")


def test_topic_filter_plus_is_exactly_one_level() -> None:
    assert topic_matches("ems/+/telemetry", "ems/hq/telemetry")
    assert topic_matches("ems/+/telemetry", "ems//telemetry")  # an empty level is a level
    assert not topic_matches("ems/+/telemetry", "ems/hq/m1/telemetry")
    assert not topic_matches("ems/+", "ems")


def test_topic_filter_hash_is_the_rest_including_the_parent() -> None:
    assert topic_matches("ems/#", "ems/hq/devices/m1/telemetry")
    assert topic_matches("ems/#", "ems")
    assert topic_matches("#", "anything/at/all")
    assert not topic_matches("ems/#", "other/hq")


def test_topic_filter_wildcards_do_not_match_dollar_topics() -> None:
    assert not topic_matches("#", "$aws/things/m1/shadow/update")
    assert not topic_matches("+/things/m1/shadow/update", "$aws/things/m1/shadow/update")
    assert topic_matches("$aws/things/+/shadow/update", "$aws/things/m1/shadow/update")


# MQTT topics have at least one character; levels after the first may be empty
LEVELS = st.lists(st.sampled_from(["ems", "hq", "devices", "m1", "telemetry", ""]), max_size=5).map(
    lambda rest: ["ems", *rest]
)


@given(levels=LEVELS, wild=st.lists(st.booleans(), min_size=6, max_size=6), cut=st.integers(0, 6))
def test_topic_filter_built_from_a_topic_matches_it(levels: list[str], wild: list[bool], cut: int) -> None:
    topic = "/".join(levels)
    parts = ["+" if w else level for level, w in zip(levels, wild, strict=False)]
    assert topic_matches("/".join(parts), topic)
    if cut < len(parts):
        assert topic_matches("/".join([*parts[:cut], "#"]), topic)
    assert not topic_matches("/".join([*parts, "extra"]), topic)


@pytest.mark.parametrize("bad", ["", "ems/#/telemetry", "ems/te#", "ems/hq+/x"])
def test_topic_filter_invalid(bad: str) -> None:
    with pytest.raises(ValueError, match="topic filter"):
        topic_matches(bad, "ems/hq")


# --- SELECT -----------------------------------------------------------------------------------


def test_ems_telemetry_rule() -> None:
    out = run(TELEMETRY, {"power_kw": 3.2, "energy_kwh": 1200})
    assert out == {
        "power_kw": 3.2,
        "energy_kwh": 1200,
        "site": "hq",
        "device_id": "m1",
        "received_ms": NOW_MS,
    }


def test_rule_does_not_fire_on_another_topic() -> None:
    assert run(TELEMETRY, {"power_kw": 1}, topic="ems/hq/devices/m1/status") is None
    assert run(TELEMETRY, {"power_kw": 1}, topic="ems/hq/devices/telemetry") is None


def test_select_star_returns_the_payload() -> None:
    payload = {"color": "red", "temperature": 50, "nested": {"a": [1, 2]}}
    assert run("SELECT * FROM 'ems/#'", payload) == payload


def test_select_fields_and_aliases() -> None:
    payload = {"color": "red", "temperature": 50}
    assert run("SELECT color FROM 'ems/#'", payload) == {"color": "red"}
    sql = "SELECT color AS my_color, temperature as fahrenheit FROM 'ems/#'"
    assert run(sql, payload) == {"my_color": "red", "fahrenheit": 50}


def test_select_nested_field_is_named_by_its_last_segment() -> None:
    payload = {"state": {"reported": {"soc_pct": 81}}}
    assert run("SELECT state.reported.soc_pct FROM 'ems/#'", payload) == {"soc_pct": 81}
    assert run("SELECT state.reported AS r FROM 'ems/#'", payload) == {"r": {"soc_pct": 81}}


def test_missing_fields_are_left_out() -> None:
    assert run("SELECT color, a.b.c AS deep FROM 'ems/#'", {"a": {"b": 1}}) == {}


def test_topic_functions() -> None:
    sql = "SELECT topic() AS t, topic(1) AS first, topic(5) AS last, topic(6) AS beyond FROM 'ems/#'"
    assert run(sql, {}) == {"t": "ems/hq/devices/m1/telemetry", "first": "ems", "last": "telemetry"}


def test_clientid_and_timestamp() -> None:
    sql = "SELECT clientid() AS client, timestamp() AS ts FROM 'ems/#'"
    assert run(sql, {}, client_id="sim-7") == {"client": "sim-7", "ts": NOW_MS}


def test_literal_values() -> None:
    sql = "SELECT 'meter' AS kind, 2 AS version, 0.5 AS factor, true AS ok, false AS bad, -3 AS neg FROM 'ems/#'"
    assert run(sql, {}) == {"kind": "meter", "version": 2, "factor": 0.5, "ok": True, "bad": False, "neg": -3}


def test_string_literal_escapes() -> None:
    assert run(r"SELECT 'it\'s' AS s FROM 'ems/#'", {}) == {"s": "it's"}


def test_arithmetic() -> None:
    sql = "SELECT power_w / 1000 AS power_kw, (a + b) * 2 AS doubled, a % 2 AS odd, 7 / 7 AS one FROM 'ems/#'"
    assert run(sql, {"power_w": 2500, "a": 3, "b": 4}) == {"power_kw": 2.5, "doubled": 14, "odd": 1, "one": 1}
    assert run("SELECT x / 0 AS y FROM 'ems/#'", {"x": 1}) == {}


def test_explicit_items_override_star_keys() -> None:
    out = run("SELECT *, topic(2) AS site FROM 'ems/#'", {"site": "spoofed", "v": 1})
    assert out == {"site": "hq", "v": 1}


def test_keywords_are_case_insensitive() -> None:
    out = run("select Color as c from 'ems/#' where Temperature > 10", {"Color": "red", "Temperature": 50})
    assert out == {"c": "red"}


# --- WHERE ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("condition", "fires"),
    [
        ("temperature = 50", True),
        ("temperature = 50.0", True),
        ("temperature <> 50", False),
        ("temperature != 49", True),
        ("temperature < 51", True),
        ("temperature <= 50", True),
        ("temperature > 50", False),
        ("temperature >= 50", True),
        ("color = 'red'", True),
        ("color = 'RED'", False),
        ("color > 'blue'", True),
        ("online = true", True),
        ("online", True),
        ("NOT online", False),
        ("temperature > 10 AND color = 'red'", True),
        ("temperature > 90 AND color = 'red'", False),
        ("temperature > 90 OR color = 'red'", True),
        ("NOT (temperature > 90 OR color = 'blue')", True),
        ("temperature > 10 AND (color = 'blue' OR online = true)", True),
        ("NOT temperature > 10", False),
        ("state.reported.mode = 'auto'", True),
        ("topic(2) = 'hq'", True),
        ("topic(2) = 'lab'", False),
        ("clientid() = 'm1'", True),
        ("timestamp() % 1000 = 0", True),
        ("1 = 1", True),
    ],
)
def test_where(condition: str, fires: bool) -> None:
    payload = {"temperature": 50, "color": "red", "online": True, "state": {"reported": {"mode": "auto"}}}
    out = run(f"SELECT color FROM 'ems/#' WHERE {condition}", payload)
    assert (out is not None) is fires


def test_and_binds_tighter_than_or() -> None:
    # true OR (false AND false) is true; (true OR false) AND false would be false
    assert run("SELECT * FROM 'ems/#' WHERE a = 1 OR a = 2 AND b = 3", {"a": 1, "b": 0}) is not None


@pytest.mark.parametrize(
    "condition",
    [
        "missing = 1",
        "missing <> 1",  # Undefined is neither equal nor unequal
        "NOT missing",
        "missing > 0 OR temperature > 0",  # Undefined poisons OR, as in AWS
        "topic(9) = 'x'",
        "color > 5",  # ordering a string against a number is Undefined
        "temperature",  # a number is not a boolean
    ],
)
def test_undefined_never_fires(condition: str) -> None:
    assert run(f"SELECT * FROM 'ems/#' WHERE {condition}", {"temperature": 50, "color": "red"}) is None


def test_equality_across_types_is_false_not_undefined() -> None:
    assert run("SELECT * FROM 'ems/#' WHERE v = '5'", {"v": 5}) is None
    assert run("SELECT * FROM 'ems/#' WHERE v <> '5'", {"v": 5}) is not None
    # a numeric string is ordered as a number
    assert run("SELECT * FROM 'ems/#' WHERE v > '4'", {"v": 5}) is not None


# --- payloads that are not JSON objects --------------------------------------------------------


def test_empty_payload_merges_nothing() -> None:
    assert run("SELECT *, topic(2) AS site FROM 'ems/#'", b"") == {"site": "hq"}


def test_binary_payload_with_select_star_is_refused() -> None:
    with pytest.raises(PayloadNotJson, match="encode"):
        run("SELECT * FROM 'ems/#'", b"\x00\x01\xff")
    with pytest.raises(PayloadNotJson):
        run("SELECT * FROM 'ems/#'", b"[1, 2]")


def test_binary_payload_encoded_as_base64() -> None:
    raw = b"\x00\x01\xff"
    out = run("SELECT encode(*, 'base64') AS data, topic(4) AS device_id FROM 'ems/#'", raw)
    assert out == {"data": base64.b64encode(raw).decode(), "device_id": "m1"}


def test_binary_payload_fields_are_undefined() -> None:
    assert run("SELECT * FROM 'ems/#' WHERE device_type = 'meter'", b"not json") is None
    assert run("SELECT device_type, topic(2) AS site FROM 'ems/#'", b"not json") == {"site": "hq"}


# --- refused SQL ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "reason"),
    [
        ("", "empty"),
        ("SELECT * FROM", "quoted topic filter"),
        ("SELECT * FROM ems/+/telemetry", "quoted topic filter"),
        ("SELECT FROM 'a'", "expected a field"),
        ("SELECT * 'a'", "expected FROM"),
        ("SELECT * FROM 'a/#/b'", "'#' must be a whole level"),
        ("SELECT * FROM 'a' WHERE", "expected a field"),
        ("SELECT * FROM 'a' WHERE x = 1 extra", "unexpected text"),
        ("SELECT * FROM 'a' WHERE 1 < 2 < 3", "chained"),
        ("SELECT topic(2) FROM 'a'", "needs AS"),
        ("SELECT 5 FROM 'a'", "needs AS"),
        ("SELECT upper(x) AS y FROM 'a'", "upper\\(\\) is not supported"),
        ("SELECT topic(0) AS t FROM 'a'", "level number"),
        ("SELECT timestamp(1) AS t FROM 'a'", "no arguments"),
        ("SELECT encode(*, 'hex') AS t FROM 'a'", "base64"),
        ("SELECT CASE x WHEN 1 THEN 2 END AS y FROM 'a'", "CASE is not supported"),
        ("SET @a = 1 SELECT * FROM 'a'", "SET"),
        ("SELECT \"a-b\" AS c FROM 'a'", "quoted identifiers"),
        ("SELECT 'open FROM 'a'", "unterminated string"),
        ("SELECT a # b AS c FROM 'a'", "unexpected character '#'"),
        ("SELECT x AS FROM 'a'", "AS takes a name"),
        ("SELECT * FROM 'a' WHERE x IN (1, 2)", "IN is not supported"),
    ],
)
def test_unsupported_sql_is_refused(sql: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse(sql)


def test_parse_keeps_the_filter() -> None:
    rule = parse(TELEMETRY)
    assert rule.topic_filter == "ems/+/devices/+/telemetry"
    assert rule.selects_all
