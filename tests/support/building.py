"""The hand-made building of the overview, rooms, analytics and export tests, put in through the HTTP
API: a main meter, a PV inverter and a battery inverter; an office with a temperature, a humidity
(silent), a CO2 and an occupancy sensor, and a water heater whose own temperature_c must not become
the office's. Two quarter hours of readings, starting at T0:

    quarter hour   meter      pv      battery            consumption = meter + pv - battery
    [T0, +15m)     +5 kW      2 kW    -1 kW (discharge)  8 kW   -> 2.0 kWh
    [+15m, +30m)   -1.5 kW    4 kW    +0.5 kW (charge)   2 kW   -> 0.5 kWh

Energy: import 5 x 0.25 = 1.25 kWh, export 1.5 x 0.25 = 0.375, generation (2 + 4) x 0.25 = 1.5,
discharge 0.25, charge 0.125, consumption 2.5 (= 1.25 - 0.375 + 1.5 + 0.25 - 0.125).
Power now is the second quarter hour's: grid -1.5 (export 1.5), pv 4, battery +0.5, consumption 2.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from tests.support.inprocess import InProcessApi, load_function

SITE = "hq"
ROOM = "Office"
QUARTER_MS = 15 * 60_000


def first_quarter_ms() -> int:
    """T0: a quarter hour about an hour ago whose half hour lies within one UTC day."""
    t0 = int(time.time() * 1000) - 3_600_000
    t0 -= t0 % QUARTER_MS
    while (t0 + 2 * QUARTER_MS - 1) // 86_400_000 != t0 // 86_400_000:
        t0 -= 3_600_000
    return t0


SENSORS: list[dict[str, Any]] = [
    {"sensor_id": "main-meter", "name": "Main meter", "sensor_type": "meter"},
    {"sensor_id": "pv", "name": "PV", "sensor_type": "pv_inverter"},
    {"sensor_id": "battery", "name": "Battery", "sensor_type": "battery_inverter"},
    {"sensor_id": "office-temperature", "name": "T", "sensor_type": "temperature", "room": ROOM},
    {"sensor_id": "office-humidity", "name": "H", "sensor_type": "humidity", "room": ROOM},
    {"sensor_id": "office-co2", "name": "CO2", "sensor_type": "co2", "room": ROOM},
    {"sensor_id": "office-occupancy", "name": "People", "sensor_type": "occupancy", "room": ROOM},
    {"sensor_id": "water-heater", "name": "Water heater", "sensor_type": "water_heater", "room": ROOM},
]


def readings(t0: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for offset_min, meter, pv, battery, soc in ((0, 5000, 2000, -1000, 61), (5, 5000, 2000, -1000, 60),
                                                (20, -1500, 4000, 500, 62)):  # fmt: skip
        ts = t0 + offset_min * 60_000
        out += [
            {"sensor_id": "main-meter", "ts": ts / 1000, "metrics": {"power_w": meter}},
            {"sensor_id": "pv", "ts": ts / 1000, "metrics": {"power_w": pv}},
            {"sensor_id": "battery", "ts": ts / 1000, "metrics": {"power_w": battery, "soc_pct": soc}},
        ]
    ts = (t0 + 20 * 60_000) / 1000
    out += [
        {"sensor_id": "office-temperature", "ts": ts, "metrics": {"temperature_c": 21.5}},
        {"sensor_id": "office-co2", "ts": ts, "value": 650},  # a single-value sensor counts too
        {"sensor_id": "office-occupancy", "ts": ts, "metrics": {"occupancy": 3}},
        {"sensor_id": "water-heater", "ts": ts, "metrics": {"power_w": 3000, "temperature_c": 55}},
    ]
    return out


def make_building(api: InProcessApi, admin_token: str) -> int:
    """The site, its sensors and readings, all through the HTTP API; returns T0."""
    site = {"site_id": SITE, "name": "HQ", "timezone": "UTC"}
    assert api.request("POST", "/api/v1/sites", token=admin_token, body=site).status == 201
    headers = {"x-site": SITE}
    assert api.request("POST", "/api/v1/rooms", token=admin_token, body={"name": ROOM}, headers=headers).status == 201  # fmt: skip
    assert api.request("POST", "/api/v1/rooms", token=admin_token, body={"name": "Store"}, headers=headers).status == 201  # fmt: skip
    for body in SENSORS:  # reporting every hour: the test's readings, up to 2 h old, are online
        created = api.request(
            "POST", "/api/v1/sensors", token=admin_token, headers=headers,
            body={**body, "expected_interval_seconds": 3600},
        )  # fmt: skip
        assert created.status == 201, created.json
    t0 = first_quarter_ms()
    load_function("functions/telemetry/").stores.cache_clear()
    ingested = api.request(
        "POST", "/api/v1/data/ingest", token=admin_token, headers=headers, body={"readings": readings(t0)}
    )
    assert ingested.status == 200, ingested.json
    assert (ingested.json["accepted"], ingested.json["rejected"]) == (13, [])
    return t0


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
