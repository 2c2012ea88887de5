"""The unit tier runs with sockets blocked (pytest-socket, `--disable-socket` for tests/unit only):
a unit test works on in-memory fakes, so one that reaches for the network, moto's server or a local
port fails at once. Tests that need those belong in tests/integration."""

from __future__ import annotations

from pathlib import Path

import pytest

UNIT = Path(__file__).parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Every test under this folder, whichever folders the run collects; pytest-socket blocks sockets
    # from the test's setup (its fixtures included) to its teardown.
    for item in items:
        if item.path.is_relative_to(UNIT):
            item.add_marker(pytest.mark.disable_socket)
