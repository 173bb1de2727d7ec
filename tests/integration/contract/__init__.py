"""Contract tests: each port against its fake and its real adapter, so fakes cannot drift."""
