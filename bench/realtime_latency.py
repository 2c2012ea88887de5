"""Device publish to WebSocket receive, through the whole local cloud.

A real `ems local up` (moto, the MQTT broker, the template's IoT rule to the telemetry queue, the telemetry and realtime
functions in their workers, EventBridge, the WebSocket API) with N simulated devices (one paho
client each) publishing readings at a fixed total rate, and one WebSocket client subscribed to
`sensors/*`. Latency is the subscriber's receive time minus the device's publish time (one
machine, one clock), matched per reading by sensor id and value.

Then issue 9's sustained workload: 100 devices publishing messages of 10 readings, 300 readings/s for
60 s, every reading counted back per sensor from /data/query and at the subscriber. For a quick run:
BENCH_SUSTAINED_SECONDS, BENCH_SUSTAINED_RATE (readings/s) and BENCH_REALTIME_RATES (comma-separated
rates of the first table) in the environment.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from bench import local_cloud
from bench.local_aws import LocalAws
from bench.report import machine, median, percentile, table

NAME = "realtime_latency"
DEVICES = 20
RATES = tuple(int(r) for r in os.environ.get("BENCH_REALTIME_RATES", "10,25,50,100,200").split(","))
WARMUP_RATE, WARMUP_SECONDS = 25, 2  # enough concurrent invocations to start every function's workers
SECONDS = 15
DRAIN_SECONDS = 10
SITE = "demo"
ROOM = "Bench hall"
SUSTAINED_DEVICES = 100
SUSTAINED_PER_MESSAGE = 10  # readings per message, one sensor's, 300 ms apart
SUSTAINED_RATE = int(os.environ.get("BENCH_SUSTAINED_RATE", "300"))  # readings per second, all devices
SUSTAINED_SECONDS = int(os.environ.get("BENCH_SUSTAINED_SECONDS", "60"))
SUSTAINED_DRAIN_SECONDS = 180  # a backlog the local cloud is still working through counts as not yet there
QUIET_CPU_SHARE = 0.1  # the local cloud counts as idle below this share of one core


def _admin(stack: dict[str, Any]) -> httpx.Client:
    headers = {"authorization": f"Bearer {stack['admin_token']}", "x-site": SITE}
    return httpx.Client(base_url=stack["http"], headers=headers, timeout=60)


def _register(stack: dict[str, Any], prefix: str, count: int, room: bool = True) -> list[str]:
    sensors = [f"{prefix}{i:03d}" for i in range(count)]
    with _admin(stack) as http:
        if room:
            http.post("/api/v1/rooms", json={"name": ROOM}).raise_for_status()
        for sensor_id in sensors:
            body = {"sensor_id": sensor_id, "name": sensor_id, "sensor_type": "power", "room": ROOM,
                    "unit": "W", "device_id": f"dev-{sensor_id.lower()}"}  # fmt: skip
            http.post("/api/v1/sensors", json=body).raise_for_status()
    return sensors


def _readings(message: Any) -> list[tuple[str, float]]:
    """(sensor id, value) of every reading in a server message (one envelope or a batch of them)."""
    found: list[tuple[str, float]] = []
    for envelope in message if isinstance(message, list) else [message]:
        topic = str(envelope.get("topic") or "")
        if not topic.startswith("sensors/"):
            continue
        data = envelope.get("data") or {}
        for reading in data.get("readings", [data]):
            sensor_id = reading.get("sensor_id") or topic.split("/", 1)[1]
            metrics = reading.get("metrics") or {}
            value = metrics.get("power_w", reading.get("value"))
            if value is not None:
                found.append((str(sensor_id), float(value)))
    return found


class Subscriber:
    """One WebSocket client on `sensors/*`, noting when each (sensor, value) arrives."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.received: dict[tuple[str, float], float] = {}
        self.ready = threading.Event()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    async def _run(self) -> None:
        import websockets

        async with websockets.connect(self.url, max_size=None) as socket:
            await socket.send(json.dumps({"action": "subscribe", "topics": ["sensors/*"]}))
            self.ready.set()
            while not self.stop.is_set():
                try:
                    raw = await asyncio.wait_for(socket.recv(), timeout=0.5)
                except TimeoutError:
                    continue
                now = time.time()
                for key in _readings(json.loads(raw)):
                    self.received.setdefault(key, now)


@contextlib.contextmanager
def _devices(stack: dict[str, Any], sensors: list[str]) -> Iterator[list[Any]]:
    """One connected paho client a sensor (client id bench-<sensor>), disconnected afterwards."""
    import paho.mqtt.client as mqtt

    host, port = stack["mqtt"].removeprefix("mqtt://").split(":")
    clients = []
    try:
        for sensor_id in sensors:
            client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-{sensor_id}")
            client.connect(host, int(port))
            client.loop_start()
            clients.append(client)
        yield clients
    finally:
        for client in clients:
            client.loop_stop()
            client.disconnect()


