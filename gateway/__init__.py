"""The edge: REST/JSON, edXML and admin, talking to services through gRPC only."""
