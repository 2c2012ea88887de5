"""Alerts against moto: readings go in through POST /api/v1/data/ingest, the TelemetryReceived events
that ingest publishes go to AlertsFunction as EventBridge delivers them, and GET /api/v1/events
shows what was raised. The alerts function's own events (AlertRaised, AlertCleared,
SensorStatusChanged) are kept in a list instead of the bus.

Thresholds, by hand: TEMP max 30 (critical, at once); CO2 max 1000 for 10 minutes (warning).
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ems.alerts.models import SystemEvent
from ems.telemetry.models import TelemetryReceived
from tests.support.fakes import ListPublisher
from tests.support.inprocess import InProcessApi, load_function, ok, refused
from tests.support.tokens import issue

SITE = "hq"
HQ = {"x-site": SITE}
T0_S = int(time.time()) // 60 * 60 - 3600  # an hour ago, on a minute


@pytest.fixture
def published(
    monkeypatch: pytest.MonkeyPatch, api: InProcessApi, admin_token: str
) -> dict[str, ListPublisher]:
    """The site and its sensors; the telemetry and alerts functions' publishers replaced by lists."""
    ok(api.request("POST", "/api/v1/sites", token=admin_token, body={"site_id": SITE, "name": "HQ"}), 201)
    for body in (
        {"sensor_id": "TEMP", "name": "T", "sensor_type": "temperature",
         "thresholds": {"temperature_c": {"max": 30, "severity": "critical"}}},
        {"sensor_id": "CO2", "name": "C", "sensor_type": "co2", "thresholds": {"co2_ppm": {"max": 1000, "for_minutes": 10}}},
        {"sensor_id": "PLUG", "name": "P", "sensor_type": "plug", "expected_interval_seconds": 60},
    ):  # fmt: skip
        ok(api.request("POST", "/api/v1/sensors", token=admin_token, headers=HQ, body=body), 201)
    lists = {}
    for folder in ("functions/telemetry/", "functions/alerts/"):
        module = load_function(folder)
        module.stores.cache_clear()
        real, fake = module.stores(), ListPublisher()
        monkeypatch.setattr(module, "stores", lambda real=real, fake=fake: replace(real, events=fake))
        lists[folder.split("/")[1]] = fake
    return lists


def send(
    api: InProcessApi,
    admin_token: str,
    lists: dict[str, ListPublisher],
    *readings: tuple[str, int, str, float],
) -> None:
    """Ingest (sensor, seconds after T0, metric, value) readings, then hand the TelemetryReceived
    events that ingest published to AlertsFunction as the bus's rule would."""
    body = {"readings": [{"sensor_id": s, "ts": T0_S + dt, "metrics": {m: v}} for s, dt, m, v in readings]}
    assert (
        ok(api.request("POST", "/api/v1/data/ingest", token=admin_token, headers=HQ, body=body))["rejected"]
        == []
    )
    for event in lists["telemetry"].events:
        api.invoke("AlertsFunction", {"version": "0", "id": "e", "source": event.source,
                                      "detail-type": event.detail_type, "detail": event.detail})  # fmt: skip
    lists["telemetry"].events.clear()


def events(api: InProcessApi, token: str, **query: str) -> list[dict[str, Any]]:
    return ok(api.request("GET", "/api/v1/events", token=token, headers=HQ, query=query))["items"]  # type: ignore[no-any-return]


