"""One package per service: ingest, git_writer, status_tracker, promoter, notifier."""
