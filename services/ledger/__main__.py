"""`python -m services.ledger`: serve the ledger alone (migrations applied first)."""

from __future__ import annotations

import sys

from services.cli import main

if __name__ == "__main__":
    main(["run", "--components", "ledger", *sys.argv[1:]])
