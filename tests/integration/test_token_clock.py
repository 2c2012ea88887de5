"""Tokens are checked against the EMS clock, not the wall clock PyJWT would read: a local cloud
running in 2030 accepts the tokens it minted in 2030 and refuses those that expired by then."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from ems.auth.service import LEEWAY_SECONDS, verify
from ems.auth.store import TokenStore
from ems.core import clock
from ems.core.clock import ScaledClock
from ems.core.errors import Unauthorized
from tests.support import tokens

IN_2030 = int(datetime(2030, 1, 1, tzinfo=UTC).timestamp())
IN_2020 = 1_600_000_000  # 2020-09-13


@pytest.fixture
def on_a_clock(stack: object) -> Iterator[None]:
    yield
    clock.run_on(None)


def run_at(epoch_seconds: int) -> None:
    """This process's clock reads `epoch_seconds` now (at the real speed)."""
    clock.run_on(ScaledClock(datetime.fromtimestamp(epoch_seconds, UTC), time.time()))


def test_a_token_of_2030_is_valid_on_a_2030_clock_and_not_yet_on_the_wall_clock(on_a_clock: None) -> None:
    token = tokens.kms_signed(tokens.claims(iat=IN_2030, nbf=IN_2030, exp=IN_2030 + 3600))
    run_at(IN_2030 + 60)
    assert verify(token, TokenStore()).iat == IN_2030
    clock.run_on(None)
    with pytest.raises(Unauthorized, match="not valid yet"):
        verify(token, TokenStore())


def test_a_token_that_expired_by_the_wall_clock_is_valid_on_a_clock_before_its_exp(on_a_clock: None) -> None:
    token = tokens.kms_signed(tokens.claims(iat=IN_2020, exp=IN_2020 + 3600))
    run_at(IN_2020 + 3600 - 60)
    assert verify(token, TokenStore()).exp == IN_2020 + 3600
    # PyJWT's rule, kept: expired once exp <= now - leeway.
    run_at(IN_2020 + 3600 + LEEWAY_SECONDS + 5)
    with pytest.raises(Unauthorized, match="expired"):
        verify(token, TokenStore())


def test_a_token_minted_on_the_clock_carries_its_time(on_a_clock: None) -> None:
    run_at(IN_2030)
    claims = verify(tokens.issue(["*"], ["*"]), TokenStore())
    assert IN_2030 <= claims.iat < IN_2030 + 60  # minted a few real seconds after the clock read 2030


def test_an_exp_that_is_not_a_number_is_an_invalid_token(on_a_clock: None) -> None:
    token = tokens.kms_signed(tokens.claims(exp="tomorrow"))
    with pytest.raises(Unauthorized, match="invalid token: exp must be a number"):
        verify(token, TokenStore())
