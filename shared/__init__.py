"""Cross-service code: config, message models, Kafka and Postgres helpers, the git engine."""
