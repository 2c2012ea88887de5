"""Cold start of every function of template.yaml, against `import boto3` in a fresh process.

A sample is one new Python process (`python -I bench/sample.py`) that imports the function's
handler module (sys.path: its CodeUri folder, then layers/core; environment: the function's, from
the template, plus AWS_ENDPOINT_URL of a moto server) and serves one realistic request. Its wall
time, spawn to exit, is the figure; the child also reports import and first-invoke time. Floor
samples run the same way and alternate with the function's, so drift hits both alike.

The target (issue 9): each API function's in-process figure (init + first invoke) within
TARGET_RATIO of the `dynamodb_get` floor's, what any DynamoDB-backed function does. A function
above it gets one more, unmeasured, sample under `python -X importtime`, and the report says where
its time goes, package by package: what the floor imports too, what the `stack` reference (the
libraries every API function loads: botocore, PynamoDB, Powertools, pydantic) adds, and its own.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.local_aws import LocalAws, Request
from bench.report import machine, median, percentile, table

NAME = "cold_start"
COMMAND = "python -m bench cold_start"
DEFAULT_SAMPLES = 11
TARGET_RATIO = 1.25
SAMPLE = Path(__file__).resolve().parent / "sample.py"
SITE = SAMPLE_SITE_NAME = "bench-site"

# References, measured as the functions are. `dynamodb_get` is the target's floor: the least any
# DynamoDB-backed function does (load the SDK, build a client, make one call); `boto3` was the
# issue's first floor, kept with the others as a reference.
FLOORS: dict[str, tuple[str, str]] = {
    "interpreter": ("Python starts and exits (`pass`)", "pass"),
    "boto3": ("`import boto3`", "import boto3"),
    "botocore": ("`import botocore.session`", "import botocore.session"),
    "botocore_client": (
        "`import botocore.session` + create a DynamoDB client",
        "import botocore.session\nbotocore.session.get_session().create_client('dynamodb')",
    ),
    "dynamodb_get": (
        "`import boto3` + create a DynamoDB client + one GetItem",
        "import boto3, os\n"
        "boto3.client('dynamodb').get_item(TableName=os.environ['TOKENS_TABLE'], Key={'jti': {'S': 'floor'}})",
    ),
}
# What every API function loads and does before any code of its own, as the design has it: botocore
# (ems.core.aws uses it without boto3), PynamoDB (its stores), Powertools' Logger and Metrics, pydantic
# (its models: one here, validated and dumped), one DynamoDB client and one GetItem. Run with a
# function's environment (TokensFunction's: the template's Globals, which configure Powertools and
# pydantic), it shows how much of a function's figure its libraries take before its own code does.
FLOORS["stack"] = (
    "botocore + PynamoDB + Powertools' Logger and Metrics + pydantic (one model validated and dumped)"
    " + a DynamoDB client + one GetItem, in a function's environment",
    "import os\n"
    "import botocore.session\n"
    "import pynamodb.models\n"
    "from aws_lambda_powertools import Logger, Metrics\n"
    "from pydantic import BaseModel\n"
    "class Token(BaseModel):\n"
    "    jti: str\n"
    "    revoked: bool = False\n"
    "logger, metrics = Logger(), Metrics()\n"
    "client = botocore.session.get_session().create_client('dynamodb')\n"
    "client.get_item(TableName=os.environ['TOKENS_TABLE'], Key={'jti': {'S': 'floor'}})\n"
    "Token.model_validate({'jti': 'floor'}).model_dump_json()",
)
TARGET_FLOOR, BOTO3_FLOOR, STACK = "dynamodb_get", "boto3", "stack"
SENSOR = "BENCH_METER"
BATTERY = "BENCH_BATTERY"
# Functions no HTTP route reaches (the target is for API functions): not measured here. Alerts and
# export serve HTTP routes (GET /api/v1/events, GET /api/v1/export), so they are measured.
NOT_HTTP = {
    "RealtimeFunction": "WebSocket routes and EventBridge",
    "TelemetryIngestFunction": "telemetry queue",
}
# How many packages a profile names per phase; the rest is summed as "others".
PROFILE_TOP = 8


@dataclass
class Series:
    wall_ms: list[float] = field(default_factory=list)
    import_ms: list[float] = field(default_factory=list)
    invoke_ms: list[float] = field(default_factory=list)
    run_ms: list[float] = field(default_factory=list)
    in_process_ms: list[float] = field(default_factory=list)


def requests(aws: LocalAws) -> dict[str, tuple[str, Request, int]]:
    """Per function: the request it serves in a sample, and the status that proves it was served."""
    admin = aws.mint("bench-admin", ["*"], ["*"])
    _create(aws, admin, "site", "/api/v1/sites", {"site_id": SITE, "name": "Bench building"}, "")
    _create(aws, admin, "sensor", "/api/v1/sensors",
            {"sensor_id": SENSOR, "name": "Bench meter", "sensor_type": "meter"})  # fmt: skip
    inverter = {
        "device_id": BATTERY,
        "name": "Bench inverter",
        "device_type": "battery_inverter",
        "rated_power_kw": 5,
    }
    _create(aws, admin, "battery's inverter", "/api/v1/iot/devices", inverter)
    battery = {
        "battery_id": BATTERY,
        "name": "Bench battery",
        "capacity_kwh": 10,
        "max_charge_kw": 5,
        "max_discharge_kw": 5,
        "device_id": BATTERY,
    }
    _create(aws, admin, "battery", "/api/v1/batteries", battery)
    # An applied plan for the optimiser's GET (the shortest horizon, hourly, the series given: no forecast read).
    series = {
        "load_kw": [1.0] * 24,
        "pv_kw": [0.0] * 24,
        "import_price": [0.3] * 24,
        "export_price": [0.1] * 24,
    }
    with _environment(aws.functions["OptimizerFunction"]["Environment"]["Variables"]):  # its Scheduler target
        status, reply = aws.call(
            "POST",
            f"/api/v1/batteries/{BATTERY}/optimize",
            admin,
            {"horizon_hours": 24, "slot_minutes": 60, "start_soc_pct": 50, "apply": True, **series},
            f"site={SITE}",
        )
    if status != 200:
        raise RuntimeError(f"could not apply the bench battery's plan: {status} {reply}")
    grant = {
        "name": "bench-meter",
        "list_of_resources": ["sensors", "ingest"],
        "sites": [SITE],
        "exp_minutes": 60,
    }
    chosen = {
        "AuthorizerFunction": (f"REQUEST for GET /api/v1/sites/{SITE}, valid token",
                               aws.authorizer_request("GET", f"/api/v1/sites/{SITE}", admin), 200),
        "TokensFunction": ("POST /api/v1/tokens/generate (KMS Sign, PutItem)",
                           aws.request("POST", "/api/v1/tokens/generate", admin, grant), 201),
        "RegistryFunction": (f"GET /api/v1/sites/{SITE} (GetItem)",
                             aws.request("GET", f"/api/v1/sites/{SITE}", admin), 200),
        "SystemFunction": ("GET /health (2 DescribeTable, KMS GetPublicKey)",
                           aws.request("GET", "/health"), 200),
        "OverviewFunction": (f"GET /api/v1/overview?site={SITE} (registry and telemetry reads)",
                             aws.request("GET", "/api/v1/overview", admin, query=f"site={SITE}"), 200),
        "TelemetryFunction": (f"GET /api/v1/sensors/{SENSOR}/data, 1 h for a day (rollup Query)",
                              aws.request("GET", f"/api/v1/sensors/{SENSOR}/data", admin,
                                          query=f"site={SITE}&metric=power_w&resolution=1h"), 200),
        "AlertsFunction": (f"GET /api/v1/events?site={SITE} (alerts Query)",
                           aws.request("GET", "/api/v1/events", admin, query=f"site={SITE}"), 200),
        "ExportFunction": (f"GET /api/v1/export, CSV inline, 1 h of {SENSOR} for a day (rollup Query)",
                           aws.request("GET", "/api/v1/export", admin,
                                       query=f"site={SITE}&sensor_ids={SENSOR}&metrics=power_w&resolution=1h"
                                             f"&format=csv&start_time={_day_ago()}&end_time={_now()}"), 200),
        "ForecastFunction": (f"GET /api/v1/forecast/consumption?site={SITE}, 1 h (no model yet: naive)",
                             aws.request("GET", "/api/v1/forecast/consumption", admin,
                                         query=f"site={SITE}&horizon_hours=1"), 200),
        "BatteriesFunction": (f"GET /api/v1/batteries?site={SITE} (batteries Query)",
                              aws.request("GET", "/api/v1/batteries", admin, query=f"site={SITE}"), 200),
        "OptimizerFunction": (f"GET /api/v1/batteries/{BATTERY}/plan (2 GetItem)",
                              aws.request("GET", f"/api/v1/batteries/{BATTERY}/plan", admin,
                                          query=f"site={SITE}"), 200),
        "DevicesFunction": (f"GET /api/v1/iot/devices?site={SITE} (devices Query)",
                            aws.request("GET", "/api/v1/iot/devices", admin, query=f"site={SITE}"), 200),
        "MarketFunction": (f"GET /api/v1/p2p/orders?site={SITE} (orders Query)",
                           aws.request("GET", "/api/v1/p2p/orders", admin, query=f"site={SITE}"), 200),
        "DemandResponseFunction": (f"GET /api/v1/demand-response/invitations/unanswered?site={SITE} "
                                   "(invitations Query)",
                                   aws.request("GET", "/api/v1/demand-response/invitations/unanswered", admin,
                                               query=f"site={SITE}"), 200),
    }  # fmt: skip
    missing = set(aws.functions) - set(chosen) - set(NOT_HTTP)
    if missing:
        raise RuntimeError(
            f"no cold-start request chosen for {sorted(missing)}: add one in bench/cold_start.py"
        )
    return chosen


def _create(
    aws: LocalAws, token: str, what: str, path: str, body: dict[str, Any], query: str = f"site={SITE}"
) -> None:
    """POST a bench resource of the site (there already, from an earlier run, is as good)."""
    status, reply = aws.call("POST", path, token, body, query)
    if status not in (201, 409):
        raise RuntimeError(f"could not create the bench {what}: {status} {reply}")


@contextmanager
def _environment(variables: dict[str, str]) -> Iterator[None]:
    """This process's environment with a function's variables added, for one in-process call that
    reads one of its own (the seeding calls run with TokensFunction's)."""
    saved = dict(os.environ)
    os.environ.update({k: v for k, v in variables.items() if k not in os.environ})
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _day_ago() -> str:
    return (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")


def spawn(spec: dict[str, Any], env: dict[str, str], scratch: Path) -> tuple[float, dict[str, Any]]:
    """Run one sample process; its wall time (spawn to exit) and what it reported."""
    wall_ms, out, _stderr = _run(spec, env, scratch, [])
    return wall_ms, out


def profile(spec: dict[str, Any], env: dict[str, str], scratch: Path) -> dict[str, dict[str, float]]:
    """One sample under `python -X importtime` (slower, so never measured): its import profile."""
    return import_profile(_run(spec, env, scratch, ["-X", "importtime"])[2])


def _run(
    spec: dict[str, Any], env: dict[str, str], scratch: Path, flags: list[str]
) -> tuple[float, dict[str, Any], str]:
    path = scratch / "spec.json"
    path.write_text(json.dumps(spec))
    began = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-I", *flags, str(SAMPLE), str(path)], env=env, cwd=scratch, capture_output=True,
        text=True,
    )  # fmt: skip
    wall_ms = (time.perf_counter() - began) * 1000
    lines = [line for line in done.stdout.splitlines() if line.startswith("BENCH-RESULT ")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(
            f"sample failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
        )
    return wall_ms, json.loads(lines[-1].removeprefix("BENCH-RESULT ")), done.stderr


_IMPORT_LINE = re.compile(r"import time:\s+(\d+) \|\s+\d+ \| (\s*)(\S+)")


def import_profile(stderr: str) -> dict[str, dict[str, float]]:
    """From a `-X importtime` sample's stderr: per phase (`import` of the handler module, its first
    `invoke`; a floor has only `all`), the self time in ms of every module imported then."""
    phases: dict[str, dict[str, float]] = {}
    phase = "all"
    for line in stderr.splitlines():
        if line.startswith("BENCH-PHASE "):
            phase = line.removeprefix("BENCH-PHASE ").strip()
            continue
        found = _IMPORT_LINE.match(line)
        if found and phase in ("all", "import", "invoke"):
            phases.setdefault(phase, {})[found[3]] = int(found[1]) / 1000
    return phases


def by_package(modules: dict[str, float]) -> dict[str, float]:
    """Self times summed by top-level package (`ems` by its second level: `ems.auth`), largest first."""
    totals: dict[str, float] = {}
    for module, ms in modules.items():
        parts = module.split(".")
        package = ".".join(parts[:2]) if parts[0] == "ems" else parts[0]
        totals[package] = totals.get(package, 0.0) + ms
    return dict(sorted(totals.items(), key=lambda kv: -kv[1]))


def run(aws: LocalAws, scratch: Path, samples: int | None = None) -> str:
    samples = samples or DEFAULT_SAMPLES
    chosen = requests(aws)
    specs = {
        name: {**aws.function_spec(name), "mode": "cold", "event": request.event}
        for name, (_what, request, _status) in chosen.items()
    }
    envs = {name: aws.function_env(name) for name in chosen}
    floor_env = {**aws.base_env(), "TOKENS_TABLE": envs["TokensFunction"]["TOKENS_TABLE"]}
    floor_envs = {floor: envs["TokensFunction"] if floor == STACK else floor_env for floor in FLOORS}

    def function_sample(name: str, series: Series | None) -> None:
        wall, out = spawn(specs[name], envs[name], scratch)
        if out["status"] != chosen[name][2]:
            raise RuntimeError(f"{name} answered {out['status']}, expected {chosen[name][2]}")
        if series is not None:
            series.wall_ms.append(wall)
            series.import_ms.append(out["import_ms"])
            series.invoke_ms.append(out["invoke_ms"])
            series.in_process_ms.append(out["in_process_ms"])

    def floor_sample(floor: str, series: Series | None) -> None:
        wall, out = spawn({"mode": "floor", "code": FLOORS[floor][1]}, floor_envs[floor], scratch)
        if series is not None:
            series.wall_ms.append(wall)
            series.run_ms.append(out["run_ms"])
            series.in_process_ms.append(out["in_process_ms"])

    # One discarded run of each: writes __pycache__ and fills the page cache, as a deployed layer's
    # files would be on disk already. Every measured sample is still a new process.
    for name in chosen:
        function_sample(name, None)
    for floor in FLOORS:
        floor_sample(floor, None)

    functions = {name: Series() for name in chosen}
    floors = {floor: Series() for floor in FLOORS}
    for _ in range(samples):
        for name in chosen:
            floor_sample(TARGET_FLOOR, floors[TARGET_FLOOR])
            function_sample(name, functions[name])
        for floor in FLOORS:
            if floor != TARGET_FLOOR:
                floor_sample(floor, floors[floor])
    floor_ms = median(floors[TARGET_FLOOR].in_process_ms)
    profiles = {
        name: profile(specs[name], envs[name], scratch)
        for name, series in functions.items()
        if median(series.in_process_ms) / floor_ms > TARGET_RATIO
    }
    if profiles:
        for floor in (TARGET_FLOOR, STACK):
            profiles[floor] = profile({"mode": "floor", "code": FLOORS[floor][1]}, floor_envs[floor], scratch)
    return render(chosen, functions, floors, samples, profiles)


def _ms(value: float) -> str:
    return f"{value:.0f}"


def _where_time_goes(name: str, phases: dict[str, dict[str, float]], floor: set[str], stack: set[str]) -> str:
    """One line per phase: what it imported that the floor imports too, what the `stack` reference
    imports beyond the floor (the libraries every function loads), in all, and the rest (the
    function's own imports) by package, largest first (`-X importtime` self times)."""
    lines = []
    for phase, what in (("import", "import of the handler module"), ("invoke", "first invoke")):
        modules = phases.get(phase, {})
        shared = sum(ms for module, ms in modules.items() if module in floor)
        libraries = sum(ms for module, ms in modules.items() if module in stack and module not in floor)
        extra = by_package({m: ms for m, ms in modules.items() if m not in floor and m not in stack})
        named = list(extra.items())[:PROFILE_TOP]
        rest = sum(extra.values()) - sum(ms for _, ms in named)
        parts = [f"{package} {ms:.0f}" for package, ms in named if ms >= 0.5]
        parts += [f"others {rest:.0f}"] if rest >= 0.5 else []
        lines.append(
            f"  - {what}: {sum(modules.values()):.0f} ms of imports, {shared:.0f} of them modules the floor"
            f" imports too, {libraries:.0f} modules the `{STACK}` reference adds to the floor's; the rest,"
            f" {sum(extra.values()):.0f}: {', '.join(parts) or 'none'}"
        )
    return f"- **{name}**:\n" + "\n".join(lines)


def render(
    chosen: dict[str, tuple[str, Request, int]],
    functions: dict[str, Series],
    floors: dict[str, Series],
    samples: int,
    profiles: dict[str, dict[str, dict[str, float]]] | None = None,
) -> str:
    profiles = profiles or {}
    floor_ms = median(floors[TARGET_FLOOR].in_process_ms)
    stack_ms = median(floors[STACK].in_process_ms)
    boto3_wall = median(floors[BOTO3_FLOOR].wall_ms)
    floor_wall = median(floors[TARGET_FLOOR].wall_ms)
    rows, verdict = [], []
    for name, series in functions.items():
        wall, in_process = median(series.wall_ms), median(series.in_process_ms)
        ratio = in_process / floor_ms
        verdict.append(f"{name} {ratio:.2f}" + ("" if ratio <= TARGET_RATIO else " (over)"))
        rows.append([
            name, chosen[name][0], _ms(median(series.import_ms)), _ms(median(series.invoke_ms)), _ms(in_process),
            f"**{ratio:.2f}**", f"{in_process / stack_ms:.2f}", _ms(wall), _ms(percentile(series.wall_ms, 90)),
            f"{wall / floor_wall:.2f}", f"{wall / boto3_wall:.2f}",
        ])  # fmt: skip
    floor_rows = [
        [key, FLOORS[key][0], str(len(s.wall_ms)), _ms(median(s.run_ms)), _ms(median(s.in_process_ms)),
         f"{median(s.in_process_ms) / floor_ms:.2f}", _ms(median(s.wall_ms)), _ms(percentile(s.wall_ms, 90))]
        for key, s in floors.items()
    ]  # fmt: skip
    over = [name for name in functions if name in profiles]
    floor_modules = set(profiles.get(TARGET_FLOOR, {}).get("all", {}))
    stack_modules = set(profiles.get(STACK, {}).get("all", {}))
    where = (
        "Every API function is within the target."
        if not over
        else "Above the target, where the time goes (one more sample of each, and of the floor and the "
        f"`{STACK}` reference, under `python -X importtime`, not measured, so slower than the figures above:"
        " the self time of the modules each phase imported, in ms; the modules neither the floor nor the"
        f" `{STACK}` reference imports, summed by package, are what the function's own code adds; what is"
        " not an import is its own work and its AWS calls):\n\n"
        + "\n".join(_where_time_goes(name, profiles[name], floor_modules, stack_modules) for name in over)
    )
    return f"""## Cold start (`{NAME}`)

**Command:** `{COMMAND}` (`--samples N` to change the {DEFAULT_SAMPLES} samples per figure)

{machine()}

**Target:** every API function's in-process figure (init + first invoke) at most {TARGET_RATIO} x
the `{TARGET_FLOOR}` floor's ({FLOORS[TARGET_FLOOR][0]} in a new process: what any
DynamoDB-backed function does). The bold column. Today: {", ".join(verdict)}.

The `{STACK}` reference is what every API function loads and does before any code of its own:
{FLOORS[STACK][0]}. By itself it is {stack_ms / floor_ms:.2f} x the floor, so that much of every
function's ratio is its libraries' (the column after the bold one is each function's figure over
the `{STACK}` reference's: what its own code and its requests add).

**What:** for every API function of template.yaml (its HTTP routes, the authorizer, alerts and
export included; {", ".join(f"{k} ({v})" for k, v in NOT_HTTP.items())} serve no HTTP route and are
not measured), a new Python process (`python -I bench/sample.py`)
with the function's environment from the template and `AWS_ENDPOINT_URL` of a moto server
(127.0.0.1, the template's tables and key created in it) imports the handler module
(`sys.path` = CodeUri folder + layers/core) and serves one request: an API Gateway payload 2.0
event, with the authorizer context the authorizer gave for a valid token (minted beforehand), or
for the authorizer its REQUEST event. Import, first invoke and **in-process** (the sample script's
first line to its result, after interpreter start-up and before interpreter teardown) are measured
inside the process; in-process is the figure closest to Lambda's init + first invoke, and the
target's. **Wall** is spawn to exit, measured by the parent: it adds interpreter start-up and
teardown, which grows with what was loaded and which Lambda never pays on a request; its ratios
are kept as references. Each function sample follows a `{TARGET_FLOOR}` floor sample, so drift
hits both; the other references run once per round. One unmeasured run of each comes first (it
writes `__pycache__`, as a built layer would ship it). Median and p90 (nearest rank) over {samples}
samples; ratio = function median / floor median. moto answers slower than DynamoDB or KMS would,
which counts against the functions that make more calls than the floor's one GetItem.

{table(["function", "request", "import ms", "first invoke ms", "in-process ms",
        f"in-process ratio vs `{TARGET_FLOOR}`", f"in-process ratio vs `{STACK}`", "wall median ms",
        "wall p90 ms", f"wall ratio vs `{TARGET_FLOOR}`", f"wall ratio vs `{BOTO3_FLOOR}`"], rows)}

References (new processes too; `{STACK}` with TokensFunction's environment, the others with the
floor's):

{table(["floor", "what the process does", "samples", "statements ms", "in-process ms",
        f"in-process ratio vs `{TARGET_FLOOR}`", "wall median ms", "wall p90 ms"],
       floor_rows)}

{where}
{_extras_note()}
"""  # fmt: skip


def _extras_note() -> str:
    """botocore imports awscrt and pyOpenSSL when they are installed; a layer built from
    layers/core/requirements.txt has neither, so say whether this run's figures include them."""
    present = [name for name in ("awscrt", "OpenSSL") if importlib.util.find_spec(name) is not None]
    if not present:
        return ""
    return (
        f"This environment has {' and '.join(present)} installed (development tools bring them);"
        " botocore imports them when present, in the floors and the functions alike. The core layer"
        " does not ship them, so in Lambda both sides are smaller by that much and the ratios larger."
    )
