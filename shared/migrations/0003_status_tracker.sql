-- status-tracker: latest state per (commit, check context) and per Argo CD target.
CREATE TABLE commit_checks (
    repo        text        NOT NULL,
    sha         text        NOT NULL,
    context     text        NOT NULL,
    state       text        NOT NULL,
    reported_at timestamptz NOT NULL,
    PRIMARY KEY (repo, sha, context)
);

CREATE TABLE target_deploys (
    target      text        PRIMARY KEY,
    revision    text        NOT NULL,
    phase       text        NOT NULL,
    health      text        NOT NULL,
    sync        text        NOT NULL,
    reported_at timestamptz NOT NULL
);
