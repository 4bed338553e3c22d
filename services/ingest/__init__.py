"""ingest: the HTTP ingress (DESIGN §3). Authenticates, validates, publishes with acks=all."""
