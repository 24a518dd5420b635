"""PostgreSQL for several replicas: connecting (fail fast, clear messages), schema migrations, the change listener."""
