-- git-writer: the outcome of every command, for idempotency across restarts (trailers on the
-- branches are the other source of truth). A batch's rows are written as 'pushing' before
-- its push and turned 'done' after, so a crash between the two is resolved on redelivery by
-- looking at what actually reached the remote.
CREATE TABLE git_command_results (
    command_id  uuid        PRIMARY KEY,
    repo        text        NOT NULL,
    kind        text        NOT NULL,
    outcome     text        NOT NULL,
    state       text        NOT NULL CHECK (state IN ('pushing', 'done')),
    sha         text,
    event       jsonb       NOT NULL,
    finished_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX git_command_results_repo ON git_command_results (repo, finished_at);
