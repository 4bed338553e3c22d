-- git-writer: the outcome of every command it finished, for idempotency across restarts
-- (trailers on the branches are the other source of truth).
CREATE TABLE git_command_results (
    command_id  uuid        PRIMARY KEY,
    repo        text        NOT NULL,
    kind        text        NOT NULL,
    outcome     text        NOT NULL,
    sha         text,
    event       jsonb       NOT NULL,
    finished_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX git_command_results_repo ON git_command_results (repo, finished_at);
