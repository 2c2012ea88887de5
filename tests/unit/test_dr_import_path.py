"""The DR function's import path (what every API cold start loads) stays light: none of the science
stack, the X-Ray SDK or the holidays package, which only an event's measurement imports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HEAVY = {"pandas", "numpy", "sklearn", "scipy", "highspy", "aws_xray_sdk", "holidays"}


def test_importing_the_dr_handler_loads_nothing_heavy() -> None:
    paths = [str(ROOT / "functions" / "dr"), str(ROOT / "layers" / "core")]
    code = (
        f"import json, sys; sys.path[:0] = {paths!r}; import app; "
        f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({sorted(HEAVY)!r}))))"
    )
    env = {**os.environ, "AWS_DEFAULT_REGION": "us-east-1"}
    out = subprocess.run([sys.executable, "-I", "-c", code], env=env, capture_output=True, text=True, check=False,
                         cwd=ROOT / "functions" / "dr")  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
