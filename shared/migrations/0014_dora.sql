-- DORA metrics (docs/dora.md): the two facts no table kept. The promoter's DORA feed
-- (shared/dora_feed.py) writes both from the topics, in consumer groups of its own.

-- The app commit's time CI sent with an announcement (ImageSetAnnounced.app_committed_at):
-- where lead time for changes starts. The first one sent for a set is kept.
CREATE TABLE dora_app_commits (
    pipeline     text        NOT NULL,
    app_sha      text        NOT NULL,
    committed_at timestamptz NOT NULL,
    PRIMARY KEY (pipeline, app_sha)
);

-- Every wave status the status-tracker published (running a set, failing): wave_status
-- keeps only the latest and wave_runs the first run of each set, so a failure, a recovery
-- or a rollback back to a set run before were nowhere.
CREATE TABLE dora_wave_history (
    event_id uuid        PRIMARY KEY,
    pipeline text        NOT NULL,
    wave     text        NOT NULL,
    state    text        NOT NULL,
    app_sha  text,
    at       timestamptz NOT NULL
);
CREATE INDEX dora_wave_history_at ON dora_wave_history (pipeline, at);
