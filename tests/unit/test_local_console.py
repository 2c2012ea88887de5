"""The local cloud's terminal: short lines for a newcomer, every function's logs in its own file, and
the banner again from stack.json (`ems local info`)."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from ems_local import console
from ems_local.cli import main as local_main
from ems_local.console import banner

TIME = re.compile(r"^\d\d:\d\d:\d\d ")


@pytest.fixture
def quiet(tmp_path: Path) -> Iterator[Path]:
    """`ems local up` without --verbose, its files in tmp_path/logs; unconfigured again afterwards."""
    console.configure(verbose=False, log_dir=tmp_path / "logs")
    yield tmp_path / "logs"
    console.configure(verbose=True, log_dir=None)


def terminal(capsys: pytest.CaptureFixture[str]) -> list[str]:
    """The lines written since the last call, their time of day taken off."""
    return [TIME.sub("", line) for line in capsys.readouterr().out.splitlines()]


def test_function_logs_go_to_their_file_and_only_errors_to_the_terminal(
    quiet: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    console.started()
    console.function_line("TelemetryIngestFunction", "ems-dev-telemetry-ingest", '{"message":"ingest"}\n')
    console.function_line("TelemetryIngestFunction", "ems-dev-telemetry-ingest", "REPORT Duration: 30.0 ms")
    console.invocation("TelemetryIngestFunction", 30.0, None)
    console.invocation("TelemetryIngestFunction", 41.6, "KeyError: 'readings'\nTraceback ...")
    assert terminal(capsys) == ["TelemetryIngestFunction 42 ms: KeyError: 'readings'"]
    assert (quiet / "TelemetryIngestFunction.log").read_text().splitlines() == [
        '{"message":"ingest"}',
        "REPORT Duration: 30.0 ms",
    ]


def test_invocations_are_summarised_once_a_window(
    quiet: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    console.started()
    for duration_ms in (10.0, 30.0, 20.0):
        console.invocation("AlertsFunction", duration_ms, None)
    assert terminal(capsys) == []  # within the window: counted, not printed
    monkeypatch.setattr(console, "SUMMARY_SECONDS", 0.0)
    console.invocation("RealtimeFunction", 50.0, "Runtime.MarshalError: not JSON")
    lines = terminal(capsys)
    assert lines[0] == "RealtimeFunction 50 ms: Runtime.MarshalError: not JSON"
    assert re.fullmatch(
        r"invocations in the last \d+ s: AlertsFunction 3 \(p50 20 ms\), RealtimeFunction 1 \(p50 50 ms, 1 errors\)",
        lines[1],
    )
    console.invocation("AlertsFunction", 5.0, None)  # a new window: only this one
    assert re.fullmatch(r"invocations in the last \d+ s: AlertsFunction 1 \(p50 5 ms\)", terminal(capsys)[0])


def test_requests_are_a_line_each_once_the_banner_is_out(
    quiet: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    console.line("aws", "moto listening on http://127.0.0.1:4566")
    console.event("http", "POST /api/v1/sites 201 30 ms")  # the local cloud seeding its demo site
    assert terminal(capsys) == []
    console.started()
    console.event("http", "GET /api/v1/overview 200 12 ms")
    assert terminal(capsys) == ["GET /api/v1/overview 200 12 ms"]
    logged = [line.split(" ", 1)[1] for line in (quiet / "local.log").read_text().splitlines()]
    assert logged == [
        f"{'aws':<18} | moto listening on http://127.0.0.1:4566",
        f"{'http':<18} | POST /api/v1/sites 201 30 ms",
        f"{'http':<18} | GET /api/v1/overview 200 12 ms",
    ]


def test_verbose_shows_every_line_prefixed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    console.configure(verbose=True, log_dir=tmp_path)
    try:
        console.function_line("AuthorizerFunction", "ems-dev-authorizer", "REPORT Duration: 3.0 ms")
        console.line("iot", "topic rules: one")
    finally:
        console.configure(verbose=True, log_dir=None)
    assert capsys.readouterr().out.splitlines() == [
        f"{'ems-dev-authorizer':<18} | REPORT Duration: 3.0 ms",
        f"{'iot':<18} | topic rules: one",
    ]


DESCRIPTION = {
    "http": "http://127.0.0.1:8000", "ws": "ws://127.0.0.1:8001", "mqtt": "mqtt://127.0.0.1:1883",
    "aws": "http://127.0.0.1:4566", "aws_services": "http://127.0.0.1:4567",
    "clock": {"rate": 1.0}, "dead_letters": ".local/dead-letters.jsonl", "logs": ".local/logs",
    "admin_token": "a.b.c", "site": "demo", "page": "http://127.0.0.1:8000/#token=a.b.c",
}  # fmt: skip


def test_the_banner_names_every_address_and_ends_with_the_page() -> None:
    lines = banner(DESCRIPTION)
    assert lines[0].startswith("ready; Ctrl-C stops everything")
    assert [line.split()[0] for line in lines[1:]] == [
        "page", "HTTP", "WebSocket", "MQTT", "AWS", "AWS", "schedules", "logs", "site", "admin", "open",
    ]  # fmt: skip
    assert lines[1] == "  page         http://127.0.0.1:8000/"
    assert lines[-2] == "  admin token  a.b.c"
    assert lines[-1] == "  open         http://127.0.0.1:8000/#token=a.b.c  (the live page)"


def test_local_info_prints_the_banner_of_the_running_stack(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "stack.json").write_text(json.dumps({**DESCRIPTION, "pid": os.getpid()}))
    assert local_main(["info", "--state-dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out.splitlines() == banner(DESCRIPTION)


def test_local_info_without_a_stack_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert local_main(["info", "--state-dir", str(tmp_path)]) == 1
    assert f"no {tmp_path / 'stack.json'}" in capsys.readouterr().err
