"""The event ledger: what was acked, what finished, and what must run again after a crash (see `base`), with
one backend per storage: `memory`, `sqlite`, and `redis` (shared by replicas). `nonstop.backends` opens the
one `NONSTOP_LEDGER` names."""

from nonstop.ledger.base import MAX_RUNS, Entry, Ledger, LedgerError, Recovered

__all__ = ["MAX_RUNS", "Entry", "Ledger", "LedgerError", "Recovered"]
