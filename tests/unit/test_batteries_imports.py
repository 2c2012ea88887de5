"""The optimiser's numerical libraries stay on its own function's path: importing the batteries' API
function loads none of them, the optimiser's function does load numpy (a check that can fail both
ways). Run in a fresh interpreter, since this test process may have imported them already."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from ems_local.template import ROOT

HEAVY = ("numpy", "highspy", "pandas", "scipy", "sklearn", "aws_xray_sdk")


def loaded_after_import(code_uri: str) -> list[str]:
    script = (
        "import importlib.util, json, sys\n"
        f"sys.path.insert(0, {str(ROOT / 'layers' / 'core')!r})\n"
        f"spec = importlib.util.spec_from_file_location('app', {str(ROOT / code_uri / 'app.py')!r})\n"
        "module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)\n"
        f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("code_uri", "expected"), [("functions/batteries", []), ("functions/optimizer", ["numpy"])]
)
def test_only_the_optimiser_loads_numpy(code_uri: str, expected: list[str]) -> None:
    assert loaded_after_import(code_uri) == expected
