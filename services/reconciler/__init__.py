"""reconciler: polls the forge and the deployers for what lost webhooks did not say."""
