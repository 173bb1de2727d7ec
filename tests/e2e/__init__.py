"""End-to-end tests: docaxis processes driven over real gRPC."""
