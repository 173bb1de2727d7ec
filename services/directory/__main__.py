"""`python -m services.directory`: serve the directory alone (migrations applied first)."""

from __future__ import annotations

import sys

from services.cli import main

if __name__ == "__main__":
    main(["run", "--components", "directory", *sys.argv[1:]])
