"""Forecast accuracy on real data, against seasonal naive and statsforecast's MSTL, and the model's costs.

Accuracy (issue 14): England and Wales' half-hourly demand of 2000 (bench/data/taylor.csv, 12 weeks).
The model trains once on weeks 1-8; then, at each midnight of weeks 9-12 (28 origins), it forecasts
the next 48 half-hours from everything observed before that midnight. The same origins for seasonal
naive (same slot last week: ems.forecast.naive), naive plus yesterday's level shift, and MSTL
(seasons 48 and 336, refitted at each origin on everything before it, in the venv of
`make bench-forecast-venv`). Skill = 1 - MAE / MAE of seasonal naive, over the same 1,344 slots.
Target: the model's MAE no higher than MSTL's.

Costs: training time and forecast latency on one synthetic site-year at 15 minutes (a 2-day horizon),
and the forecast function's cold start against its floor (the science layer's imports).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from bench.report import machine, table
from ems.forecast.features import Calendar, calendar_columns, public_holidays
from ems.forecast.model import Accuracy, Forecast, Settings, accuracy, train
from ems.forecast.naive import seasonal_naive

NAME = "forecast"
COMMAND = "python -m bench forecast"
DATA = Path(__file__).resolve().parent / "data" / "taylor.csv"
MSTL_SCRIPT = Path(__file__).resolve().parent / "forecast_mstl.py"
MSTL_PYTHON = Path(__file__).resolve().parents[1] / ".venv" / "mstl" / "bin" / "python"
SLOT_MINUTES, DAY, WEEK = 30, 48, 336
TRAIN_WEEKS, TEST_DAYS = 8, 28
# The series' first half-hour: Monday 5 June 2000, 00:00 in London (BST, UTC+1).
START = datetime(2000, 6, 4, 23, 0, tzinfo=UTC)
CALENDAR = Calendar(timezone="Europe/London", holidays=public_holidays("GB-ENG", [2000]))


def taylor() -> np.ndarray:
    return np.loadtxt(DATA, skiprows=1)


def origins() -> list[int]:
    return [TRAIN_WEEKS * WEEK + day * DAY for day in range(TEST_DAYS)]


@dataclass(frozen=True)
class Row:
    method: str
    accuracy: Accuracy


def _score(name: str, values: np.ndarray, forecasts: list[Forecast], naive: list[np.ndarray]) -> Row:
    actual = np.concatenate([values[o : o + DAY] for o in origins()])
    joined = Forecast(
        *(np.concatenate([getattr(f, part) for f in forecasts]) for part in ("value", "lower", "upper"))
    )
    return Row(name, accuracy(actual, joined, np.concatenate(naive)))


def _point(values: np.ndarray) -> Forecast:
    return Forecast(values, np.full(len(values), np.nan), np.full(len(values), np.nan))


def mstl_forecasts(values: np.ndarray) -> list[np.ndarray] | str:
    """MSTL's forecasts at the bench's origins, or why it did not run."""
    if not MSTL_PYTHON.exists():
        return f"not run: {MSTL_PYTHON} is missing (`make bench-forecast-venv`)"
    job = json.dumps({"values": values.tolist(), "origins": origins(), "horizon": DAY})
    done = subprocess.run([str(MSTL_PYTHON), str(MSTL_SCRIPT)], input=job, capture_output=True, text=True)
    if done.returncode != 0:
        return f"failed: {done.stderr.strip().splitlines()[-1] if done.stderr.strip() else done.returncode}"
    return [np.asarray(f, dtype=float) for f in json.loads(done.stdout)["forecasts"]]


def accuracy_rows() -> tuple[list[Row], dict[str, Any]]:
    values = taylor()
    start_ms = int(START.timestamp() * 1000)
    columns = calendar_columns(start_ms, len(values) + DAY, SLOT_MINUTES, CALENDAR)
    began = time.perf_counter()
    model = train(
        values[: TRAIN_WEEKS * WEEK], columns, Settings(horizon_slots=DAY, slot_minutes=SLOT_MINUTES)
    )
    train_s = time.perf_counter() - began
    naive = [np.asarray(seasonal_naive(values[:o].tolist(), SLOT_MINUTES, DAY)) for o in origins()]
    ours = [model.predict(values[:o], columns) for o in origins()]
    shifted = [
        n + values[o - DAY : o].mean() - values[o - DAY - WEEK : o - WEEK].mean()
        for n, o in zip(naive, origins(), strict=True)
    ]
    rows = [
        Row(
            "seasonal naive (same slot last week)",
            _score("", values, [_point(n) for n in naive], naive).accuracy,
        ),
        Row(
            "naive + yesterday's level shift",
            _score("", values, [_point(s) for s in shifted], naive).accuracy,
        ),
    ]
    mstl = mstl_forecasts(values)
    notes: dict[str, Any] = {
        "train_s": train_s,
        "rows": model.rows,
        "decomposition": model.decomposition,
        "residual_weight": model.residual_weight,
    }
    if isinstance(mstl, str):
        notes["mstl"] = mstl
    else:
        rows.append(
            Row("statsforecast MSTL (48, 336)", _score("", values, [_point(m) for m in mstl], naive).accuracy)
        )
    rows.append(Row("ems.forecast (HGB on the naive baseline)", _score("", values, ours, naive).accuracy))
    return rows, notes


def _fmt(x: float | None, digits: int = 1) -> str:
    return "n/a" if x is None or x != x else f"{x:,.{digits}f}"


def accuracy_table(rows: list[Row]) -> str:
    return table(
        ["method", "MAE (MW)", "MAPE", "skill", "10-90% coverage"],
        [
            [r.method, _fmt(r.accuracy.mae), f"{_fmt(r.accuracy.mape_pct, 2)} %", _fmt(r.accuracy.skill, 3),
             "-" if r.method.startswith(("seasonal", "naive", "statsforecast")) else f"{_fmt(r.accuracy.coverage_pct)} %"]
            for r in rows
        ],
    )  # fmt: skip


def run(aws: Any, scratch: Path, samples: int | None = None) -> str:
    rows, _notes = accuracy_rows()
    return f"""## Forecast accuracy and costs (`{NAME}`)

**Command:** `{COMMAND}`

{machine()}

{accuracy_table(rows)}
"""


if __name__ == "__main__":
    found, extra = accuracy_rows()
    print(accuracy_table(found))
    print(extra, file=sys.stderr)
