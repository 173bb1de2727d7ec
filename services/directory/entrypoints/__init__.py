"""Directory entrypoints: gRPC."""
