"""Writing bench/RESULTS.md: one section per benchmark, each with its command, machine and numbers.

Running one benchmark rewrites only its own section, so the file always holds the latest run of
each, and each section says when and where it was measured.
"""

from __future__ import annotations

import math
import os
import platform
import re
import statistics
import subprocess
import sys
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from ems_local.template import ROOT

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
HEADER = """# Benchmark results

Written by `python -m bench` (`make bench`); each section by its own module in bench/
(`python -m bench <name>` reruns one). Nothing here is edited by hand. Timings depend on the
machine: compare figures within one section (one run, one machine), not across machines.
"""
PACKAGES = (
    "botocore",
    "boto3",
    "pynamodb",
    "aws-lambda-powertools",
    "pydantic",
    "pyjwt",
    "cryptography",
    "moto",
)


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile: the smallest sample with at least `pct` % of samples at or below it."""
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def median(values: list[float]) -> float:
    return statistics.median(values)


def machine() -> str:
    """Where and when: enough to tell whether two runs are comparable."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    packages = ", ".join(f"{name} {_version(name)}" for name in PACKAGES)
    return (
        f"- machine: {platform.system()} {platform.machine()}, {cpu}, nproc {os.cpu_count()}\n"
        f"- python: {platform.python_implementation()} {platform.python_version()} ({sys.executable})\n"
        f"- packages: {packages}\n"
        f"- code: git {_git_revision()}\n"
        f"- date: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}"
    )


def _version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "absent"


def _git_revision() -> str:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    revision = git("rev-parse", "--short", "HEAD") or "unknown"
    return revision + (
        " with uncommitted changes" if git("status", "--porcelain", "--untracked-files=no") else ""
    )


def write_section(name: str, body: str) -> None:
    """Put `body` in RESULTS.md as the section of benchmark `name`, replacing its previous one."""
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    block = f"{start}\n{body.strip()}\n{end}"
    text = RESULTS.read_text() if RESULTS.exists() else HEADER
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.DOTALL)
    text = (
        pattern.sub(lambda _m: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    )
    RESULTS.write_text(text if text.endswith("\n") else text + "\n")


def table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)
