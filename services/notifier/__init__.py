"""notifier: webhook promotion strategy and event notifications (DESIGN §1)."""
