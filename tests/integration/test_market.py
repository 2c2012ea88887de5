"""The P2P market against moto: orders through /api/v1/p2p, a slot cleared by an administrator and by the
gate-closure schedule's event, trades and their ledger entries in the template's tables, what each
site's token sees, and one slot's settlement run from several threads at once (settled exactly once).

Sites a, b, c: grid import 0.30, feed-in 0.08 per kWh."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from ems.core.clock import iso_ms
from ems.market import service as market
from ems.market.models import MarketRules, OrderIn
from tests.support.fakes import ListPublisher
from tests.support.inprocess import EVENTS, InProcessApi, load_function, ok, refused
from tests.support.tokens import issue

SLOT_MS = 900_000
# The first slot whose gate (15 minutes before it) is at least 20 minutes away.
SLOT = (int(time.time() * 1000) + 35 * 60_000) // SLOT_MS * SLOT_MS + SLOT_MS
START = iso_ms(SLOT)


@pytest.fixture
def sites(monkeypatch: pytest.MonkeyPatch, api: InProcessApi, admin_token: str) -> dict[str, Any]:
    """Sites a, b, c with their tariffs; a token of each holding only `p2p`; the market function's
    events kept in a list."""
    tokens = {}
    for site in ("a", "b", "c"):
        ok(api.request("POST", "/api/v1/sites", token=admin_token, body={"site_id": site, "name": site}), 201)
        ok(api.request("PUT", "/api/v1/tariffs", token=admin_token, headers={"x-site": site},
                       body={"import_price": 0.30, "export_price": 0.08}))  # fmt: skip
        tokens[site] = issue(["p2p"], sites=[site])
    module = load_function("functions/market/")
    module.stores.cache_clear()
    real, events = module.stores(), ListPublisher()
    monkeypatch.setattr(module, "stores", lambda: replace(real, events=events))
    return {"tokens": tokens, "events": events, "module": module}


def place(api: InProcessApi, token: str, side: str, kwh: float, price: float, **extra: Any) -> Any:
    body = {"side": side, "quantity_kwh": kwh, "price_per_kwh": price, "delivery_start": START, **extra}
    return api.request("POST", "/api/v1/p2p/orders", token=token, body=body)


def get(api: InProcessApi, token: str, path: str, **query: Any) -> Any:
    return ok(api.request("GET", f"/api/v1/p2p/{path}", token=token, query=query))


def test_two_sites_trade_and_a_third_sees_neither(api: InProcessApi, admin_token: str, sites: Any) -> None:
    t = sites["tokens"]
    ok(place(api, t["a"], "buy", 2, 0.25), 201)
    ok(place(api, t["b"], "sell", 1.5, 0.10), 201)
    ok(place(api, t["b"], "sell", 1, 0.28), 201)  # above a's bid: stays unfilled
    depth = get(api, t["c"], "market/status")["slots"]
    assert [(s["delivery_start"], [lvl["quantity_kwh"] for lvl in s["offers"]]) for s in depth] == [
        (START, [1.5, 1.0])
    ]
    # Only an administrator's token clears.
    refused(
        api.request("POST", "/api/v1/p2p/market/clear", token=t["a"], body={"delivery_start": START}),
        403,
        "token",
    )
    report = ok(
        api.request("POST", "/api/v1/p2p/market/clear", token=admin_token, body={"delivery_start": START})
    )
    # a's bid is partly filled (1.5 of 2 kWh): its limit 0.25 is the price.
    assert report["clearing"]["price_per_kwh"] == 0.25
    assert (report["clearing"]["volume_kwh"], report["settled"], report["first_run"]) == (1.5, 1, True)
    [bought] = get(api, t["a"], "transactions")["items"]
    [sold] = get(api, t["b"], "transactions")["items"]
    assert (bought["side"], bought["quantity_kwh"], bought["amount"]) == ("buy", 1.5, -0.375)
    assert (sold["side"], sold["amount"]) == ("sell", 0.375)
    assert "b" not in bought.values() and "a" not in sold.values()
    assert get(api, t["a"], "balance")["balance"] == -0.375
    assert get(api, t["b"], "balance")["balance"] == 0.375
    assert get(api, t["c"], "transactions")["items"] == [] and get(api, t["c"], "balance")["entries"] == []
    # c's token cannot ask for a's
    assert api.request("GET", "/api/v1/p2p/balance", token=t["c"], headers={"x-site": "a"}).status == 403
    statuses = sorted((o["side"], o["status"], o["filled_kwh"]) for o in get(api, t["b"], "orders")["items"])
    assert statuses == [("sell", "filled", 1.5), ("sell", "unfilled", 0.0)]
    # Again: nothing is settled twice, and the event went out once.
    again = ok(
        api.request("POST", "/api/v1/p2p/market/clear", token=admin_token, body={"delivery_start": START})
    )
    assert (again["settled"], again["first_run"]) == (0, False)
    assert get(api, t["a"], "balance")["balance"] == -0.375
    assert [e.detail_type for e in sites["events"].events] == ["MarketCleared"]
    assert sites["events"].events[0].detail["sites"] == ["a", "b"]
    assert get(api, t["c"], "market/status")["last_clearing"]["price_per_kwh"] == 0.25


def test_orders_are_checked_and_idempotent(api: InProcessApi, sites: Any) -> None:
    t = sites["tokens"]["a"]
    assert "import price" in refused(place(api, t, "buy", 1, 0.31), 422, "price_per_kwh")
    assert "feed-in" in refused(place(api, t, "sell", 1, 0.05), 422, "price_per_kwh")
    refused(place(api, t, "buy", 0, 0.2), 422, "quantity_kwh")
    refused(place(api, t, "buy", 1001, 0.2), 422, "quantity_kwh")
    refused(place(api, t, "buy", 1, 0.2, delivery_start=iso_ms(SLOT + 60_000)), 422, "delivery_start")
    refused(place(api, t, "buy", 1, 0.2, delivery_start=iso_ms(SLOT - 2 * 3_600_000)), 422, "delivery_start")
    refused(place(api, t, "hold", 1, 0.2), 422, "side")
    first = ok(place(api, t, "buy", 1, 0.2, client_token="retry-1"), 201)
    again = ok(place(api, t, "buy", 1, 0.2, client_token="retry-1"), 201)
    assert again["order_id"] == first["order_id"]
    refused(place(api, t, "buy", 2, 0.2, client_token="retry-1"), 409, "client_token")
    assert get(api, t, "orders")["count"] == 1
    # cancel: another site's order is not found; one's own is cancelled (twice is fine)
    refused(
        api.request("DELETE", f"/api/v1/p2p/orders/{first['order_id']}", token=sites["tokens"]["b"]),
        404,
        "id",
    )
    assert (
        ok(api.request("DELETE", f"/api/v1/p2p/orders/{first['order_id']}", token=t))["status"] == "cancelled"
    )
    assert (
        ok(api.request("DELETE", f"/api/v1/p2p/orders/{first['order_id']}", token=t))["status"] == "cancelled"
    )
    # pages
    for n in range(3):
        ok(place(api, t, "buy", 1, round(0.1 + n / 100, 2)), 201)
    page = get(api, t, "orders", limit=3)
    rest = get(api, t, "orders", limit=3, next_token=page["next_token"])
    assert (page["count"], rest["count"], rest["next_token"]) == (3, 1, None)
    refused(
        api.request("GET", "/api/v1/p2p/orders", token=t, query={"next_token": "junk"}), 400, "next_token"
    )


def test_the_gate_closure_schedule_clears_the_slots_due(
    api: InProcessApi, sites: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    t = sites["tokens"]
    ok(place(api, t["a"], "buy", 1, 0.2), 201)
    ok(place(api, t["b"], "sell", 1, 0.1), 201)
    gate = datetime.fromtimestamp((SLOT - 15 * 60_000) / 1000 + 1, UTC)  # a second after gate closure
    monkeypatch.setattr(market.clear_due, "__defaults__", (lambda: gate,))
    result = api.invoke("MarketFunction", {"clear": "due"})  # the schedule's Input (template.yaml)
    assert result == {"cleared": [START], "settled": 1, "imbalance": []}
    assert get(api, t["a"], "balance")["balance"] == -0.15


def test_a_bilateral_transaction_counts_once_the_peer_accepts(api: InProcessApi, sites: Any) -> None:
    t = sites["tokens"]
    deal = {"peer": "b", "quantity_kwh": 2, "price_per_kwh": 0.2, "delivery_start": START, "side": "buy"}
    proposal = ok(api.request("POST", "/api/v1/p2p/transactions", token=t["a"], body=deal), 201)
    tid = proposal["transaction_id"]
    assert [p["transaction_id"] for p in get(api, t["b"], "transactions")["proposals"]] == [tid]
    assert get(api, t["c"], "transactions")["proposals"] == []
    assert get(api, t["a"], "balance")["balance"] == 0  # not until the peer accepts
    accept = f"/api/v1/p2p/transactions/{tid}/accept"
    refused(api.request("POST", accept, token=t["a"]), 403, "id")
    refused(api.request("POST", accept, token=t["c"]), 404, "id")
    accepted = ok(api.request("POST", accept, token=t["b"]))
    assert ok(api.request("POST", accept, token=t["b"]))["trade_id"] == accepted["trade_id"]
    assert (get(api, t["a"], "balance")["balance"], get(api, t["b"], "balance")["balance"]) == (-0.4, 0.4)
    [bought] = get(api, t["a"], "transactions")["items"]
    assert (bought["kind"], bought["side"], bought["amount"]) == ("bilateral", "buy", -0.4)
    refused(
        api.request("POST", "/api/v1/p2p/transactions", token=t["a"], body={**deal, "peer": "zz"}),
        422,
        "peer",
    )


def test_prices_suggest_limits_from_the_markups(api: InProcessApi, sites: Any) -> None:
    """No clearing yet: market price (0.30 + 0.08) / 2 = 0.19; buy 0.19 x 0.95 = 0.1805, sell 0.19 x 1.1."""
    t = sites["tokens"]["a"]
    assert get(api, t, "prices")["buy_price_per_kwh"] == 0.19
    put = ok(
        api.request("PUT", "/api/v1/p2p/prices", token=t, body={"buy_percentage": 5, "sell_percentage": 10})
    )
    assert (put["buy_price_per_kwh"], put["sell_price_per_kwh"]) == (0.1805, 0.209)
    refused(api.request("PUT", "/api/v1/p2p/prices", token=t, body={"buy_percentage": 101, "sell_percentage": 1}),
            422, "buy_percentage")  # fmt: skip


# ---------------------------------------------------------------- several settlements at once

BUYERS, SELLERS, RUNS = 6, 5, 4


def test_concurrent_runs_of_one_slot_settle_every_trade_once(api: InProcessApi, sites: Any) -> None:
    """6 buyers each bid 10 x 1 kWh (at 0.20 to 0.25), 5 sellers each offer 12 x 1 kWh at 0.10: every
    order fills (60 kWh each way), 60 trades (transactions of 25, 25 and 10). Nothing is rejected, so
    the interval is [0.10, 0.20] and the price 0.15. Four runs at once: each buyer owes 10 x 0.15 = 1.5,
    each seller is owed 12 x 0.15 = 1.8, once."""
    from ems.ledger.store import LedgerStore
    from ems.market.store import MarketStore
    from ems.registry.store import RegistryStore

    registry = RegistryStore()
    stores = market.Stores(
        book=MarketStore(), sites=registry, tariffs=registry, ledger=LedgerStore(), events=ListPublisher()
    )
    rules = MarketRules()
    names = [f"buyer{i}" for i in range(BUYERS)] + [f"seller{i}" for i in range(SELLERS)]
    admin = issue(["*"])
    for site in names:
        ok(api.request("POST", "/api/v1/sites", token=admin, body={"site_id": site, "name": site}), 201)
        ok(api.request("PUT", "/api/v1/tariffs", token=admin, headers={"x-site": site},
                       body={"import_price": 0.30, "export_price": 0.08}))  # fmt: skip

    def order(site: str, side: str, price: str) -> None:
        body = OrderIn(side=side, quantity_kwh=Decimal(1), price_per_kwh=Decimal(price), delivery_start=START)
        market.place_order(site, body, stores, rules)

    for i in range(BUYERS):
        for _ in range(10):
            order(f"buyer{i}", "buy", f"0.2{i}")
    for i in range(SELLERS):
        for _ in range(12):
            order(f"seller{i}", "sell", "0.10")
    reports: list[Any] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            reports.append(market.clear_slot(START, stores, rules))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(RUNS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sum(r.settled for r in reports) == 60  # every trade written by exactly one run
    assert sum(r.first_run for r in reports) == 1
    assert {r.clearing.price_per_kwh for r in reports} == {Decimal("0.15")}
    ledger = LedgerStore()

    def total(site: str) -> Decimal:
        return sum((e.amount for e in ledger.entries(site, 200, None).items), Decimal(0))

    assert [total(f"buyer{i}") for i in range(BUYERS)] == [Decimal("-1.5")] * BUYERS
    assert [total(f"seller{i}") for i in range(SELLERS)] == [Decimal("1.8")] * SELLERS
    assert sum(ledger.entries(site, 200, None).count for site in names) == 120


# ---------------------------------------------------------------- the sample events


def test_the_sample_events_replay(api: InProcessApi, admin_token: str, sites: Any) -> None:
    """events/http/p2p (their slot moved to an open one), the schedule's event and MarketCleared."""
    ok(api.request("POST", "/api/v1/sites", token=admin_token, body={"site_id": "hq", "name": "HQ"}), 201)
    ok(api.request("PUT", "/api/v1/tariffs", token=admin_token, headers={"x-site": "hq"},
                   body={"import_price": 0.30, "export_price": 0.08}))  # fmt: skip
    order = {"side": "sell", "quantity_kwh": 2.5, "price_per_kwh": 0.14, "delivery_start": START}
    placed = ok(api.replay("http/p2p/orders-place.json", admin_token, body=json.dumps(order)), 201)
    assert placed["site_id"] == "hq" and placed["quantity_kwh"] == 2.5
    assert ok(api.replay("http/p2p/orders-list.json", admin_token))["count"] == 1
    refused(
        api.replay("http/p2p/orders-cancel.json", admin_token), 404, "id"
    )  # the sample's order is not hq's
    assert (
        ok(api.replay("http/p2p/market-status.json", admin_token))["slots"][0]["offers"][0]["quantity_kwh"]
        == 2.5
    )
    cleared = ok(
        api.replay("http/p2p/market-clear.json", admin_token, body=json.dumps({"delivery_start": START}))
    )
    assert (cleared["clearing"]["orders"], cleared["clearing"]["price_per_kwh"]) == (1, None)
    assert ok(api.replay("http/p2p/transactions-list.json", admin_token))["items"] == []
    assert ok(api.replay("http/p2p/balance-get.json", admin_token))["balance"] == 0
    ok(api.request("POST", "/api/v1/sites", token=admin_token, body={"site_id": "school", "name": "S"}), 201)
    ok(api.request("PUT", "/api/v1/tariffs", token=admin_token, headers={"x-site": "school"},
                   body={"import_price": 0.30, "export_price": 0.08}))  # fmt: skip
    deal = {"peer": "school", "quantity_kwh": 3, "price_per_kwh": 0.15, "delivery_start": START}
    proposed = ok(api.replay("http/p2p/transactions-propose.json", admin_token, body=json.dumps(deal)), 201)
    assert (proposed["proposer"], proposed["status"]) == ("hq", "proposed")
    refused(api.replay("http/p2p/transactions-accept.json", admin_token), 404, "id")  # the sample's id
    prices = ok(api.replay("http/p2p/prices-put.json", admin_token))
    assert (prices["buy_percentage"], prices["sell_percentage"]) == (5, 8)
    assert ok(api.replay("http/p2p/prices-get.json", admin_token))["basis"] == "tariff"
    schedule = json.loads((EVENTS / "schedule" / "market-gate-closure.json").read_text())
    assert api.invoke("MarketFunction", schedule) == {"cleared": [], "settled": 0, "imbalance": []}
    pushed = api.invoke(
        "RealtimeFunction", json.loads((EVENTS / "eventbridge" / "market-cleared.json").read_text())
    )
    assert pushed == {"connections": 0, "posts": 0, "failed": 0}


