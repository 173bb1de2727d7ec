"""docaxis test suite: unit, integration (real Postgres and RabbitMQ) and end-to-end."""
