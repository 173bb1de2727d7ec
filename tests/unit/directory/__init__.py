"""Unit tests of the agency directory: codes, validation and use cases over fakes."""
