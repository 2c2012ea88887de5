"""The local cloud's own process leaves moto to its moto process (ems_local.moto_server): importing
the cloud, its AWS endpoint and its state keeper imports none of moto."""

from __future__ import annotations

import subprocess
import sys

from ems_local import state


def test_the_local_cloud_process_imports_no_moto() -> None:
    code = (
        "import sys, ems_local.cloud, ems_local.aws_endpoint, ems_local.state; "
        "print(sorted(m for m in sys.modules if m == 'moto' or m.startswith('moto.')))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_the_snapshot_names_the_installed_moto() -> None:
    import moto  # here, in the test, only

    assert moto.__version__ == state.MOTO_VERSION