# ---------------------------------------------------------------- imbalance after delivery


def test_imbalance_after_delivery_from_the_grid_meters_rollups(
    api: InProcessApi, admin_token: str, sites: Any
) -> None:
    """A slot three hours ago: a bought 2 kWh from b at 0.15 (orders placed on a clock before its gate).
    b's main meter read -6 kW through the slot (1.5 kWh exported): short 0.5 kWh at the import price
    0.30, -0.15. a's meter read 8 kW (2 kWh imported, as bought): nothing. The schedule's event
    settles it; b's balance is 0.30 - 0.15; b's hourly token sees the trade alone."""
    from ems.ledger.store import LedgerStore
    from ems.market.store import MarketStore
    from ems.registry.store import RegistryStore

    past = (int(time.time() * 1000) - 3 * 3_600_000) // SLOT_MS * SLOT_MS
    before_gate = datetime.fromtimestamp((past - 30 * 60_000) / 1000, UTC)
    registry = RegistryStore()
    stores = market.Stores(
        book=MarketStore(), sites=registry, tariffs=registry, ledger=LedgerStore(), events=ListPublisher()
    )
    for site, side, price in (("a", "buy", "0.20"), ("b", "sell", "0.10")):
        body = OrderIn(side=side, quantity_kwh=Decimal(2), price_per_kwh=Decimal(price), delivery_start=past)
        market.place_order(site, body, stores, MarketRules(), lambda: before_gate)
    market.clear_slot(past, stores, MarketRules(), lambda: before_gate)
    for site, watts in (("a", 8000), ("b", -6000)):
        sensor = {"sensor_id": f"{site}-grid", "name": "grid", "sensor_type": "main_meter"}
        ok(
            api.request("POST", "/api/v1/sensors", token=admin_token, headers={"x-site": site}, body=sensor),
            201,
        )
        readings = [
            {"sensor_id": f"{site}-grid", "ts": past + m * 60_000, "metrics": {"power_w": watts}}
            for m in range(15)
        ]
        ingested = ok(api.request("POST", "/api/v1/data/ingest", token=admin_token, headers={"x-site": site},
                                  body={"readings": readings}))  # fmt: skip
        assert ingested["accepted"] == 15
    assert api.invoke("MarketFunction", {"clear": "due"})["imbalance"] == [iso_ms(past)]
    assert api.invoke("MarketFunction", {"clear": "due"})["imbalance"] == []  # once
    b = get(api, sites["tokens"]["b"], "balance")
    assert (b["balance"], sorted(e["source"] for e in b["entries"])) == (0.15, ["imbalance", "p2p"])
    assert get(api, sites["tokens"]["a"], "balance")["balance"] == -0.30
    hourly = issue(["p2p"], sites=["b"], time_aggregation="1h")
    limited = get(api, hourly, "balance")
    assert (limited["balance"], limited["withheld"], [e["source"] for e in limited["entries"]]) == (
        0.30,
        1,
        ["p2p"],
    )
