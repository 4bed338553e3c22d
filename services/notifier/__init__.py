"""notifier: webhook promotion strategy and event notifications (docs/architecture.md)."""