def _publish(
    stack: dict[str, Any], sensors: list[str], rate: int, seconds: int, base: int
) -> dict[tuple[str, float], float]:
    """Every device publishes rate/len(sensors) readings a second for `seconds`; returns send times."""
    sent: dict[tuple[str, float], float] = {}
    interval = 1.0 / rate
    total = rate * seconds
    with _devices(stack, sensors) as clients:
        started = time.monotonic()
        for n in range(total):
            due = started + n * interval
            pause = due - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            index = n % len(sensors)
            sensor_id = sensors[index]
            value = float(base + n)  # unique per run: it identifies the reading at the subscriber
            now = time.time()
            payload = {"sensor_id": sensor_id, "ts": round(now, 3), "metrics": {"power_w": value}}
            topic = f"ems/{SITE}/devices/dev-{sensor_id.lower()}/telemetry"
            clients[index].publish(topic, json.dumps({"ts": round(now, 3), "readings": [payload]}), qos=1)
            sent[(sensor_id, value)] = now
    return sent


def _publish_batches(
    stack: dict[str, Any], sensors: list[str], rate: int, seconds: int, base: int
) -> dict[tuple[str, float], float]:
    """Each device (one sensor each) publishes SUSTAINED_PER_MESSAGE readings a message, the devices in
    turn, rate readings a second in all for `seconds`; returns each reading's send time."""
    sent: dict[tuple[str, float], float] = {}
    interval = SUSTAINED_PER_MESSAGE / rate
    messages = rate * seconds // SUSTAINED_PER_MESSAGE
    with _devices(stack, sensors) as clients:
        started = time.monotonic()
        for n in range(messages):
            pause = started + n * interval - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            index = n % len(sensors)
            sensor_id = sensors[index]
            now = time.time()
            now_ms = int(now * 1000)
            readings = []
            for j in range(SUSTAINED_PER_MESSAGE):
                value = float(base + n * SUSTAINED_PER_MESSAGE + j)  # unique: names the reading
                ts_ms = now_ms - (SUSTAINED_PER_MESSAGE - 1 - j) * 300  # one sensor's, 300 ms apart
                readings.append({"sensor_id": sensor_id, "ts": ts_ms, "metrics": {"power_w": value}})
                sent[(sensor_id, value)] = now
            topic = f"ems/{SITE}/devices/dev-{sensor_id.lower()}/telemetry"
            clients[index].publish(topic, json.dumps({"readings": readings}), qos=1)
    return sent


def _stored_per_sensor(stack: dict[str, Any], sensors: list[str], start_s: int, end_s: int) -> dict[str, int]:
    """Readings of power_w stored per sensor, from /data/query (daily buckets, counts summed)."""
    body = {"sensor_ids": sensors, "metric": "power_w", "start_time": start_s, "end_time": end_s,
            "resolution": "1d", "aggregate": "sum", "group_by": "sensor"}  # fmt: skip
    with _admin(stack) as http:
        answer = http.post("/api/v1/data/query", json=body)
        answer.raise_for_status()
    return {s["key"]: sum(p["count"] for p in s["points"]) for s in answer.json()["series"]}


def _wait_quiet(root: int, give_up_s: float = 120) -> None:
    """Until the local cloud's processes together use less than QUIET_CPU_SHARE of a core over a
    second: the previous workload's backlog is through."""
    give_up = time.monotonic() + give_up_s
    before = sum(_cpu_seconds(root).values())
    while time.monotonic() < give_up:
        time.sleep(1)
        after = sum(_cpu_seconds(root).values())
        if after - before < QUIET_CPU_SHARE:
            return
        before = after


def _cpu_rows(before: dict[str, float], after: dict[str, float], readings: int) -> list[list[str]]:
    return [
        [name, f"{(used - before.get(name, 0.0)) * 1000 / readings:.1f}"]
        for name, used in sorted(after.items(), key=lambda kv: -(kv[1] - before.get(kv[0], 0.0)))
        if used > before.get(name, 0.0)
    ]


