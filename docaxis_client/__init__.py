"""Client library for DMS integrators: signing, verification, gRPC helpers."""
