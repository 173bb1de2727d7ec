"""Plumbing shared by the services: config, errors, logging, transports. No business rules."""
