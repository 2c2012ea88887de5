"""The terminal and the log files of the local cloud.

Configured by `ems local up` (`configure`): the terminal shows the banner, then one short line per
client's HTTP request and WebSocket message, one per function error, and one summary a minute of the
functions' invocations. Everything else (each service's lines, every function's own logs, REPORT
lines) goes to files in the logs folder: `<LogicalId>.log` per function, `local.log` for the
services; with --verbose it is on the terminal too, each line prefixed with who wrote it.
Unconfigured (tests, tools that run a service in-process), every line goes to the terminal.
"""

from __future__ import annotations

import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any, TextIO

_lock = threading.Lock()
WIDTH = 18
SUMMARY_SECONDS = 60.0

_verbose = True
_log_dir: Path | None = None
_files: dict[str, TextIO] = {}
# Until the banner, the requests on the terminal's would be the local cloud's own (seeding the
# demo site, registering the building): they go to the files only.
_started = False
_window_started = time.monotonic()
_durations_ms: dict[str, list[float]] = {}
_errors: dict[str, int] = {}


def configure(verbose: bool, log_dir: Path | None) -> None:
    """`ems local up`'s terminal: everything (verbose) or the short lines; files in `log_dir`."""
    global _verbose, _log_dir, _started
    with _lock:
        _verbose, _log_dir, _started = verbose, log_dir, False
        _close_files()


def started() -> None:
    """The banner is out: requests from now on are clients', each worth a line."""
    global _started, _window_started
    with _lock:
        _started, _window_started = True, time.monotonic()
        _durations_ms.clear()
        _errors.clear()


def line(source: str, text: str) -> None:
    """A service's line: to local.log, and to the terminal when verbose (or unconfigured). Whole
    lines only, so concurrent writers never interleave mid-line."""
    with _lock:
        _to_file("local", f"{_clock()} {source[:WIDTH]:<{WIDTH}} | {text.rstrip()}")
        if _verbose:
            _to_terminal(_prefixed(source, text))


def notice(source: str, text: str) -> None:
    """A line worth the terminal whatever the mode: the local cloud starting, stopping, restoring."""
    with _lock:
        _to_file("local", f"{_clock()} {source[:WIDTH]:<{WIDTH}} | {text.rstrip()}")
        _to_terminal(_prefixed(source, text) if _verbose else f"{_clock()} {text.rstrip()}")


def event(source: str, text: str) -> None:
    """A client's request or message: a short line on the terminal once the banner is out."""
    if _started and not _verbose:
        notice(source, text)
    else:
        line(source, text)


def plain(text: str) -> None:
    """A line as it is (the banner)."""
    with _lock:
        _to_terminal(text)


def banner(description: dict[str, Any]) -> list[str]:
    """What a developer needs of the running stack: where everything is, the admin token, the page."""
    lines = [
        "ready; Ctrl-C stops everything (`ems local info` prints this again)",
        *([f"page         {description['http']}/"] if description.get("page") else []),
        f"HTTP API     {description['http']}",
        f"WebSocket    {description['ws']}  (and {description['http'].replace('http', 'ws', 1)}/ws)"
        if description["ws"]
        else "WebSocket    (the template has no WebSocket API)",
        f"MQTT         {description['mqtt']}  (IoT Core: topic rules, shadows)",
        f"AWS (moto)   {description['aws']}",
        f"AWS services {description['aws_services']}  (@connections, EventBridge, IoT data)",
        f"schedules    clock at {description['clock']['rate']:g}x, dead letters in {description['dead_letters']}",
        *(
            [f"logs         {description['logs']}/  (one file per function)"]
            if description.get("logs")
            else []
        ),
        f"site         {description['site']}",
        f"admin token  {description['admin_token']}",
        *([f"open         {description['page']}  (the live page)"] if description.get("page") else []),
    ]
    return [lines[0], *(f"  {line}" for line in lines[1:])]


def function_line(logical_id: str, source: str, text: str) -> None:
    """A line of a function's own logs (or its REPORT): to <logical_id>.log, as it was written, and
    to the terminal prefixed with `source` when verbose."""
    with _lock:
        _to_file(logical_id, text.rstrip("\n"))
        if _verbose:
            _to_terminal(_prefixed(source, text))


def invocation(logical_id: str, duration_ms: float, error: str | None) -> None:
    """One invocation's outcome: an error gets a line of its own (its first line); the rest are
    counted into the minute's summary."""
    if error is not None:
        notice(logical_id, f"{logical_id} {duration_ms:.0f} ms: {(error.strip() or 'error').splitlines()[0]}")
    if _verbose:
        return  # the REPORT lines say it all
    summary = None
    with _lock:
        _durations_ms.setdefault(logical_id, []).append(duration_ms)
        if error is not None:
            _errors[logical_id] = _errors.get(logical_id, 0) + 1
        if _started and time.monotonic() - _window_started >= SUMMARY_SECONDS:
            summary = _summary()
    if summary:
        notice("functions", summary)


def _summary() -> str:
    """The invocations since the last summary, one clause per function; the window starts again."""
    global _window_started
    elapsed_s = time.monotonic() - _window_started
    parts = [
        f"{name} {len(durations)} (p50 {statistics.median(durations):.0f} ms"
        + (f", {_errors[name]} errors)" if _errors.get(name) else ")")
        for name, durations in sorted(_durations_ms.items())
    ]
    _window_started = time.monotonic()
    _durations_ms.clear()
    _errors.clear()
    return f"invocations in the last {elapsed_s:.0f} s: " + ", ".join(parts)


def _clock() -> str:
    return time.strftime("%H:%M:%S")


def _prefixed(source: str, text: str) -> str:
    return f"{source[:WIDTH]:<{WIDTH}} | {text.rstrip()}"


def _to_terminal(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _to_file(name: str, text: str) -> None:
    if _log_dir is None:
        return
    handle = _files.get(name)
    if handle is None:
        _log_dir.mkdir(parents=True, exist_ok=True)
        handle = _files[name] = (_log_dir / f"{name}.log").open("a", encoding="utf-8")
    handle.write(text + "\n")
    handle.flush()


def _close_files() -> None:
    for handle in _files.values():
        handle.close()
    _files.clear()
