-- notifier: when the git event behind a pull request's current head was made, so a late
-- redelivery of an older promotion cannot take the pull request back.
ALTER TABLE pull_requests ADD COLUMN event_at timestamptz NOT NULL DEFAULT '-infinity';
CREATE INDEX pull_requests_branch ON pull_requests (repo, branch);
