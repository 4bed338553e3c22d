-- Retry after eviction (docs/gates.md).
-- git-writer: every commit it evicted from auto, with what its trailers said (pipeline, set,
-- wave, Event-Id, attempt), written once the eviction is pushed. A set whose newest attempt
-- is here may be tried again.
CREATE TABLE evictions (
    repo        text        NOT NULL,
    sha         text        NOT NULL,
    event_id    uuid,
    pipeline    text,
    app_sha     text,
    wave        text,
    attempt     integer     NOT NULL DEFAULT 1,
    evicted_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (repo, sha)
);
CREATE INDEX evictions_set ON evictions (pipeline, app_sha);
CREATE INDEX evictions_event ON evictions (event_id);

-- ingest: the attempts it asked for after an eviction (attempt 1, the announcement itself,
-- is not listed), who asked and how (a re-announcement or ``waveline retry``). One row per
-- attempt number: two requests racing for the same attempt ask once.
CREATE TABLE set_attempts (
    pipeline     text        NOT NULL,
    app_sha      text        NOT NULL,
    attempt      integer     NOT NULL CHECK (attempt >= 2),
    command_id   uuid        NOT NULL,
    actor        text,
    source       text        NOT NULL CHECK (source IN ('announce', 'retry')),
    requested_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (pipeline, app_sha, attempt)
);
