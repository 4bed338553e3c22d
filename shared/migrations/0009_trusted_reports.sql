-- Deploy reports, checks and approvals checked against what Waveline knows
-- (docs/security.md, "Deploy reports, checks, approvals").

-- status-tracker: the commits Waveline saw the watched branch point at (fast-forwards it
-- made, the tip it found before one and after an alignment). ``position`` orders them:
-- a later tip has a higher position, whatever order Argo CD's reports arrive in.
CREATE TABLE watched_commits (
    repo        text        NOT NULL,
    sha         text        NOT NULL,
    position    bigint      GENERATED ALWAYS AS IDENTITY,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (repo, sha)
);
CREATE INDEX watched_commits_recorded ON watched_commits (recorded_at);

-- The position of the revision each target last reported (NULL: reported before this).
ALTER TABLE target_deploys ADD COLUMN position bigint;

-- Reports about a revision not (yet) known on watched: Argo CD may deploy a fast-forward
-- before its git event reaches the status-tracker. Applied when the commit is recorded
-- within WAVELINE_DEPLOY_HOLD_S; after that dropped, logged and counted as ignored.
CREATE TABLE held_deploys (
    target      text        NOT NULL,
    revision    text        NOT NULL,
    phase       text        NOT NULL,
    health      text        NOT NULL,
    sync        text        NOT NULL,
    reported_at timestamptz NOT NULL,
    held_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (target, revision)
);
CREATE INDEX held_deploys_revision ON held_deploys (revision);
CREATE INDEX held_deploys_held ON held_deploys (held_at);

-- ingest: X-GitHub-Delivery ids already handled (a redelivery is answered 200, no-op).
CREATE TABLE github_deliveries (
    delivery_id text        PRIMARY KEY,
    received_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX github_deliveries_received ON github_deliveries (received_at);

-- promoter: the hold in force (which command, what set waited) and when the gate last
-- changed, so a replayed hold or release cannot undo a later one.
ALTER TABLE wave_gates
    ADD COLUMN hold_id      uuid,
    ADD COLUMN held_app_sha text,
    ADD COLUMN changed_at   timestamptz;
-- A hold in force before this migration gets an id, so a release can name it.
UPDATE wave_gates SET hold_id = gen_random_uuid() WHERE held AND hold_id IS NULL;

-- promoter: the highest watched position of a wave status applied per wave; a status
-- about an earlier position (a stale or replayed one) is ignored.
CREATE TABLE wave_positions (
    pipeline     text   NOT NULL,
    wave         text   NOT NULL,
    cfg_position bigint NOT NULL,
    PRIMARY KEY (pipeline, wave)
);
