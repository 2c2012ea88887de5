"""The battery optimiser (ems.batteries.optimizer) side by side with EMHASS, and against a greedy rule.

`python -m bench.battery [--samples N]` (`make bench-battery`) writes the `battery` section of
bench/RESULTS.md. It needs no local cloud: the optimiser is a pure function.

- Our solve time, model building included: 96 slots x 1 battery, 96 x 20, 192 x 1 (15-minute slots).
  Two figures: the plan (`Schedule.solve_ms`: building and solving the battery's model, the work
  EMHASS's call does) and the whole `optimize()` call (the checks and the no-battery solve too).
- EMHASS (`emhass>=0.18,<0.19`, in .bench-venvs/emhass, a virtual environment of its own that this
  bench creates: it pins numpy and cvxpy) solving the same one-battery cases through
  bench/emhass_run.py in a subprocess: from a new `Optimization` object and re-solving the cached one,
  with `lp_solver_mip_rel_gap` 0 and its default 0.01. Its cost is recomputed from its schedule.
- A week of real-looking prices: the optimum against "charge in the cheapest hours, discharge in the
  dearest" (greedy, per day) and against no battery.

Matching the models (issue 11's pitfalls): EMHASS's power limits are on the battery side: AC charge
<= P and <= P / eta_c (so P), AC discharge <= eta_d x P; ours are grid-side, so max_charge_kw = P and
max_discharge_kw = eta_d x P. Its powers are W with export and charge negative; its objective is
profit (minus our cost); its end SoC is an equality with penalised slacks (ours: at least the start;
with positive prices the optimum ends at the start); `set_nodischarge_to_grid` (default true) is
turned off, as ours lets the battery export. Compare objectives, not schedules.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from bench.report import RESULTS, machine, table, write_section
from ems.batteries.optimizer import optimize
from ems.batteries.schedule import Battery, Problem
from ems_local.template import ROOT

NAME = "battery"
COMMAND = "python -m bench.battery"
DEFAULT_SAMPLES = 21
EMHASS_SAMPLES = 5
EMHASS_REQUIREMENT = "emhass>=0.18,<0.19"
EMHASS_VENV = ROOT / ".bench-venvs" / "emhass"
EMHASS_RUN = Path(__file__).resolve().parent / "emhass_run.py"
SLOT_MINUTES = 15
SLOTS_A_DAY = 24 * 60 // SLOT_MINUTES
GRID_LIMIT_KW = 30.0  # EMHASS's maximum_power_from_grid / to_grid (its big-M); never binding here
TARGET_NEW_OBJECT_RATIO, TARGET_CACHED_RATIO, TARGET_RELATIVE_COST = 50.0, 10.0, 1e-6


# --- the cases ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HomeBattery:
    """A home battery as EMHASS describes one: battery-side power limit, efficiencies, SoC fractions."""

    capacity_kwh: float = 10.0
    battery_side_kw: float = 5.0
    charge_efficiency: float = 0.95
    discharge_efficiency: float = 0.95
    soc_min_pct: float = 10.0
    soc_max_pct: float = 90.0
    start_soc_pct: float = 50.0
    wear_cost_per_kwh: float = 0.01

    def ours(self, battery_id: str) -> Battery:
        return Battery(
            battery_id=battery_id,
            capacity_kwh=self.capacity_kwh,
            max_charge_kw=min(self.battery_side_kw, self.battery_side_kw / self.charge_efficiency),
            max_discharge_kw=self.discharge_efficiency * self.battery_side_kw,
            start_soc_pct=self.start_soc_pct,
            charge_efficiency=self.charge_efficiency,
            discharge_efficiency=self.discharge_efficiency,
            soc_min_pct=self.soc_min_pct,
            soc_max_pct=self.soc_max_pct,
            wear_cost_per_kwh=self.wear_cost_per_kwh,
        )

    def emhass(self) -> dict[str, float]:
        return {
            "capacity_kwh": self.capacity_kwh,
            "battery_side_charge_kw": self.battery_side_kw,
            "battery_side_discharge_kw": self.battery_side_kw,
            "charge_efficiency": self.charge_efficiency,
            "discharge_efficiency": self.discharge_efficiency,
            "soc_min_pct": self.soc_min_pct,
            "soc_max_pct": self.soc_max_pct,
            "start_soc_pct": self.start_soc_pct,
            "wear_cost_per_kwh": self.wear_cost_per_kwh,
        }


@dataclass(frozen=True)
class Week:
    """Seeded, real-looking series per 15-minute slot: a day-ahead spot price with night trough, morning
    and evening peaks and a solar dip (weekends lower, sunny weekend middays below zero); import = spot
    + 0.10 of network charges, export = spot; a home's load; 5 kWp of PV under each day's cloud."""

    import_price_per_kwh: list[float]
    export_price_per_kwh: list[float]
    load_kw: list[float]
    pv_kw: list[float]

    @classmethod
    def generate(cls, days: int = 7, seed: int = 11) -> Week:
        rng = random.Random(seed)
        spot, load, pv = [], [], []
        for day in range(days):
            weekend = day % 7 >= 5
            level = rng.uniform(0.05, 0.08) if weekend else rng.uniform(0.09, 0.13)
            solar_dip = 0.12 if weekend else 0.06
            sun = rng.uniform(0.3, 1.0)
            for slot in range(SLOTS_A_DAY):
                hour = slot * SLOT_MINUTES / 60
                shape = (
                    -0.05 * _bump(hour, 3.5, 2.0)
                    + 0.07 * _bump(hour, 8.0, 1.2)
                    + 0.14 * _bump(hour, 19.0, 1.6)
                    - solar_dip * sun * _bump(hour, 13.0, 2.2)
                )
                spot.append(round(level + shape + rng.gauss(0, 0.008), 4))
                load.append(
                    round(
                        max(
                            0.1,
                            0.35
                            + 1.0 * _bump(hour, 7.5, 0.8)
                            + 2.0 * _bump(hour, 19.0, 1.5)
                            + rng.gauss(0, 0.1),
                        ),
                        3,
                    )
                )
                pv.append(round(5.0 * sun * max(0.0, math.sin(math.pi * (hour - 6) / 13)) ** 1.5, 3))
        return cls([round(s + 0.10, 4) for s in spot], spot, load, pv)

    def slots(self, first: int, count: int) -> Week:
        cut = slice(first, first + count)
        return Week(
            self.import_price_per_kwh[cut], self.export_price_per_kwh[cut], self.load_kw[cut], self.pv_kw[cut]
        )

    def problem(self, batteries: tuple[Battery, ...]) -> Problem:
        return Problem(
            slot_minutes=SLOT_MINUTES,
            import_price_per_kwh=self.import_price_per_kwh,
            export_price_per_kwh=self.export_price_per_kwh,
            load_kw=self.load_kw,
            pv_kw=self.pv_kw,
            batteries=batteries,
            import_limit_kw=GRID_LIMIT_KW * len(batteries),
            export_limit_kw=GRID_LIMIT_KW * len(batteries),
        )


def _bump(hour: float, centre: float, width: float) -> float:
    return math.exp(-(((hour - centre) / width) ** 2))


def fleet(count: int) -> tuple[Battery, ...]:
    """`count` different batteries (capacity, power, efficiency, start SoC and wear vary)."""
    return tuple(
        replace(
            HomeBattery(),
            capacity_kwh=5.0 + 2.5 * (i % 4),
            battery_side_kw=3.0 + (i % 3),
            charge_efficiency=0.92 + 0.01 * (i % 5),
            discharge_efficiency=0.92 + 0.01 * (i % 5),
            start_soc_pct=30.0 + 5 * (i % 7),
            wear_cost_per_kwh=0.005 * (i % 3),
        ).ours(f"b{i}")
        for i in range(count)
    )


# --- our timings ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Timing:
    label: str
    slots: int
    batteries: int
    call_ms: float
    plan_ms: float
    cost: float
    binaries: int


def time_ours(label: str, problem: Problem, samples: int) -> Timing:
    optimize(problem)  # warm-up: highspy's import and first solve
    calls, plans = [], []
    for _ in range(samples):
        started = time.perf_counter()
        schedule = optimize(problem)
        calls.append((time.perf_counter() - started) * 1000)
        plans.append(schedule.solve_ms)
    binaries = len(schedule.binary_battery_slots) + len(schedule.binary_grid_slots)
    return Timing(
        label,
        problem.slots,
        len(problem.batteries),
        statistics.median(calls),
        statistics.median(plans),
        schedule.cost,
        binaries,
    )


# --- EMHASS ----------------------------------------------------------------------------------------------


def emhass_python() -> tuple[Path | None, str]:
    """EMHASS's own virtual environment, created and installed on first use: (its python, or None; what
    happened)."""
    python = EMHASS_VENV / "bin" / "python"
    if not python.exists():
        made = subprocess.run(
            [sys.executable, "-m", "venv", str(EMHASS_VENV)], capture_output=True, text=True
        )
        if made.returncode != 0:
            return None, f"`python -m venv {EMHASS_VENV}` failed: {made.stderr.strip()[-800:]}"
    if subprocess.run([str(python), "-c", "import emhass"], capture_output=True).returncode == 0:
        return python, "already installed"
    print(
        f"bench battery: pip install '{EMHASS_REQUIREMENT}' into {EMHASS_VENV} ...",
        file=sys.stderr,
        flush=True,
    )
    pip = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", EMHASS_REQUIREMENT], capture_output=True, text=True
    )
    if pip.returncode != 0:
        lines = [line for line in pip.stderr.splitlines() if not line.startswith("WARNING: Location")]
        return None, f"pip install '{EMHASS_REQUIREMENT}' failed (exit {pip.returncode}): " + "\n".join(
            lines[-15:]
        )
    return python, "installed by this run"


def run_emhass(python: Path, week: Week, battery: HomeBattery, samples: int, scratch: Path) -> dict[str, Any]:
    case = {
        "slot_minutes": SLOT_MINUTES,
        "import_price_per_kwh": week.import_price_per_kwh,
        "export_price_per_kwh": week.export_price_per_kwh,
        "load_kw": week.load_kw,
        "pv_kw": week.pv_kw,
        "battery": battery.emhass(),
        "import_limit_kw": GRID_LIMIT_KW,
        "export_limit_kw": GRID_LIMIT_KW,
        "scratch": str(scratch),
    }
    request = {"case": case, "samples": samples, "mip_rel_gaps": [0.0, 0.01]}
    done = subprocess.run(
        [str(python), str(EMHASS_RUN)], input=json.dumps(request), capture_output=True, text=True, cwd=scratch
    )
    if done.returncode != 0:
        raise RuntimeError(f"bench/emhass_run.py failed: {done.stderr[-2000:]}")
    # HiGHS prints its banner on stdout; the answer is the last line.
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


# --- greedy ----------------------------------------------------------------------------------------------


def greedy_cost(week: Week, b: Battery) -> tuple[float, float]:
    """(cost, end SoC %) of "charge in the cheapest hours, discharge in the dearest", day by day: as many
    cheapest slots (by import price) as fill the usable capacity at full power charge at full power, as many
    dearest slots as empty it discharge at full power, each clipped at the SoC bounds. Priced as the
    optimiser prices (import cost - export revenue + wear)."""
    dt = SLOT_MINUTES / 60
    usable_kwh = b.kwh(b.soc_max_pct) - b.kwh(b.soc_min_pct)
    charge_slots = math.ceil(usable_kwh / (b.max_charge_kw * dt * b.charge_efficiency))
    discharge_slots = math.ceil(usable_kwh / (b.max_discharge_kw * dt / b.discharge_efficiency))
    soc_kwh, cost = b.kwh(b.start_soc_pct), 0.0
    for first in range(0, len(week.load_kw), SLOTS_A_DAY):
        day = range(first, min(first + SLOTS_A_DAY, len(week.load_kw)))
        by_price = sorted(day, key=lambda t: week.import_price_per_kwh[t])
        cheapest, dearest = set(by_price[:charge_slots]), set(by_price[-discharge_slots:])
        for t in day:
            charge_kw = discharge_kw = 0.0
            if t in cheapest:
                charge_kw = min(
                    b.max_charge_kw, (b.kwh(b.soc_max_pct) - soc_kwh) / (dt * b.charge_efficiency)
                )
            elif t in dearest:
                discharge_kw = min(
                    b.max_discharge_kw, (soc_kwh - b.kwh(b.soc_min_pct)) * b.discharge_efficiency / dt
                )
            soc_kwh += dt * (b.charge_efficiency * charge_kw - discharge_kw / b.discharge_efficiency)
            grid_kw = week.load_kw[t] - week.pv_kw[t] + charge_kw - discharge_kw
            price = week.import_price_per_kwh[t] if grid_kw > 0 else week.export_price_per_kwh[t]
            cost += dt * (price * grid_kw + b.wear_cost_per_kwh * (charge_kw + discharge_kw))
    return cost, 100 * soc_kwh / b.capacity_kwh


# --- the section -------------------------------------------------------------------------------------------


def run(samples: int | None = None) -> str:
    samples = samples or DEFAULT_SAMPLES
    week, home = Week.generate(), HomeBattery()
    day, two_days = week.slots(0, SLOTS_A_DAY), week.slots(0, 2 * SLOTS_A_DAY)
    ours = {
        "96x1": time_ours("96 x 1", day.problem((home.ours("b0"),)), samples),
        "96x20": time_ours("96 x 20", day.problem(fleet(20)), samples),
        "192x1": time_ours("192 x 1", two_days.problem((home.ours("b0"),)), samples),
    }
    lines = [
        f"Command: `{COMMAND}` ({samples} samples of ours, {EMHASS_SAMPLES} of each EMHASS path; medians).",
        "",
        machine(),
        "",
        "**Ours** (ems.batteries.optimizer, highspy's matrix API, 15-minute slots; the battery: 10 kWh, 5 kW on the",
        "battery side, 95 % each way, SoC 10-90 %, from 50 %, wear 0.01 a kWh each way; the 20 batteries vary).",
        "`plan` is the battery's model built and solved (`Schedule.solve_ms`); `call` the whole `optimize()`,",
        "input checks and the no-battery solve included.",
        "",
        table(
            ["case", "slots", "batteries", "plan ms", "call ms", "cost", "binaries added"],
            [
                [
                    t.label,
                    str(t.slots),
                    str(t.batteries),
                    f"{t.plan_ms:.2f}",
                    f"{t.call_ms:.2f}",
                    f"{t.cost:.6f}",
                    str(t.binaries),
                ]
                for t in ours.values()
            ],
        ),
        "",
    ]
    python, how = emhass_python()
    if python is None:
        lines += [
            "**EMHASS could not be installed here**, so it was not compared:",
            "",
            "```",
            how,
            "```",
            "",
        ]
    else:
        rows = []
        with tempfile.TemporaryDirectory(prefix="ems-bench-emhass-") as scratch:
            for key, series in (("96x1", day), ("192x1", two_days)):
                em = run_emhass(python, series, home, EMHASS_SAMPLES, Path(scratch))
                mine = ours[key]
                for r in em["runs"]:
                    relative = abs(r["cost"] - mine.cost) / abs(mine.cost)
                    rows.append(
                        [
                            mine.label,
                            f"{r['mip_rel_gap']:g}",
                            r["status"],
                            f"{r['cost']:.6f}",
                            f"{mine.cost:.6f}",
                            f"{relative:.1e}",
                            f"{r['new_object_ms']:.1f}",
                            f"{r['cached_ms']:.1f}",
                            f"{r['new_object_ms'] / mine.plan_ms:.0f}x / {r['new_object_ms'] / mine.call_ms:.0f}x",
                            f"{r['cached_ms'] / mine.plan_ms:.0f}x / {r['cached_ms'] / mine.call_ms:.0f}x",
                        ]
                    )
        lines += [
            f"**EMHASS {em['emhass']}** (cvxpy {em['cvxpy']}, highspy {em['highspy']}; {how} in "
            f"`{EMHASS_VENV.relative_to(ROOT)}`), the same one-battery cases, `costfun` profit, through its",
            "`utils.build_config` / `build_params`, `Optimization(...)` then `perform_dayahead_forecast_optim`.",
            "EMHASS cost: recomputed from its schedule in our convention (import cost - export revenue + wear);",
            "with `lp_solver_mip_rel_gap` 0 EMHASS passes no gap to HiGHS (whose own default, 1e-4, applies).",
            f"Speed-ups: EMHASS's time over our plan / over our whole call. Targets: cost within {TARGET_RELATIVE_COST:g}",
            f"relative at gap 0; >= {TARGET_NEW_OBJECT_RATIO:g}x its new-object path, >= {TARGET_CACHED_RATIO:g}x its cached path.",
            "",
            table(
                [
                    "case",
                    "EMHASS gap",
                    "status",
                    "EMHASS cost",
                    "our cost",
                    "relative diff",
                    "new object ms",
                    "cached ms",
                    "new-object speed-up",
                    "cached speed-up",
                ],
                rows,
            ),
            "",
        ]
    optimal = optimize(week.problem((home.ours("b0"),)))
    greedy, greedy_end_pct = greedy_cost(week, home.ours("b0"))
    assert optimal.cost_without_battery is not None
    # The greedy plan ends where it ends; restoring its start SoC is priced at the week's mean import price.
    b0 = home.ours("b0")
    shortfall_kwh = b0.kwh(home.start_soc_pct) - b0.kwh(greedy_end_pct)
    restored = greedy + shortfall_kwh / b0.charge_efficiency * statistics.mean(week.import_price_per_kwh)
    lines += [
        f"**A week** ({len(week.load_kw)} slots, the same battery, one solve of {optimal.solve_ms:.1f} ms;",
        f"import {min(week.import_price_per_kwh):.3f} to {max(week.import_price_per_kwh):.3f} a kWh, export",
        f"{min(week.export_price_per_kwh):.3f} to {max(week.export_price_per_kwh):.3f}):",
        "",
        table(
            ["plan", "cost", "saving against no battery", "end SoC"],
            [
                ["no battery", f"{optimal.cost_without_battery:.4f}", "", ""],
                [
                    "greedy: cheapest hours charge, dearest discharge (each day)",
                    f"{greedy:.4f}",
                    f"{optimal.cost_without_battery - greedy:.4f}",
                    f"{greedy_end_pct:.1f} %",
                ],
                [
                    "greedy, its end SoC restored to the start at the mean import price",
                    f"{restored:.4f}",
                    f"{optimal.cost_without_battery - restored:.4f}",
                    f"{home.start_soc_pct:.1f} %",
                ],
                [
                    "optimal (ours)",
                    f"{optimal.cost:.4f}",
                    f"{optimal.cost_without_battery - optimal.cost:.4f}",
                    f"{optimal.batteries[0].soc_pct[-1]:.1f} %",
                ],
            ],
        ),
        "",
        "The optimum ends at least at the start SoC (the optimiser's default).",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__.splitlines()[0])
    parser.add_argument(
        "--samples", type=int, default=None, help=f"samples of our timings (default {DEFAULT_SAMPLES})"
    )
    args = parser.parse_args(argv)
    section = run(args.samples)
    write_section(NAME, section)
    print(section)
    print(f"bench: wrote {RESULTS}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
