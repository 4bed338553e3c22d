-- Rollback quarantines (docs/gates.md): a set rolled back out of a wave is quarantined for
-- its pipeline; the promoter never promotes it again and ingest refuses its
-- re-announcement (409) until it is lifted (`waveline unquarantine`, or an announcement
-- with force: true). Written by the promoter, lifted by ingest.
CREATE TABLE quarantined_sets (
    pipeline   text        NOT NULL,
    app_sha    text        NOT NULL,
    wave       text        NOT NULL,
    actor      text        NOT NULL,
    reason     text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    lifted_at  timestamptz,
    lifted_by  text,
    PRIMARY KEY (pipeline, app_sha),
    CHECK ((lifted_at IS NULL) = (lifted_by IS NULL))
);