def test_a_breach_raises_one_alert_until_it_clears(
    api: InProcessApi, admin_token: str, published: Any
) -> None:
    send(api, admin_token, published, ("TEMP", 0, "temperature_c", 25.0), ("TEMP", 60, "temperature_c", 31.5))
    send(api, admin_token, published, ("TEMP", 120, "temperature_c", 33.0))  # still above: nothing new
    (alert,) = events(api, admin_token)
    assert (alert["rule"], alert["kind"], alert["severity"], alert["status"]) == (
        "threshold#TEMP#temperature_c", "threshold", "critical", "open",
    )  # fmt: skip
    assert (alert["sensor_id"], alert["metric"], alert["value"], alert["max"]) == (
        "TEMP",
        "temperature_c",
        31.5,
        30.0,
    )
    assert alert["message"] == "TEMP temperature_c 31.5 above its maximum 30"
    assert alert["raised_at"] == datetime.fromtimestamp(T0_S + 60, UTC).isoformat(
        timespec="milliseconds"
    ).replace("+00:00", "Z")

    send(api, admin_token, published, ("TEMP", 180, "temperature_c", 29.0))
    send(api, admin_token, published, ("TEMP", 240, "temperature_c", 35.0))  # a new breach, a new alert
    newest, first = events(api, admin_token)
    assert (first["alert_id"], first["status"]) == (alert["alert_id"], "cleared")
    assert (newest["status"], newest["value"]) == ("open", 35.0)
    assert published["alerts"].kinds() == ["AlertRaised", "AlertCleared", "AlertRaised"]
    summary = ok(api.request("GET", "/api/v1/analytics/summary", token=admin_token, headers=HQ))
    assert summary["open_alerts"] == 1  # the first cleared, the second open
    assert published["alerts"].events[0].detail["alert"]["alert_id"] == alert["alert_id"]


def test_a_breach_must_last_for_minutes_by_the_readings_times(
    api: InProcessApi, admin_token: str, published: Any
) -> None:
    send(api, admin_token, published, ("CO2", 0, "co2_ppm", 1200.0), ("CO2", 300, "co2_ppm", 1300.0))
    assert events(api, admin_token) == []  # 5 minutes of 10
    send(api, admin_token, published, ("CO2", 600, "co2_ppm", 1250.0))
    (alert,) = events(api, admin_token)
    assert (alert["value"], alert["severity"]) == (1250.0, "warning")
    assert alert["message"] == "CO2 co2_ppm 1250 above its maximum 1000 for 10 min"

    # A dip below the maximum ends the breach: the next one starts counting again.
    send(api, admin_token, published, ("CO2", 660, "co2_ppm", 900.0), ("CO2", 720, "co2_ppm", 1100.0))
    send(api, admin_token, published, ("CO2", 900, "co2_ppm", 1100.0))
    assert [a["status"] for a in events(api, admin_token)] == ["cleared"]


