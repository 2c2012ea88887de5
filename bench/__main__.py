"""`python -m bench [name ...] [--samples N]`: run benchmarks, write their sections of bench/RESULTS.md."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from bench import authorizer, cold_start, cost, forecast, market, realtime_latency, telemetry
from bench.local_aws import LocalAws
from bench.report import RESULTS, write_section

BENCHMARKS = {
    module.NAME: module
    for module in (cold_start, authorizer, realtime_latency, telemetry, cost, market, forecast)
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("names", nargs="*", choices=[[], *BENCHMARKS], metavar="name",
                        help=f"benchmarks to run (default: all of {', '.join(BENCHMARKS)})")  # fmt: skip
    parser.add_argument("--samples", type=int, default=None, help="samples per figure (each has its default)")
    args = parser.parse_args(argv)
    names = args.names or list(BENCHMARKS)
    with tempfile.TemporaryDirectory(prefix="ems-bench-") as scratch, LocalAws(Path(scratch)) as aws:
        for name in names:
            print(f"bench: running {name} ...", file=sys.stderr, flush=True)
            section = BENCHMARKS[name].run(aws, Path(scratch), args.samples)
            write_section(name, section)
            print(section)
    print(f"bench: wrote {RESULTS}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
