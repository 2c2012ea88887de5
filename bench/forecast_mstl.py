"""statsforecast's MSTL (seasons 48 and 336) on the forecast bench's split, run in a virtual
environment of its own (`make bench-forecast-venv`: statsforecast pins pandas < 3, the project's
science extra has pandas 3). Reads `{"values": [...], "origins": [...], "horizon": n}` as JSON on
stdin, refits on everything before each origin and writes `{"forecasts": [[...], ...]}`."""

from __future__ import annotations

import json
import sys

import numpy as np
from statsforecast.models import MSTL


def main() -> None:
    job = json.load(sys.stdin)
    values = np.asarray(job["values"], dtype=float)
    forecasts = [
        MSTL(season_length=[48, 336]).fit(values[:origin]).predict(job["horizon"])["mean"].tolist()
        for origin in job["origins"]
    ]
    json.dump({"forecasts": forecasts}, sys.stdout)


if __name__ == "__main__":
    main()
