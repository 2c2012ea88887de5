"""P2P market: the slot auction's time on large books, and settlement's throughput against moto.

- Clearing: `ems.market.auction.clear` on one slot's book of 1,000, 10,000 and 100,000 random orders
  (half bids, half offers, 0.05 to 0.35 per kWh in 0.0001 steps, 0.1 to 20 kWh, 300 sites), in this
  process; the median of `samples` runs per size (issue 13's target: 100,000 orders under 1 s).
- Settlement: `MarketStore.settle` writing trades with their two ledger entries into the template's
  Market and Ledger tables in the local cloud's moto process (transactions of 25 trades, 100 items),
  then the same trades again, as a re-run of the slot would: every chunk loses its condition, one
  BatchGet finds every trade written, and the re-run writes nothing.
"""

from __future__ import annotations

import os
import random
import time
from decimal import Decimal
from pathlib import Path

from bench.local_aws import LocalAws
from bench.report import machine, median, table

NAME = "market"
COMMAND = "python -m bench market"
SIZES = (1_000, 10_000, 100_000)
SAMPLES = 5
SETTLE_TRADES = 1_000
SLOT_MS = 1_893_456_000_000  # 2030-01-01T00:00Z


def book(n: int, seed: int = 13) -> list[object]:
    from ems.market.auction import BookOrder

    rnd = random.Random(seed)
    return [
        BookOrder(
            f"o{i}",
            f"site{i % 300}",
            "buy" if rnd.random() < 0.5 else "sell",
            rnd.randint(100, 20_000),
            Decimal(rnd.randint(500, 3_500)) / 10_000,
            i,
        )
        for i in range(n)
    ]


def clearing_rows(samples: int) -> list[list[str]]:
    from ems.market.auction import clear

    rows = []
    for n in SIZES:
        orders = book(n)
        wall, cpu, result = [], [], None
        for _ in range(samples):
            started, started_cpu = time.perf_counter(), time.process_time()
            result = clear(orders)  # type: ignore[arg-type]
            wall.append((time.perf_counter() - started) * 1000)
            cpu.append((time.process_time() - started_cpu) * 1000)
        assert result is not None
        rows.append(
            [f"{n:,}", f"{len(result.fills):,}", f"{result.price}", f"{median(wall):.1f}", f"{max(wall):.1f}",
             f"{median(cpu):.1f}"]
        )  # fmt: skip
    return rows


def trades(n: int) -> list[object]:
    from ems.core.clock import iso_ms
    from ems.market.service import trade_legs

    return [
        trade_legs(
            f"{SLOT_MS:013d}-{i:016x}",
            f"buyer{i % 50}",
            f"seller{i % 40}",
            1_000 + i,
            Decimal("0.1234"),
            SLOT_MS,
            (f"b{i}", f"o{i}"),
            "auction",
            "EUR",
            iso_ms(SLOT_MS),
        )
        for i in range(n)
    ]


def settlement_rows(aws: LocalAws, n: int) -> list[list[str]]:
    from ems.ledger.store import LedgerStore
    from ems.market.store import MarketStore

    os.environ.update(aws.functions["MarketFunction"]["Environment"]["Variables"])
    batch = trades(n)
    store, ledger = MarketStore(), LedgerStore()
    rows = []
    for what in ("first run", "re-run (all written already)"):
        started = time.perf_counter()
        written = store.settle(batch, ledger)  # type: ignore[arg-type]
        elapsed = time.perf_counter() - started
        rows.append([what, f"{n:,}", f"{written:,}", f"{elapsed:.2f}", f"{n / elapsed:,.0f}"])
    return rows


def run(aws: LocalAws, scratch: Path, samples: int | None = None) -> str:
    clearing = clearing_rows(samples or SAMPLES)
    settlement = settlement_rows(aws, SETTLE_TRADES)
    return "\n\n".join(
        [
            "## P2P market: clearing one slot, settling its trades",
            f"`{COMMAND}`. {machine()}",
            "### Clearing (ems.market.auction.clear, a pure function; median of "
            f"{samples or SAMPLES} runs)\n\n"
            "Target (issue 13): 100,000 orders in under 1 s.",
            table(["orders", "fills", "price per kWh", "median ms", "max ms", "median CPU ms"], clearing),
            f"Load average when it ran: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (wall time "
            "counts the other processes' share; CPU time is this process's own).",
            "### Settlement (MarketStore.settle against moto: a trade, its two sides and two ledger "
            "entries in transactions of 25 trades)",
            table(["run", "trades", "written", "seconds", "trades/s"], settlement),
        ]
    )
