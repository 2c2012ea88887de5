"""The P2P market in the local cloud started for real, on a clock running 30x (a quarter hour passes in 30
real seconds): two sites place orders over HTTP for a slot, the template's gate-closure schedule
(cron every 15 minutes) clears it, both see their side of the trade and their balances, and a third
site's token sees neither. Waits are bounded; nothing asserts on real elapsed time.

By hand: a bids 2 kWh at 0.25, b offers 1.5 kWh at 0.10: 1.5 kWh trade; a's bid is partly filled, so
its limit 0.25 is the price; a owes 1.5 x 0.25 = 0.375, b is owed 0.375.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from ems.core.clock import iso_ms
from ems_local.clock import Clock
from tests.e2e.conftest import running_local_cloud, wait_for

pytestmark = pytest.mark.e2e

SLOT_MS = 900_000


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    home = tmp_path_factory.mktemp("market")
    with running_local_cloud(home, "--empty", "--clock", "30", served=True) as description:
        yield description


def test_the_gate_closure_schedule_clears_a_slot_that_two_sites_traded_in(stack: dict[str, Any]) -> None:
    admin = {"authorization": f"Bearer {stack['admin_token']}"}
    tokens: dict[str, dict[str, str]] = {}
    with httpx.Client(base_url=stack["http"], timeout=60) as http:
        for site in ("a", "b", "c"):
            assert (
                http.post("/api/v1/sites", headers=admin, json={"site_id": site, "name": site}).status_code
                == 201
            )
            tariff = {"import_price": 0.30, "export_price": 0.08}
            assert (
                http.put("/api/v1/tariffs", headers={**admin, "x-site": site}, json=tariff).status_code == 200
            )
            minted = http.post(
                "/api/v1/tokens/generate", headers=admin,
                json={"name": f"p2p-{site}", "list_of_resources": ["p2p"], "sites": [site]},
            )  # fmt: skip
            assert minted.status_code == 201, minted.text
            tokens[site] = {"authorization": f"Bearer {minted.json()['token']}"}
        assert (
            http.get("/api/v1/p2p/market/status", headers=tokens["c"]).status_code == 200
        )  # warm the function
        # The first slot whose gate is at least 8 simulated minutes (16 real seconds) away.
        now_ms = int(Clock.from_description(stack["clock"]).now().timestamp() * 1000)
        slot = (now_ms + (15 + 8) * 60_000) // SLOT_MS * SLOT_MS + SLOT_MS
        start = iso_ms(slot)
        for site, side, kwh, price in (("a", "buy", 2, 0.25), ("b", "sell", 1.5, 0.10)):
            order = {"side": side, "quantity_kwh": kwh, "price_per_kwh": price, "delivery_start": start}
            placed = http.post("/api/v1/p2p/orders", headers=tokens[site], json=order)
            assert placed.status_code == 201, placed.text
        placed_by = Clock.from_description(stack["clock"]).now()
        assert int(placed_by.timestamp() * 1000) < slot - 15 * 60_000, "the orders went in before the gate"

        def trades(site: str) -> list[Any]:
            return http.get("/api/v1/p2p/transactions", headers=tokens[site]).json()["items"]  # type: ignore[no-any-return]

        # The schedule fires every 15 simulated minutes: at the gate, at most 30 real s (+ the first run) away.
        [bought] = wait_for(lambda: trades("a"), "the gate-closure schedule cleared the slot", seconds=120)
        [sold] = trades("b")
        assert (bought["side"], bought["quantity_kwh"], bought["price_per_kwh"], bought["amount"]) == (
            "buy", 1.5, 0.25, -0.375,
        )  # fmt: skip
        assert (sold["side"], sold["amount"], sold["delivery_start"]) == ("sell", 0.375, start)
        assert "b" not in bought.values() and "a" not in sold.values()  # no counterparty
        assert http.get("/api/v1/p2p/balance", headers=tokens["a"]).json()["balance"] == -0.375
        assert http.get("/api/v1/p2p/balance", headers=tokens["b"]).json()["balance"] == 0.375
        # c's token sees neither: its own lists are empty and a's and b's are refused.
        assert trades("c") == []
        assert http.get("/api/v1/p2p/balance", headers=tokens["c"]).json()["entries"] == []
        for other in ("a", "b"):
            seen = http.get("/api/v1/p2p/transactions", headers={**tokens["c"], "x-site": other})
            assert seen.status_code == 403
        last = http.get("/api/v1/p2p/market/status", headers=tokens["c"]).json()["last_clearing"]
        assert (last["delivery_start"], last["price_per_kwh"], last["volume_kwh"]) == (start, 0.25, 1.5)
