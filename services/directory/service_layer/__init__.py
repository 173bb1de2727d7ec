"""Directory use cases over ports."""