def _sustained(process: subprocess.Popen[bytes], stack: dict[str, Any], sensors: list[str], url: str) -> str:
    """Issue 9's sustained workload: its table (sent, stored, pushed, latency) and CPU per reading."""
    _wait_quiet(process.pid)
    subscriber = Subscriber(url)
    subscriber.thread.start()
    if not subscriber.ready.wait(30):
        raise RuntimeError("the WebSocket subscriber did not connect")
    time.sleep(1)
    start_s = int(time.time()) - 60
    cpu_before = _cpu_seconds(process.pid)
    sent = _publish_batches(stack, sensors, SUSTAINED_RATE, SUSTAINED_SECONDS, base=100_000_000)
    published = time.monotonic()
    sent_per_sensor = {s: 0 for s in sensors}
    for sensor_id, _ in sent:
        sent_per_sensor[sensor_id] += 1
    give_up = published + SUSTAINED_DRAIN_SECONDS
    while len(subscriber.received.keys() & sent.keys()) < len(sent) and time.monotonic() < give_up:
        time.sleep(0.5)
    end_s = int(time.time()) + 60
    stored = _stored_per_sensor(stack, sensors, start_s, end_s)
    while stored != sent_per_sensor and time.monotonic() < give_up:
        time.sleep(2)
        stored = _stored_per_sensor(stack, sensors, start_s, end_s)
    drained_s = time.monotonic() - published
    cpu_after = _cpu_seconds(process.pid)
    subscriber.stop.set()
    subscriber.thread.join(10)
    latencies = [(subscriber.received[k] - t) * 1000 for k, t in sent.items() if k in subscriber.received]
    exact = sum(1 for s in sensors if stored.get(s, 0) == sent_per_sensor[s])
    cpu_rows = _cpu_rows(cpu_before, cpu_after, len(sent))
    cpu_total = sum(float(r[1]) for r in cpu_rows)
    headers = ["readings/s offered", "seconds", "sent", "stored", "sensors stored exactly", "pushed",
               "last one after s", "p50 ms", "p99 ms", "max ms"]  # fmt: skip
    row = [
        str(SUSTAINED_RATE), str(SUSTAINED_SECONDS), str(len(sent)), str(sum(stored.values())),
        f"{exact} of {len(sensors)}", str(len(latencies)), f"{drained_s:.0f}",
        f"{median(latencies):.1f}" if latencies else "-",
        f"{percentile(latencies, 99):.1f}" if latencies else "-",
        f"{max(latencies):.1f}" if latencies else "-",
    ]  # fmt: skip
    return f"""### Sustained: {SUSTAINED_DEVICES} devices, messages of {SUSTAINED_PER_MESSAGE} readings

{SUSTAINED_DEVICES} more sensors, one per paho device, each message {SUSTAINED_PER_MESSAGE} readings of its
sensor (300 ms apart), QoS 1, the devices in turn, {SUSTAINED_RATE} readings/s offered for {SUSTAINED_SECONDS} s
(after the table above has drained: the local cloud idle). Stored = the readings /data/query counts per sensor
(`group_by: sensor`), against those sent per sensor; pushed = readings the `sensors/*` subscriber received.
Both are waited for up to {SUSTAINED_DRAIN_SECONDS} s after the last publish; "last one after" is when both
were complete (or the wait gave up). Issue 9's target: every reading stored once and pushed, p99 under 1 s.

{table(headers, [row])}

CPU time per reading over the run and its drain (from /proc): {cpu_total:.1f} ms a reading bounds
{os.cpu_count()} cores near {(os.cpu_count() or 1) * 1000 / cpu_total if cpu_total else 0:.0f} readings/s.

{table(["process", "CPU ms per reading"], cpu_rows)}
"""


CLOUD_PROCESS = "the local cloud's process: MQTT broker, HTTP and WebSocket APIs, EventBridge"
MOTO_PROCESS = "the local cloud's moto process (ems_local.moto_server)"


