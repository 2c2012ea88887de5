"""The local cloud's snapshot file: none is no state, one of another version is refused clearly."""

from __future__ import annotations

import json
from pathlib import Path

import moto
import pytest

from ems_local import state


def test_no_snapshot_is_a_fresh_start(tmp_path: Path) -> None:
    assert state.load(tmp_path) is None


def test_a_snapshot_of_another_version_is_refused_with_the_way_out(tmp_path: Path) -> None:
    (tmp_path / state.STATE_FILE).write_text(json.dumps({"format": state.FORMAT, "moto": "0.0.1"}))
    with pytest.raises(state.IncompatibleState, match="--reset") as refused:
        state.load(tmp_path)
    assert "moto 0.0.1" in str(refused.value) and moto.__version__ in str(refused.value)


def test_a_snapshot_of_this_version_loads(tmp_path: Path) -> None:
    saved = {"format": state.FORMAT, "moto": moto.__version__, "kms": {}, "dynamodb": {"t": []}, "s3": {}}
    (tmp_path / state.STATE_FILE).write_text(json.dumps(saved))
    assert state.load(tmp_path) == saved
