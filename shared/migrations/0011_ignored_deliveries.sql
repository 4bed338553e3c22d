-- ingest: the last delivery per repository and reason that changed nothing (or, for
-- sha_not_on_auto, perhaps nothing), for `waveline status` (docs/security.md, A delivery
-- that changes nothing says why). `repo` is the config key of a known repository, or the
-- forge's owner/name of one Waveline does not know (`known` false). Upserted, so it holds
-- one row per (repository, reason); the status-tracker prunes rows past the retention
-- (repositories Waveline does not know may keep coming and going).
CREATE TABLE ignored_deliveries (
    repo    text        NOT NULL,
    reason  text        NOT NULL,
    known   boolean     NOT NULL,
    event   text        NOT NULL,
    context text,
    sha     text,
    detail  text        NOT NULL,
    at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (repo, reason)
);
CREATE INDEX ignored_deliveries_at ON ignored_deliveries (at);

-- Ingest asks whether a check's commit is a promotion pull request's head (the notifier's
-- auto-merge reads such checks) for every check on a commit not on auto.
CREATE INDEX pull_requests_head ON pull_requests (repo, head_sha);
