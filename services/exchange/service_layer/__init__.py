"""Exchange use cases over ports."""
