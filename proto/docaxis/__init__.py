"""Generated protobuf and gRPC code for the docaxis contracts (see proto/)."""
