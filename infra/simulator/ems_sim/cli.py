"""`ems simulate` (load: N devices at R readings/s) and the demo building the local cloud starts.

ems simulate --devices 200 --rate 200 --seconds 60     against the running local cloud (.local/stack.json)
ems simulate --building                                 the demo building alone, until Ctrl-C

Both read the local cloud's clock from its stack.json (`ems local up --clock START --speed N`).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ems.core import clock
from ems.core.clock import ScaledClock, utc_now
from ems_sim.building import Building, SensorSpec
from ems_sim.fleet import BuildingFleet, LoadFleet
from ems_sim.registration import DEVICES_PATH, register


class DemoBuilding:
    """The demo building as a service of the local cloud: registered through the API, then on MQTT.
    Registration runs in its own thread, so the stack is ready before the building is."""

    def __init__(
        self, http_url: str, mqtt_url: str, token: str, site: str, seed: int = 0, interval_s: float = 5.0,
        log: Any = print,
    ) -> None:  # fmt: skip
        self.http_url, self.token, self.log = http_url, token, log
        mqtt = urlsplit(mqtt_url)
        self.host, self.port = str(mqtt.hostname), int(mqtt.port or 1883)
        self.building = Building(site, utc_now(), seed=seed)
        self.interval_s = interval_s
        self.fleet: BuildingFleet | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._start, name="demo-building-start", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _start(self) -> None:
        sensors, devices = self.building.sensors(), self.building.registrations()
        try:
            site = self.building.site_id
            created = register(self.http_url, self.token, site, self.building.rooms, sensors, devices)
        except Exception as exc:  # the stack goes on without its demo building, saying why
            self.log(f"registering the demo building failed: {exc}")
            return
        with self._lock:
            if self._stopping.is_set():
                return
            self.fleet = BuildingFleet(self.building, self.host, self.port, self.interval_s, self.log)
            self.fleet.start()
        self.log(
            f"demo building on site {self.building.site_id}: {len(self.building.devices)} devices, "
            f"{len(sensors)} sensors ({created['sensors']} new), "
            + (
                f"its devices not registered (no {DEVICES_PATH} route: 404), "
                if created["devices_unrouted"]
                else f"{created['devices']} devices newly registered, "
            )
            + f"telemetry every {self.interval_s:g} s"
        )

    def stop(self) -> None:
        with self._lock:
            self._stopping.set()
            if self.fleet is not None:
                self.fleet.stop()
        self._thread.join(timeout=70)


def _stack(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise SystemExit(f"ems simulate: no {path}: start the local cloud first (`make dev`)")
    return dict(json.loads(path.read_text()))


def stack_clock(stack: dict[str, Any]) -> ScaledClock | None:
    """The local cloud's clock, as its stack.json describes it (EMS_CLOCK); None: the real clock."""
    env = (stack.get("clock") or {}).get("env")
    return ScaledClock.from_env(env) if env else None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ems simulate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--devices", type=int, default=50, help="simulated metering devices (load mode)")
    parser.add_argument("--rate", type=float, default=50.0, help="readings per second, all devices together")
    parser.add_argument("--seconds", type=float, default=60.0, help="how long to publish (load mode)")
    parser.add_argument("--site", help="the site (default: the local cloud's demo site)")
    parser.add_argument("--seed", type=int, default=0, help="makes a run repeat itself")
    parser.add_argument("--no-register", action="store_true", help="do not register the sensors first")
    parser.add_argument("--building", action="store_true", help="run the demo building instead, until Ctrl-C")
    parser.add_argument(
        "--stack", type=Path, default=Path(".local/stack.json"), help="the local cloud's stack.json"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    stack = _stack(args.stack)
    clock.run_on(stack_clock(stack))  # the timestamps the local cloud's functions expect
    site = args.site or stack.get("site")
    if not site:
        print("ems simulate: the local cloud has no demo site (--empty): pass --site", file=sys.stderr)
        return 2
    stopping = threading.Event()
    signal.signal(signal.SIGINT, lambda signum, frame: stopping.set())
    signal.signal(signal.SIGTERM, lambda signum, frame: stopping.set())
    if args.building:
        demo = DemoBuilding(stack["http"], stack["mqtt"], stack["admin_token"], site, seed=args.seed)
        demo.start()
        stopping.wait()
        demo.stop()
        return 0
    mqtt = urlsplit(stack["mqtt"])
    fleet = LoadFleet(
        site, args.devices, args.rate, str(mqtt.hostname), int(mqtt.port or 1883), seed=args.seed
    )
    try:
        if not args.no_register:
            sensors = [SensorSpec(d, d, "power", "W", d) for d in fleet.device_ids]
            register(stack["http"], stack["admin_token"], site, [], sensors)
        sent = fleet.run(args.seconds, stopping)
    finally:
        fleet.close()
    print(f"ems simulate: {sent} readings from {args.devices} devices in at most {args.seconds:g} s")
    return 0