def test_concurrent_evaluations_open_one_alert(api: InProcessApi, admin_token: str, published: Any) -> None:
    from ems.alerts import service

    stores = load_function("functions/alerts/").stores()
    reading = {"sensor_id": "TEMP", "ts": (T0_S + 60) * 1000, "metrics": {"temperature_c": 40.0}}
    event = TelemetryReceived.model_validate({"site": SITE, "readings": [reading]})
    reports: list[Any] = []
    threads = [
        threading.Thread(target=lambda: reports.append(service.evaluate_readings(event, stores)))
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(r.raised for r in reports) == 1
    assert len(events(api, admin_token)) == 1 and published["alerts"].kinds() == ["AlertRaised"]


def test_acknowledge_is_idempotent_and_filters_see_it(
    api: InProcessApi, admin_token: str, published: Any
) -> None:
    send(api, admin_token, published, ("TEMP", 60, "temperature_c", 31.0))
    (alert,) = events(api, admin_token)
    path = f"/api/v1/events/{alert['alert_id']}/acknowledge"
    first = ok(api.request("POST", path, token=admin_token, headers=HQ))
    again = ok(api.request("POST", path, token=issue(["events"], sites=[SITE]), headers=HQ))
    assert first["acknowledged"] is again["acknowledged"] is True
    assert (again["acknowledged_at"], again["acknowledged_by"]) == (first["acknowledged_at"], "admin")

    assert events(api, admin_token, acknowledged="false") == []
    assert len(events(api, admin_token, acknowledged="true", severity="critical")) == 1
    assert events(api, admin_token, severity="info") == []
    assert events(api, admin_token, since=str(T0_S + 120)) == []  # raised at T0 + 60 s
    refused(
        api.request(
            "POST", "/api/v1/events/0000000000000-00000000/acknowledge", token=admin_token, headers=HQ
        ),
        404,
        "id",
    )
    refused(
        api.request("GET", "/api/v1/events", token=admin_token, headers=HQ, query={"severity": "loud"}),
        422,
        "severity",
    )
    assert (
        api.request("GET", "/api/v1/events", token=issue(["sensors"], sites=[SITE]), headers=HQ).status == 403
    )


def test_pages_of_events(api: InProcessApi, admin_token: str, published: Any) -> None:
    for n in range(5):  # five breaches, each cleared: five alerts
        send(api, admin_token, published, ("TEMP", 60 * (2 * n), "temperature_c", 31.0),
             ("TEMP", 60 * (2 * n + 1), "temperature_c", 20.0))  # fmt: skip
    seen, token = [], None
    while True:
        query = {"limit": "2", **({"next_token": token} if token else {})}
        page = ok(api.request("GET", "/api/v1/events", token=admin_token, headers=HQ, query=query))
        seen += [a["alert_id"] for a in page["items"]]
        token = page["next_token"]
        if not token:
            break
    assert len(seen) == 5 and seen == sorted(seen, reverse=True)  # newest first, each once


def test_a_silent_sensor_goes_offline_and_comes_back(
    api: InProcessApi, admin_token: str, published: Any
) -> None:
    from ems.alerts import service

    stores = load_function("functions/alerts/").stores()
    send(api, admin_token, published, ("PLUG", 0, "power_w", 100.0))  # an hour ago; it reports every minute
    assert service.check_offline(stores).raised == 1
    assert service.check_offline(stores).raised == 0  # still offline: the same alert
    (alert,) = events(api, admin_token)
    assert (alert["kind"], alert["sensor_id"], alert["rule"]) == ("sensor_offline", "PLUG", "offline#PLUG")

    now_s = int(time.time())
    body = {"readings": [{"sensor_id": "PLUG", "ts": now_s, "metrics": {"power_w": 120.0}}]}
    ok(api.request("POST", "/api/v1/data/ingest", token=admin_token, headers=HQ, body=body))
    later = datetime.now(UTC) + timedelta(seconds=1)
    assert service.check_offline(stores, now=lambda: later).cleared == 1
    assert [a["status"] for a in events(api, admin_token)] == ["cleared"]
    changes = [e.detail for e in published["alerts"].events if e.detail_type == "SensorStatusChanged"]
    assert [(c["sensor_id"], c["status"]) for c in changes] == [("PLUG", "offline"), ("PLUG", "online")]
    # The scheduled invocation reaches the same check.
    assert api.invoke("AlertsFunction", {"check": "offline"}) == {"raised": 0, "cleared": 0, "pending": 0}


def test_other_domains_raise_and_clear_their_own_alerts(
    api: InProcessApi, admin_token: str, published: Any
) -> None:
    fault = {"site": SITE, "severity": "critical", "kind": "battery_fault", "message": "inverter 3 tripped"}
    for _ in range(2):
        api.invoke("AlertsFunction", {"version": "0", "id": "e", "source": "ems.batteries",
                                      "detail-type": "SystemEvent", "detail": fault})  # fmt: skip
    (alert,) = events(api, admin_token)
    assert (alert["kind"], alert["source"], alert["message"], alert["rule"]) == (
        "system", "ems.batteries", "inverter 3 tripped", "system#ems.batteries#battery_fault",
    )  # fmt: skip
    api.invoke("AlertsFunction", {"version": "0", "id": "e", "source": "ems.batteries",
                                  "detail-type": "SystemEvent", "detail": {**fault, "clear": True}})  # fmt: skip
    assert [a["status"] for a in events(api, admin_token)] == ["cleared"]
    with pytest.raises(ValueError):
        SystemEvent.model_validate({"site": SITE, "kind": "Bad Kind", "message": "m"})
