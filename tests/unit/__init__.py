"""Unit tests: pure domain and handlers with hand-written fakes."""
