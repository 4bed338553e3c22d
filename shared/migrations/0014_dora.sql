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
-- A status's event id is derived from what it says, so a wave recovering to the set and
-- commit it ran before repeats an id: the time tells the two apart, and a redelivery (the
-- same message) is stored once.
CREATE TABLE dora_wave_history (
    event_id uuid        NOT NULL,
    pipeline text        NOT NULL,
    wave     text        NOT NULL,
    state    text        NOT NULL,
    app_sha  text,
    at       timestamptz NOT NULL,
    PRIMARY KEY (event_id, at)
);
CREATE INDEX dora_wave_history_at ON dora_wave_history (pipeline, at);
