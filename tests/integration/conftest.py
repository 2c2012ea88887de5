"""Fixtures of the integration tests."""

from __future__ import annotations

import pytest

from tests.support.building import make_building
from tests.support.inprocess import InProcessApi


@pytest.fixture
def building(api: InProcessApi, admin_token: str) -> int:
    """tests/support/building.py's site, sensors and readings, through the HTTP API; returns T0."""
    return make_building(api, admin_token)
