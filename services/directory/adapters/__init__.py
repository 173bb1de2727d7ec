"""Directory adapters: Postgres."""
