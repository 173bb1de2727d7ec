"""Unit tests of the exchange: DocumentIds, submission limits and use cases over fakes."""