def _cpu_seconds(root: int) -> dict[str, float]:
    """CPU time (user + system) so far of the local cloud's process, its moto process and its function
    workers (its other children, named by their code folder), from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    found: dict[str, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            parent, used = int(fields[1]), (int(fields[11]) + int(fields[12])) / tick
            if int(entry.name) == root:
                name = CLOUD_PROCESS
            elif parent == root and b"ems_local.moto_server" in (entry / "cmdline").read_bytes():
                name = MOTO_PROCESS
            elif parent == root:
                name = f"{Path(os.readlink(entry / 'cwd')).name} function's workers"
            else:
                continue
        except (OSError, ValueError, IndexError):
            continue  # a process that ended meanwhile
        found[name] = found.get(name, 0.0) + used
    return found


def _warm_up(stack: dict[str, Any], sensors: list[str], url: str) -> None:
    """A burst that starts the functions' workers (each cold start costs a core for a second or two),
    then waits until it has arrived: the figures are of warm workers."""
    subscriber = Subscriber(url)
    subscriber.thread.start()
    if not subscriber.ready.wait(30):
        raise RuntimeError("the WebSocket subscriber did not connect")
    time.sleep(1)
    sent = _publish(stack, sensors, WARMUP_RATE, WARMUP_SECONDS, base=0)
    give_up = time.monotonic() + 60
    while len(subscriber.received.keys() & sent.keys()) < len(sent) and time.monotonic() < give_up:
        time.sleep(0.2)
    subscriber.stop.set()
    subscriber.thread.join(10)


def run(aws: LocalAws, scratch: Path, samples: int | None = None) -> str:
    seconds = samples or SECONDS
    home = scratch / "realtime"
    home.mkdir(parents=True, exist_ok=True)
    process, stack = local_cloud.start(home, ["--no-building"])
    rows: list[list[str]] = []
    cpu_rows: list[list[str]] = []
    cpu_total = 0.0
    try:
        sensors = _register(stack, "BENCH_P", DEVICES)
        sustained_sensors = _register(stack, "BENCH_S", SUSTAINED_DEVICES, room=False)
        url = f"{stack['ws']}?token={stack['admin_token']}&site={SITE}"
        _warm_up(stack, sensors, url)
        for run_index, rate in enumerate(RATES):
            subscriber = Subscriber(url)
            subscriber.thread.start()
            if not subscriber.ready.wait(30):
                raise RuntimeError("the WebSocket subscriber did not connect")
            time.sleep(1)  # let the subscription land before the first reading
            cpu_before = _cpu_seconds(process.pid)
            sent = _publish(stack, sensors, rate, seconds, base=(run_index + 1) * 1_000_000)
            give_up = time.monotonic() + DRAIN_SECONDS
            while len(subscriber.received.keys() & sent.keys()) < len(sent) and time.monotonic() < give_up:
                time.sleep(0.2)
            if run_index == 0:
                cpu_rows = _cpu_rows(cpu_before, _cpu_seconds(process.pid), len(sent))
                cpu_total = sum(float(r[1]) for r in cpu_rows)
            subscriber.stop.set()
            subscriber.thread.join(10)
            latencies = [
                (subscriber.received[k] - t) * 1000 for k, t in sent.items() if k in subscriber.received
            ]
            arrived = sorted(subscriber.received[k] for k in sent if k in subscriber.received)
            span = (arrived[-1] - arrived[0]) if len(arrived) > 1 else 0.0
            rows.append([
                str(rate), str(len(sent)), str(len(latencies)), str(len(sent) - len(latencies)),
                f"{len(arrived) / span:.0f}" if span else "-",
                f"{median(latencies):.1f}" if latencies else "-",
                f"{percentile(latencies, 99):.1f}" if latencies else "-",
                f"{max(latencies):.1f}" if latencies else "-",
            ])  # fmt: skip
        sustained = _sustained(process, stack, sustained_sensors, url)
    finally:
        local_cloud.stop(process)
        with contextlib.suppress(OSError):
            (home / "local.log").unlink()
    headers = ["readings/s offered", "sent", "received", "lost", "received/s", "p50 ms", "p99 ms", "max ms"]
    return f"""## Device publish to WebSocket receive (`{NAME}`)

**Command:** `python -m bench {NAME}` (`--samples N`: seconds per rate, default {SECONDS})

{machine()}

**What:** `ems local up --no-building` for real (moto in its own process, the MQTT broker with the template's IoT rule
to the telemetry queue and its event source mapping,
the telemetry and realtime functions in their warm workers, EventBridge, the WebSocket API), then
{DEVICES} sensors registered through the HTTP API, one WebSocket client (`websockets`) subscribed
to `sensors/*`, and {DEVICES} paho devices publishing one reading per message, QoS 1, spread evenly
over the devices, for {seconds} s at each offered rate, after a warm-up burst ({WARMUP_RATE}/s for
{WARMUP_SECONDS} s, drained) that starts the functions' workers. Latency = receive time at the subscriber
minus publish time at the device, per reading (matched by sensor and a unique value); readings not
received {DRAIN_SECONDS} s after the last publish count as lost. Received/s is the subscriber's rate
between its first and last reading. Issue 9's target for single-reading messages: p99 under 150 ms at 10
readings/s.

{table(headers, rows)}

CPU time per reading at {RATES[0]} readings/s (from /proc, while those readings were sent and
received): each reading is a message through the telemetry queue (the rule's SendMessage, the mapping's
receive and delete) to the telemetry function, a TelemetryReceived
event to the realtime and alerts functions, each function's calls to moto, and a WebSocket post.
{cpu_total:.0f} ms a reading on {os.cpu_count()} cores bounds this machine near
{(os.cpu_count() or 1) * 1000 / cpu_total if cpu_total else 0:.0f} readings/s; one interpreter each, the local cloud's own
process near {_bound(cpu_rows, CLOUD_PROCESS)} readings/s, its moto process near {_bound(cpu_rows, MOTO_PROCESS)}.

{table(["process", "CPU ms per reading"], cpu_rows)}

{sustained}"""


def _bound(cpu_rows: list[list[str]], process: str) -> str:
    for name, ms in cpu_rows:
        if name == process and float(ms) > 0:
            return f"{1000 / float(ms):.0f}"
    return "-"
