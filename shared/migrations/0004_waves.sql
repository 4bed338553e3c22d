-- status-tracker: Waveline's commits on auto and their verdict, what every wave holds at
-- each commit Waveline made, and the last published state of each wave.
CREATE TABLE auto_commits (
    repo        text        NOT NULL,
    sha         text        NOT NULL,
    pipeline    text,
    wave        text,
    app_sha     text,
    state       text        NOT NULL DEFAULT 'pending'
                CHECK (state IN ('pending', 'green', 'red', 'replaced')),
    replaced_by text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (repo, sha)
);

CREATE TABLE commit_waves (
    repo  text  NOT NULL,
    sha   text  NOT NULL,
    waves jsonb NOT NULL,
    PRIMARY KEY (repo, sha)
);

CREATE TABLE wave_status (
    pipeline text        NOT NULL,
    wave     text        NOT NULL,
    state    text        NOT NULL,
    app_sha  text,
    cfg_sha  text,
    since    timestamptz NOT NULL,
    PRIMARY KEY (pipeline, wave)
);

-- promoter: what each wave has run (for bake time and rollback), and the operator gates.
CREATE TABLE wave_runs (
    pipeline text        NOT NULL,
    wave     text        NOT NULL,
    app_sha  text        NOT NULL,
    cfg_sha  text        NOT NULL,
    since    timestamptz NOT NULL,
    PRIMARY KEY (pipeline, wave, app_sha)
);

CREATE TABLE wave_gates (
    pipeline text    NOT NULL,
    wave     text    NOT NULL,
    held     boolean NOT NULL DEFAULT false,
    PRIMARY KEY (pipeline, wave)
);

CREATE TABLE approvals (
    promotion_id uuid        PRIMARY KEY REFERENCES promotions (promotion_id),
    actor        text        NOT NULL,
    approved_at  timestamptz NOT NULL DEFAULT now()
);
