"""Exchange adapters: Postgres, RabbitMQ, the directory client."""
