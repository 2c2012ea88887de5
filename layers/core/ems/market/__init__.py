"""The P2P market: orders per 15-minute delivery slot, a uniform-price auction at gate closure,
trades settled into ems.ledger, bilateral transactions and suggested prices."""
