"""Unit tests of plumbing shared by the services: gRPC error mapping and settings."""
