"""REST/JSON API: proto-JSON bodies of the gRPC contracts, problem+json errors, OpenAPI."""
