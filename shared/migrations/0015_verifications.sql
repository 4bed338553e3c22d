-- promoter: wave verifications (docs/gates.md, Verification). One run per verification of
-- a set in a wave; each measurement updates it, so a restarted promoter resumes where it
-- stopped. A replica claims a due run by a lease (lease_token, lease_until): two replicas
-- never measure one run at once, and a run whose replica died is taken over once its
-- lease ends.
CREATE TABLE verification_runs (
    pipeline     text        NOT NULL,
    wave         text        NOT NULL,
    app_sha      text        NOT NULL,
    name         text        NOT NULL,
    kind         text        NOT NULL CHECK (kind IN ('http', 'prometheus')),
    status       text        NOT NULL DEFAULT 'running'
                 CHECK (status IN ('running', 'passed', 'failed', 'cancelled')),
    measurements integer     NOT NULL DEFAULT 0,
    failures     integer     NOT NULL DEFAULT 0,
    -- errors in a row (no usable answer)
    errors       integer     NOT NULL DEFAULT 0,
    reason       text,
    -- the last measurement's detail (what was seen), for status and trace
    last_detail  text,
    next_at      timestamptz NOT NULL,
    lease_token  uuid,
    lease_until  timestamptz,
    started_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz,
    -- the promoter has acted on the ended run (held or rolled back the wave, looked at the
    -- gates again); until then a pass hands it over again, so a crash loses no action
    handled      boolean     NOT NULL DEFAULT false,
    PRIMARY KEY (pipeline, wave, app_sha, name)
);
CREATE INDEX verification_runs_due ON verification_runs (next_at) WHERE status = 'running';
CREATE INDEX verification_runs_unhandled ON verification_runs (next_at)
    WHERE status IN ('passed', 'failed') AND NOT handled;
