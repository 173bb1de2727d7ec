"""Benchmarks (`make bench`): they print figures; tests never assert speed."""
