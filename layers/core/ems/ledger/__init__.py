"""The ledger: money owed to and by sites, as entries keyed by what caused them; balances are their sums."""
