"""The optimiser's numerical libraries stay off every function's import path: importing the batteries'
API function or the optimiser's loads none of them (the optimiser's GET and DELETE plan routes start
without numpy), and the optimiser's first solve loads numpy and highspy (a check that can fail both
ways). Run in a fresh interpreter, since this test process may have imported them already."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from ems_local.template import ROOT

HEAVY = ("numpy", "highspy", "pandas", "scipy", "sklearn", "aws_xray_sdk")


def loaded_after_import(code_uri: str, then: str = "") -> list[str]:
    script = (
        "import importlib.util, json, sys\n"
        f"sys.path.insert(0, {str(ROOT / 'layers' / 'core')!r})\n"
        f"spec = importlib.util.spec_from_file_location('app', {str(ROOT / code_uri / 'app.py')!r})\n"
        "module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)\n"
        f"{then}"
        f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


@pytest.mark.parametrize("code_uri", ["functions/batteries", "functions/optimizer"])
def test_no_function_loads_numpy_at_init(code_uri: str) -> None:
    assert loaded_after_import(code_uri) == []


def test_the_optimisers_first_solve_loads_numpy_and_highspy() -> None:
    # One slot of 2 kW load at price 1, nothing else: the optimum imports 2 kW.
    solve = (
        "from ems.batteries import optimizer\n"
        "from ems.batteries.schedule import Problem\n"
        "p = Problem(slot_minutes=60, import_price_per_kwh=[1.0], export_price_per_kwh=[0.0],\n"
        "            load_kw=[2.0], pv_kw=[0.0])\n"
        "assert optimizer.optimize(p).import_kw == (2.0,), optimizer.optimize(p)\n"
    )
    assert loaded_after_import("functions/optimizer", then=solve) == ["highspy", "numpy"]
