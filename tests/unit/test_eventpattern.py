"""EventBridge event patterns, one rule at a time, with the corner cases the user guide spells out."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ems_local.eventpattern import matches, validate

EVENT: dict[str, Any] = {
    "version": "0",
    "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
    "detail-type": "Battery SoC Changed",
    "source": "ems.batteries",
    "account": "123456789012",
    "time": "2024-03-31T01:30:00Z",
    "region": "eu-central-1",
    "resources": [
        "arn:aws:iot:eu-central-1:123456789012:thing/bat-1",
        "arn:aws:iot:eu-central-1:123456789012:thing/pv-1",
    ],
    "detail": {
        "site": "hq",
        "device_id": "bat-1",
        "soc_pct": 42.5,
        "power_kw": -3,
        "online": True,
        "firmware": "",
        "fault": None,
        "source_ip": "10.0.0.17",
        "tags": ["critical", "north"],
        "file": "/var/lib/ems/report.PNG",
        "limits": {"max_kw": 5, "min_kw": -5},
        "cells": [{"id": "c1", "temp_c": 30}, {"id": "c2", "temp_c": 48}],
    },
}


def detail(pattern: dict[str, Any]) -> bool:
    return matches({"detail": pattern}, EVENT)


# --- exact values -----------------------------------------------------------------------------


def test_exact_string_matches_only_the_same_characters() -> None:
    assert matches({"source": ["ems.batteries"]}, EVENT)
    assert not matches({"source": ["EMS.batteries"]}, EVENT)
    assert not matches({"source": ["ems.battery"]}, EVENT)


def test_array_of_values_is_an_or() -> None:
    assert matches({"source": ["ems.meters", "ems.batteries"]}, EVENT)
    assert not matches({"source": ["ems.meters", "ems.hvac"]}, EVENT)


def test_fields_are_anded() -> None:
    assert matches({"source": ["ems.batteries"], "detail-type": ["Battery SoC Changed"]}, EVENT)
    assert not matches({"source": ["ems.batteries"], "detail-type": ["Meter Reading"]}, EVENT)


def test_nested_objects_follow_the_event_structure() -> None:
    assert detail({"limits": {"max_kw": [5]}})
    assert not detail({"limits": {"max_kw": [6]}})
    assert not matches({"site": ["hq"]}, EVENT)  # only detail.site exists, not a top-level site


def test_field_absent_from_the_event_does_not_match() -> None:
    assert not detail({"operator": ["ann"]})
    assert not detail({"limits": {"ramp_kw": [1]}})
    assert not matches({"nothere": {"deeper": ["x"]}}, EVENT)


def test_array_in_the_event_matches_if_any_element_matches() -> None:
    assert matches({"resources": ["arn:aws:iot:eu-central-1:123456789012:thing/pv-1"]}, EVENT)
    assert detail({"tags": ["north", "south"]})
    assert not detail({"tags": ["south"]})


def test_array_of_objects_matches_when_one_element_matches_the_whole_sub_pattern() -> None:
    assert detail({"cells": {"id": ["c2"], "temp_c": [48]}})
    assert not detail({"cells": {"id": ["c1"], "temp_c": [48]}})  # c1 is 30, c2 is 48: no single cell


def test_numbers_compare_numerically_and_never_equal_strings() -> None:
    assert detail({"soc_pct": [42.5]})
    assert detail({"limits": {"max_kw": [5.0]}})
    assert not detail({"limits": {"max_kw": ["5"]}})
    assert not matches({"version": [0]}, EVENT)  # "0" is a string in the event


def test_booleans_match_only_booleans() -> None:
    assert detail({"online": [True]})
    assert not detail({"online": [False]})
    assert not detail({"online": ["true"]})
    assert not detail({"online": [1]})


def test_null_matches_an_explicit_null_only() -> None:
    assert detail({"fault": [None]})
    assert not detail({"firmware": [None]})  # "" is not null
    assert not detail({"operator": [None]})  # absent is not null


def test_empty_string_matches_an_empty_string_only() -> None:
    assert detail({"firmware": [""]})
    assert not detail({"fault": [""]})  # null is not ""


# --- string operators -------------------------------------------------------------------------


def test_prefix() -> None:
    assert matches({"time": [{"prefix": "2024-03-31"}]}, EVENT)
    assert not matches({"time": [{"prefix": "2024-04"}]}, EVENT)
    assert not detail({"soc_pct": [{"prefix": "42"}]})  # prefix applies to strings only


def test_prefix_equals_ignore_case() -> None:
    assert matches({"source": [{"prefix": {"equals-ignore-case": "EMS."}}]}, EVENT)
    assert not matches({"source": [{"prefix": "EMS."}]}, EVENT)


def test_suffix() -> None:
    assert detail({"file": [{"suffix": ".PNG"}]})
    assert not detail({"file": [{"suffix": ".png"}]})


def test_suffix_equals_ignore_case() -> None:
    assert detail({"file": [{"suffix": {"equals-ignore-case": ".png"}}]})
    assert not detail({"file": [{"suffix": {"equals-ignore-case": ".jpg"}}]})


def test_equals_ignore_case() -> None:
    assert detail({"device_id": [{"equals-ignore-case": "BAT-1"}]})
    assert not detail({"device_id": [{"equals-ignore-case": "BAT-2"}]})


def test_wildcard() -> None:
    assert detail({"file": [{"wildcard": "/var/*/ems/*.PNG"}]})
    assert detail({"file": [{"wildcard": "*"}]})
    assert not detail({"file": [{"wildcard": "*.png"}]})  # case-sensitive
    assert not detail({"file": [{"wildcard": "/var/*/ems"}]})  # the whole value must match


def test_wildcard_escapes_a_literal_star() -> None:
    event = {"detail": {"expr": "a*b"}}
    assert matches({"detail": {"expr": [{"wildcard": "a\\*b"}]}}, event)
    assert not matches({"detail": {"expr": [{"wildcard": "a\\*b"}]}}, {"detail": {"expr": "axb"}})


# --- anything-but -----------------------------------------------------------------------------


def test_anything_but_a_value() -> None:
    assert detail({"site": [{"anything-but": "lab"}]})
    assert not detail({"site": [{"anything-but": "hq"}]})
    assert detail({"power_kw": [{"anything-but": 0}]})
    assert not detail({"power_kw": [{"anything-but": -3.0}]})


def test_anything_but_a_list() -> None:
    assert detail({"site": [{"anything-but": ["lab", "depot"]}]})
    assert not detail({"site": [{"anything-but": ["lab", "hq"]}]})
    assert not detail({"power_kw": [{"anything-but": [-3, 0]}]})


def test_anything_but_needs_the_field() -> None:
    assert not detail({"operator": [{"anything-but": "ann"}]})


def test_anything_but_on_an_event_array_matches_if_any_element_is_not_listed() -> None:
    assert detail({"tags": [{"anything-but": "critical"}]})  # "north" is not "critical"
    assert not detail({"tags": [{"anything-but": ["critical", "north"]}]})


def test_anything_but_prefix() -> None:
    assert detail({"device_id": [{"anything-but": {"prefix": "pv-"}}]})
    assert not detail({"device_id": [{"anything-but": {"prefix": "bat-"}}]})
    assert not detail({"device_id": [{"anything-but": {"prefix": ["pv-", "bat-"]}}]})


def test_anything_but_suffix() -> None:
    assert detail({"file": [{"anything-but": {"suffix": ".txt"}}]})
    assert not detail({"file": [{"anything-but": {"suffix": ".PNG"}}]})


def test_anything_but_equals_ignore_case() -> None:
    assert detail({"site": [{"anything-but": {"equals-ignore-case": ["LAB", "DEPOT"]}}]})
    assert not detail({"site": [{"anything-but": {"equals-ignore-case": "HQ"}}]})


def test_anything_but_wildcard() -> None:
    assert detail({"file": [{"anything-but": {"wildcard": "*/tmp/*"}}]})
    assert not detail({"file": [{"anything-but": {"wildcard": "*/lib/*"}}]})


# --- numeric ----------------------------------------------------------------------------------


def test_numeric_range() -> None:
    assert detail({"soc_pct": [{"numeric": [">", 0, "<=", 42.5]}]})
    assert not detail({"soc_pct": [{"numeric": [">", 0, "<", 42.5]}]})
    assert detail({"soc_pct": [{"numeric": [">=", 42.5, "<", 50]}]})
    assert not detail({"soc_pct": [{"numeric": [">", 42.5]}]})


def test_numeric_single_bounds_and_equals() -> None:
    assert detail({"power_kw": [{"numeric": ["<", 0]}]})
    assert detail({"power_kw": [{"numeric": ["<=", -3]}]})
    assert detail({"power_kw": [{"numeric": ["=", -3.0]}]})
    assert not detail({"power_kw": [{"numeric": ["=", 3]}]})
    assert detail({"power_kw": [{"numeric": [">=", -3]}]})


def test_numeric_only_matches_numbers() -> None:
    event = {"detail": {"a": "5", "b": True, "c": None}}
    for field in "abc":
        assert not matches({"detail": {field: [{"numeric": [">", 0]}]}}, event)
    assert not detail({"operator": [{"numeric": [">", 0]}]})


def test_numeric_on_an_event_array() -> None:
    event = {"detail": {"readings_kw": [1, 7, 3]}}
    assert matches({"detail": {"readings_kw": [{"numeric": [">", 5]}]}}, event)
    assert not matches({"detail": {"readings_kw": [{"numeric": [">", 7]}]}}, event)


# --- exists -----------------------------------------------------------------------------------


def test_exists_true() -> None:
    assert detail({"site": [{"exists": True}]})
    assert detail({"fault": [{"exists": True}]})  # null is a value
    assert detail({"firmware": [{"exists": True}]})
    assert not detail({"operator": [{"exists": True}]})


def test_exists_false() -> None:
    assert detail({"operator": [{"exists": False}]})
    assert not detail({"site": [{"exists": False}]})
    assert matches({"nothere": {"deeper": [{"exists": False}]}}, EVENT)


def test_exists_looks_at_leaves_only() -> None:
    assert not detail({"limits": [{"exists": True}]})  # an object is not a leaf
    assert detail({"limits": [{"exists": False}]})
    assert not matches({"detail": {"tags": [{"exists": True}]}}, {"detail": {"tags": []}})
    assert matches({"detail": {"tags": [{"exists": False}]}}, {"detail": {"tags": []}})


def test_exists_combined_with_other_alternatives() -> None:
    pattern = {"detail": {"mode": [{"exists": False}, "auto"]}}
    assert matches(pattern, {"detail": {}})
    assert matches(pattern, {"detail": {"mode": "auto"}})
    assert not matches(pattern, {"detail": {"mode": "manual"}})


# --- cidr -------------------------------------------------------------------------------------


def test_cidr_ipv4() -> None:
    assert detail({"source_ip": [{"cidr": "10.0.0.0/24"}]})
    assert not detail({"source_ip": [{"cidr": "10.0.1.0/24"}]})
    assert not matches({"detail": {"ip": [{"cidr": "10.0.0.0/8"}]}}, {"detail": {"ip": "not-an-ip"}})


def test_cidr_ipv6() -> None:
    event = {"detail": {"ip": "2001:db8::17"}}
    assert matches({"detail": {"ip": [{"cidr": "2001:db8::/32"}]}}, event)
    assert not matches({"detail": {"ip": [{"cidr": "2001:db9::/32"}]}}, event)


# --- $or --------------------------------------------------------------------------------------


def test_or_across_fields() -> None:
    pattern = {"detail": {"$or": [{"soc_pct": [{"numeric": ["<", 10]}]}, {"online": [True]}]}}
    assert matches(pattern, EVENT)
    pattern = {"detail": {"$or": [{"soc_pct": [{"numeric": ["<", 10]}]}, {"online": [False]}]}}
    assert not matches(pattern, EVENT)


def test_or_at_top_level_with_other_fields() -> None:
    pattern = {
        "source": ["ems.batteries"],
        "$or": [{"detail-type": ["Meter Reading"]}, {"detail": {"site": ["hq"]}}],
    }
    assert matches(pattern, EVENT)
    assert not matches({**pattern, "source": ["ems.meters"]}, EVENT)


def test_nested_or() -> None:
    pattern = {
        "$or": [
            {"detail": {"site": ["lab"]}},
            {"$or": [{"detail": {"device_id": ["pv-1"]}}, {"detail": {"limits": {"max_kw": [5]}}}]},
        ]
    }
    assert matches(pattern, EVENT)


# --- invariants -------------------------------------------------------------------------------

WORDS = st.sampled_from(["hq", "lab", "HQ", "", "depot", "hq "])


@given(value=WORDS, listed=st.lists(WORDS, min_size=1, max_size=4))
def test_exact_and_anything_but_split_every_present_value(value: str, listed: list[str]) -> None:
    event = {"detail": {"site": value}}
    exact = matches({"detail": {"site": listed}}, event)
    anything_but = matches({"detail": {"site": [{"anything-but": listed}]}}, event)
    assert exact == (value in listed)
    assert anything_but != exact


@given(value=st.one_of(st.integers(-1000, 1000), st.floats(-1000, 1000)), bound=st.integers(-1000, 1000))
def test_numeric_bounds_partition_the_numbers(value: float, bound: int) -> None:
    event = {"x": value}
    below = matches({"x": [{"numeric": ["<", bound]}]}, event)
    at_or_above = matches({"x": [{"numeric": [">=", bound]}]}, event)
    assert below != at_or_above


# --- validation -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        ([], "must be a JSON object"),
        ({}, "empty objects"),
        ({"source": "ems.batteries"}, "must be an object or an array"),
        ({"source": []}, "empty arrays"),
        ({"detail": {}}, "empty objects"),
        ({"source": [["nested"]]}, "not an array"),
        ({"source": [{"prefix": "a", "suffix": "b"}]}, "exactly one key"),
        ({"source": [{"contains": "a"}]}, "unrecognized match type 'contains'"),
        ({"source": [{"prefix": 5}]}, "prefix match pattern must be a string"),
        ({"source": [{"prefix": {"wildcard": "a*"}}]}, "equals-ignore-case"),
        ({"source": [{"equals-ignore-case": ["a"]}]}, "must be a string"),
        ({"source": [{"exists": "yes"}]}, "exists must be true or false"),
        ({"source": [{"cidr": "10.0.0.0/33"}]}, "not an IP address range"),
        ({"source": [{"wildcard": "a**b"}]}, "consecutive"),
        ({"source": [{"wildcard": "a\\b"}]}, "escaped"),
        ({"x": [{"numeric": [">", "0"]}]}, "must be a number"),
        ({"x": [{"numeric": ["!=", 0]}]}, "unrecognized numeric operator"),
        ({"x": [{"numeric": ["<", 10, ">", 0]}]}, "lower bound"),
        ({"x": [{"numeric": [">", 10, "<", 5]}]}, "range is empty"),
        ({"x": [{"numeric": [">", 1, ">", 2]}]}, "must be < or <="),
        ({"x": [{"numeric": ["=", 1, "<", 2]}]}, "cannot be combined"),
        ({"x": [{"numeric": [">", 1, "<"]}]}, "one or two"),
        ({"x": [{"anything-but": ["a", 1]}]}, "mixed"),
        ({"x": [{"anything-but": [None]}]}, "strings or numbers"),
        ({"x": [{"anything-but": []}]}, "list is empty"),
        ({"x": [{"anything-but": {"exists": True}}]}, "anything-but takes one of"),
        ({"x": [{"anything-but": {"prefix": ""}}]}, "must not be empty"),
        ({"$or": [{"a": ["b"]}]}, "at least 2"),
        ({"$or": {"a": ["b"]}}, "array of objects"),
        ({"$or": [{"a": ["b"]}, "c"]}, "only hold objects"),
    ],
)
def test_validate_refuses_malformed_patterns(pattern: Any, reason: str) -> None:
    with pytest.raises(ValueError, match=reason.replace("*", r"\*")):
        validate(pattern)


def test_validate_names_the_path() -> None:
    with pytest.raises(ValueError, match=re.escape("at 'detail.limits.max_kw'")):
        validate({"detail": {"limits": {"max_kw": [{"numeric": [">", "5"]}]}}})


def test_matches_refuses_a_malformed_pattern() -> None:
    with pytest.raises(ValueError):
        matches({"source": "ems.batteries"}, EVENT)


def test_validate_accepts_every_documented_form() -> None:
    validate(
        {
            "source": ["ems.batteries", 3, True, None, ""],
            "detail": {
                "a": [{"prefix": "x"}, {"prefix": {"equals-ignore-case": "x"}}, {"suffix": "y"}],
                "b": [{"suffix": {"equals-ignore-case": "y"}}, {"equals-ignore-case": "z"}],
                "c": [{"anything-but": "x"}, {"anything-but": 1}, {"anything-but": ["x", "y"]}],
                "d": [{"anything-but": {"prefix": "x"}}, {"anything-but": {"suffix": ["y", "z"]}}],
                "e": [{"anything-but": {"equals-ignore-case": ["x"]}}, {"anything-but": {"wildcard": "*x*"}}],
                "f": [{"numeric": [">", 0, "<=", 5]}, {"numeric": ["=", 3.5]}, {"numeric": ["<", 0]}],
                "g": [{"exists": True}, {"cidr": "10.0.0.0/24"}, {"wildcard": "a*b\\*c"}],
                "$or": [{"h": ["1"]}, {"i": ["2"]}],
            },
        }
    )
