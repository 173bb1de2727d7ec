"""Integration tests against real Postgres and RabbitMQ started by the suite."""
