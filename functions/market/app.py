"""P2P market: the routes of API.md "P2P trading" (/api/v1/p2p/...) and the schedule at each slot's
gate closure that clears the slots due and settles the imbalance of slots delivered an hour ago.
`handler` tells the invocations apart by the event's shape."""

from functools import cache
from typing import Any

from ems.auth.http import claims, request_site
from ems.core.errors import Forbidden
from ems.core.events import EventBridgePublisher
from ems.core.http import body, http_app, lambda_handler, query_model
from ems.core.observability import instrumented
from ems.ledger import service as ledger
from ems.ledger.models import Balance
from ems.ledger.store import LedgerStore
from ems.market import service as market
from ems.market.models import (
    ClearingReport,
    ClearRequest,
    MarketRules,
    MarketStatus,
    MarkupsIn,
    Order,
    OrderIn,
    OrderPage,
    OrdersQuery,
    Prices,
    Proposal,
    TradesQuery,
    TransactionIn,
    TransactionsPage,
)
from ems.market.store import MarketStore
from ems.registry.store import RegistryStore
from ems.telemetry.backends import telemetry_store

app = http_app("market")
GATE_CLOSURE = {"clear": "due"}  # the schedule's input (template.yaml)


@cache
def entries() -> LedgerStore:
    return LedgerStore()


@cache
def stores() -> market.Stores:
    registry = RegistryStore()
    return market.Stores(
        book=MarketStore(), sites=registry, tariffs=registry, ledger=entries(), events=EventBridgePublisher(),
        meters=registry, rollups=telemetry_store(),
    )  # fmt: skip


@cache
def rules() -> MarketRules:
    return MarketRules.from_env()


@app.post("/api/v1/p2p/orders")
def place_order() -> tuple[Order, int]:
    return market.place_order(request_site(app), body(app, OrderIn), stores(), rules()), 201


@app.get("/api/v1/p2p/orders")
def list_orders() -> OrderPage:
    return market.list_orders(request_site(app), query_model(app, OrdersQuery), stores().book)


@app.delete("/api/v1/p2p/orders/<order_id>")
def cancel_order(order_id: str) -> Order:
    return market.cancel_order(request_site(app), order_id, stores(), rules())


@app.get("/api/v1/p2p/market/status")
def market_status() -> MarketStatus:
    request_site(app)  # a token of the site's (the status shows no site's identity)
    return market.market_status(stores(), rules())


@app.post("/api/v1/p2p/market/clear")
def clear_slot() -> ClearingReport:
    if not claims(app).has_resource("tokens"):
        raise Forbidden("clearing a slot needs an administrator's token (resource 'tokens')", "token")
    return market.clear_slot(body(app, ClearRequest).delivery_start, stores(), rules())


@app.get("/api/v1/p2p/transactions")
def list_trades() -> TransactionsPage:
    return market.list_trades(request_site(app), query_model(app, TradesQuery), stores().book)


@app.post("/api/v1/p2p/transactions")
def propose_transaction() -> tuple[Proposal, int]:
    return market.propose_transaction(request_site(app), body(app, TransactionIn), stores(), rules()), 201


@app.post("/api/v1/p2p/transactions/<transaction_id>/accept")
def accept_transaction(transaction_id: str) -> Proposal:
    return market.accept_transaction(request_site(app), transaction_id, stores(), rules())


@app.get("/api/v1/p2p/prices")
def prices() -> Prices:
    return market.prices(request_site(app), stores(), rules())


@app.put("/api/v1/p2p/prices")
def put_prices() -> Prices:
    return market.put_markups(request_site(app), body(app, MarkupsIn), stores(), rules())


@app.get("/api/v1/p2p/balance")
def balance() -> Balance:
    q = query_model(app, TradesQuery)
    return ledger.balance(request_site(app), rules().currency, q.limit, q.next_token, claims(app), entries())


http_handler = lambda_handler(app)


@instrumented("market")
def gate_closure_handler(event: Any, context: Any) -> dict[str, Any]:
    reports = market.clear_due(stores(), rules())
    delivered = market.settle_delivered(stores(), rules())
    return {
        "cleared": [r.clearing.delivery_start for r in reports],
        "settled": sum(r.settled for r in reports),
        "imbalance": [r.delivery_start for r in delivered],
    }


def handler(event: dict[str, Any], context: Any) -> Any:
    if event == GATE_CLOSURE:
        return gate_closure_handler(event, context)
    return http_handler(event, context)
