"""ingest: the HTTP ingress (docs/architecture.md, HTTP API). Authenticates, validates,
publishes with acks=all."""
