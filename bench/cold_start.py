"""Cold start of every function of template.yaml, against `import boto3` in a fresh process.

A sample is one new Python process (`python -I bench/sample.py`) that imports the function's
handler module (sys.path: its CodeUri folder, then layers/core; environment: the function's, from
the template, plus AWS_ENDPOINT_URL of a moto server) and serves one realistic request. Its wall
time, spawn to exit, is the figure; the child also reports import and first-invoke time. Floor
samples run the same way and alternate with the function's, so drift hits both alike.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.local_aws import LocalAws, Request
from bench.report import machine, median, percentile, table

NAME = "cold_start"
COMMAND = "python -m bench cold_start"
DEFAULT_SAMPLES = 11
TARGET_RATIO = 1.3
SAMPLE = Path(__file__).resolve().parent / "sample.py"
SITE = SAMPLE_SITE_NAME = "bench-site"

# References, measured as the functions are. `boto3` is the issue's floor; `dynamodb_get` is the
# least any DynamoDB-backed function does (load the SDK, build a client, make one call).
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
ISSUE_FLOOR, SDK_FLOOR = "boto3", "dynamodb_get"
SENSOR = "BENCH_METER"
# Functions no HTTP route reaches (the issue's bound is for API functions): not measured here yet.
NOT_HTTP = {"RealtimeFunction": "WebSocket routes and EventBridge", "TelemetryIngestFunction": "IoT rule"}


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
    status, reply = aws.call("POST", "/api/v1/sites", admin, {"site_id": SITE, "name": "Bench building"})
    if status not in (201, 409):
        raise RuntimeError(f"could not create the bench site: {status} {reply}")
    status, reply = aws.call("POST", "/api/v1/sensors", admin,
                             {"sensor_id": SENSOR, "name": "Bench meter", "sensor_type": "meter"}, f"site={SITE}")  # fmt: skip
    if status not in (201, 409):
        raise RuntimeError(f"could not create the bench sensor: {status} {reply}")
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
    }  # fmt: skip
    missing = set(aws.functions) - set(chosen) - set(NOT_HTTP)
    if missing:
        raise RuntimeError(
            f"no cold-start request chosen for {sorted(missing)}: add one in bench/cold_start.py"
        )
    return chosen


def spawn(spec: dict[str, Any], env: dict[str, str], scratch: Path) -> tuple[float, dict[str, Any]]:
    """Run one sample process; its wall time (spawn to exit) and what it reported."""
    path = scratch / "spec.json"
    path.write_text(json.dumps(spec))
    began = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-I", str(SAMPLE), str(path)], env=env, cwd=scratch, capture_output=True, text=True
    )
    wall_ms = (time.perf_counter() - began) * 1000
    lines = [line for line in done.stdout.splitlines() if line.startswith("BENCH-RESULT ")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(
            f"sample failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
        )
    return wall_ms, json.loads(lines[-1].removeprefix("BENCH-RESULT "))


def run(aws: LocalAws, scratch: Path, samples: int | None = None) -> str:
    samples = samples or DEFAULT_SAMPLES
    chosen = requests(aws)
    specs = {
        name: {**aws.function_spec(name), "mode": "cold", "event": request.event}
        for name, (_what, request, _status) in chosen.items()
    }
    envs = {name: aws.function_env(name) for name in chosen}
    floor_env = {**aws.base_env(), "TOKENS_TABLE": envs["TokensFunction"]["TOKENS_TABLE"]}

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
        wall, out = spawn({"mode": "floor", "code": FLOORS[floor][1]}, floor_env, scratch)
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
            floor_sample(ISSUE_FLOOR, floors[ISSUE_FLOOR])
            function_sample(name, functions[name])
        for floor in FLOORS:
            if floor != ISSUE_FLOOR:
                floor_sample(floor, floors[floor])
    return render(chosen, functions, floors, samples)


def _ms(value: float) -> str:
    return f"{value:.0f}"


def render(
    chosen: dict[str, tuple[str, Request, int]],
    functions: dict[str, Series],
    floors: dict[str, Series],
    samples: int,
) -> str:
    issue_floor = median(floors[ISSUE_FLOOR].wall_ms)
    sdk_floor = median(floors[SDK_FLOOR].wall_ms)
    rows = []
    for name, series in functions.items():
        wall = median(series.wall_ms)
        rows.append([
            name, chosen[name][0], _ms(wall), _ms(percentile(series.wall_ms, 90)), _ms(median(series.import_ms)),
            _ms(median(series.invoke_ms)), _ms(median(series.in_process_ms)), f"**{wall / issue_floor:.2f}**",
            f"{wall / sdk_floor:.2f}",
        ])  # fmt: skip
    floor_rows = [
        [key, FLOORS[key][0], str(len(s.wall_ms)), _ms(median(s.wall_ms)), _ms(percentile(s.wall_ms, 90)),
         _ms(median(s.run_ms)), _ms(median(s.in_process_ms))]
        for key, s in floors.items()
    ]  # fmt: skip
    verdict = [
        f"{name}: {median(s.wall_ms) / issue_floor:.2f}"
        for name, s in functions.items()
        if name != "AuthorizerFunction"
    ]
    return f"""## Cold start (`{NAME}`)

**Command:** `{COMMAND}` (`--samples N` to change the {DEFAULT_SAMPLES} samples per figure)

{machine()}

**What:** for every function of template.yaml, a new Python process (`python -I bench/sample.py`)
with the function's environment from the template and `AWS_ENDPOINT_URL` of a moto server
(127.0.0.1, the template's tables and key created in it) imports the handler module
(`sys.path` = CodeUri folder + layers/core) and serves one request: an API Gateway payload 2.0
event, with the authorizer context the authorizer gave for a valid token (minted beforehand), or
for the authorizer its REQUEST event. **Wall** is spawn to exit, measured by the parent; import,
first invoke and in-process (the sample script's first line to its result, after interpreter
start-up and before interpreter teardown) are measured inside the process. Wall minus in-process is
start-up plus teardown; teardown grows with what was loaded (about 150 ms for a function here), and
Lambda never pays it on a request, so the in-process figure is the closer one to Lambda's init +
first invoke. Each function sample follows a floor sample (`import boto3` in a new process, same
way), so drift hits both; the other references run once per round. One unmeasured run of each comes first (it writes `__pycache__`, as a built layer would
ship it). Median and p90 (nearest rank) over {samples} samples; ratio = function median / floor
median. moto answers slower than DynamoDB or KMS would, which counts against the functions only
(the `import boto3` floor makes no call).

{table(["function", "request", "wall median ms", "wall p90 ms", "import ms", "first invoke ms",
        "in-process ms", "ratio vs `import boto3`", "ratio vs boto3 + client + GetItem"], rows)}

References (same processes, same environment):

{table(["floor", "what the process does", "samples", "wall median ms", "wall p90 ms", "statements ms",
        "in-process ms"],
       floor_rows)}

Target of the issue: every API function's ratio vs `import boto3` <= {TARGET_RATIO} ({", ".join(verdict)}).
What any function needs before its own code runs already exceeds it: `import botocore.session` +
one DynamoDB client is {median(floors["botocore_client"].wall_ms) / issue_floor:.2f} x `import boto3`, and
`import boto3` + client + one GetItem is {sdk_floor / issue_floor:.2f} x. The last column compares each
function with that second floor: the least a DynamoDB-backed function can do.
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
