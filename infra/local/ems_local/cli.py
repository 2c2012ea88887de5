"""`ems local up` (and `python -m ems_local`): run the local cloud until Ctrl-C or SIGTERM.
`ems local info`: its banner again, from the state directory's stack.json."""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ems_local import console
from ems_local.cloud import LocalCloud, Options
from ems_local.ports import PortTaken
from ems_local.state import IncompatibleState
from ems_local.template import TEMPLATE

# How long the banner waits for the demo building to register; it comes anyway after that.
SETTLE_SECONDS = 60.0


def _speed(text: str) -> float:
    try:
        speed = float(text)
    except ValueError:
        speed = 0.0
    if not (speed > 0 and math.isfinite(speed)):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return speed


def _clock_start(text: str) -> datetime | float:
    """An ISO 8601 instant (naive: UTC); a bare number is the speed, as `--clock 60` meant before."""
    try:
        return _speed(text)
    except argparse.ArgumentTypeError:
        pass
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 instant: {text!r}") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ems local up",
        description="Run template.yaml on this machine: moto, the functions, the HTTP and WebSocket APIs.",
    )
    parser.add_argument("--http-port", type=int, default=8000, help="HTTP API (0: any free port)")
    parser.add_argument("--aws-port", type=int, default=4566, help="AWS endpoint, moto (0: any free port)")
    parser.add_argument(
        "--ws-port", type=int, default=8001, help="WebSocket API (0: any free port; also at ws://<http>/ws)"
    )
    parser.add_argument(
        "--aws-services-port", type=int, default=4567,
        help="AWS services moto does not deliver: @connections, EventBridge PutEvents (0: any free port)",
    )  # fmt: skip
    parser.add_argument(
        "--mqtt-port", type=int, default=1883, help="MQTT broker acting as IoT Core (0: any free port)"
    )
    parser.add_argument(
        "--template", type=Path, default=TEMPLATE,
        help="the SAM template to run (CodeUri relative to its folder; default: the project's)",
    )  # fmt: skip
    parser.add_argument(
        "--clock", type=_clock_start, default=None, metavar="START",
        help="the instant the local cloud's clock reads at start (ISO 8601, e.g. 2030-01-01T00:00:00Z; "
        "default: now); functions, the simulator and the Scheduler all read it. A bare number is --speed",
    )  # fmt: skip
    parser.add_argument(
        "--speed", type=_speed, default=None,
        help="run that clock SPEED times faster, e.g. 60: rate(1 minute) fires every real second",
    )  # fmt: skip
    parser.add_argument(
        "--state-dir", type=Path, default=Path(".local"),
        help="where stack.json and the AWS state kept across restarts (aws-state.json) go",
    )  # fmt: skip
    parser.add_argument(
        "--reset",
        action="store_true",
        help="clear the state directory first: tables, buckets and keys start empty",
    )
    parser.add_argument("--empty", action="store_true", help="no demo site (and so no demo building)")
    parser.add_argument(
        "--no-building", action="store_true", help="the demo site without its simulated building on MQTT"
    )
    parser.add_argument("--concurrency", type=int, default=4, help="worker processes per function at most")
    parser.add_argument(
        "--param", action="append", default=[], metavar="NAME=VALUE",
        help="a template parameter, e.g. AuthorizerCacheTtlSeconds=300 (repeatable)",
    )  # fmt: skip
    parser.add_argument(
        "--verbose", action="store_true",
        help="every service's and function's log lines on the terminal (always in <state-dir>/logs/)",
    )  # fmt: skip
    return parser


def info(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="ems local info", description="The running local cloud's banner.")
    parser.add_argument("--state-dir", type=Path, default=Path(".local"), help="where its stack.json is")
    args = parser.parse_args(argv)
    stack_file = args.state_dir / "stack.json"
    if not stack_file.exists():
        print(
            f"ems local info: no local cloud is running here (no {stack_file}): start `make dev`",
            file=sys.stderr,
        )
        return 1
    description = json.loads(stack_file.read_text())
    if not _alive(int(description.get("pid") or 0)):
        print(f"ems local info: {stack_file} is left from a local cloud that is gone", file=sys.stderr)
        return 1
    for line in console.banner(description):
        print(line)
    return 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return pid > 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["info"]:
        return info(argv[1:])
    if argv[:1] == ["up"]:  # `ems local up ...` hands us what follows `local`
        argv = argv[1:]
    args = _parser().parse_args(argv)
    console.configure(args.verbose, args.state_dir / "logs")
    try:
        parameters = dict(p.split("=", 1) for p in args.param)
    except ValueError:
        print("ems local up: --param takes NAME=VALUE", file=sys.stderr)
        return 2
    start, speed = args.clock, args.speed
    if isinstance(start, float):  # `--clock 60`: the speed, from now
        if speed is not None:
            print("ems local up: --clock takes the start instant when --speed is given", file=sys.stderr)
            return 2
        start, speed = None, start
    options = Options(
        http_port=args.http_port, ws_port=args.ws_port, mqtt_port=args.mqtt_port, aws_port=args.aws_port,
        aws_services_port=args.aws_services_port,
        state_dir=args.state_dir, reset=args.reset, demo=not args.empty, concurrency=args.concurrency,
        building=not args.no_building,
        parameters=parameters, template=args.template, clock_rate=speed or 1.0, clock_start=start,
    )  # fmt: skip

    stopping = threading.Event()

    def request_stop(signum: int, frame: Any) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    cloud = LocalCloud(options)
    console.notice("local", f"starting; logs in {args.state_dir / 'logs'}/ (--verbose: here too)")
    try:
        description = cloud.start()
        # The banner comes last, once the stack's own start-up traffic (the demo building) is over.
        cloud.settled.wait(SETTLE_SECONDS)
        for line in console.banner(description):
            console.plain(line)
        console.started()
        while not stopping.wait(0.5):
            pass
        console.notice("local", "stopping")
    except (PortTaken, IncompatibleState) as exc:
        print(f"ems local up: {exc}", file=sys.stderr)
        return 1
    finally:
        cloud.stop()
    console.notice("local", "stopped")
    return 0
