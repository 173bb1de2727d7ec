"""`python -m services.exchange`: serve the exchange alone (migrations applied first)."""

from __future__ import annotations

import sys

from services.cli import main

if __name__ == "__main__":
    main(["run", "--components", "exchange", *sys.argv[1:]])
