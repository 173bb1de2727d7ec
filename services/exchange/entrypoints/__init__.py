"""Exchange entrypoints: gRPC API and the outbox relay."""
