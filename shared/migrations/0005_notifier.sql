-- notifier: every outbound delivery (webhook promotions and notifications) with its exact
-- body, so a retry — also after a crash — resends the same bytes and the same CloudEvent id;
-- every attempt; and the pull requests it opened for promotions.
CREATE TABLE deliveries (
    delivery_id     uuid        PRIMARY KEY,  -- the CloudEvent id, the same on every retry
    kind            text        NOT NULL CHECK (kind IN ('promotion', 'notification')),
    target          text        NOT NULL,     -- 'pipeline/wave' or 'notification:<name>'
    pipeline        text,
    promotion_id    uuid,
    event_type      text        NOT NULL,
    source_topic    text        NOT NULL,     -- what triggered it (named in a dead letter)
    body            bytea       NOT NULL,
    content_type    text        NOT NULL,
    state           text        NOT NULL DEFAULT 'pending'
                    CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text,
    -- Outbox: the follow-up (promotion 'delivered'/'failed' event, dead letter) is published
    -- after the state is recorded and marked here, so a crash in between republishes it.
    announced       boolean     NOT NULL DEFAULT false,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE state = 'pending';
CREATE INDEX deliveries_unannounced ON deliveries (updated_at)
    WHERE state <> 'pending' AND NOT announced;
CREATE INDEX deliveries_pipeline ON deliveries (pipeline, created_at);

CREATE TABLE delivery_attempts (
    delivery_id uuid             NOT NULL REFERENCES deliveries (delivery_id),
    attempt     integer          NOT NULL,
    status_code integer,
    latency_ms  double precision NOT NULL,
    outcome     text             NOT NULL,
    error       text,
    at          timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (delivery_id, attempt)
);

CREATE TABLE pull_requests (
    repo         text        NOT NULL,
    number       integer     NOT NULL,
    branch       text        NOT NULL,
    base         text        NOT NULL,
    pipeline     text        NOT NULL,
    wave         text        NOT NULL,
    promotion_id uuid        NOT NULL,
    app_sha      text        NOT NULL,
    head_sha     text        NOT NULL,
    url          text        NOT NULL,
    state        text        NOT NULL CHECK (state IN ('open', 'merged', 'closed')),
    merge_sha    text,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (repo, number)
);
-- One open pull request per promotion branch: a newer promotion updates it.
CREATE UNIQUE INDEX pull_requests_open ON pull_requests (repo, branch) WHERE state = 'open';

-- Checks on pull request heads, for auto-merge.
CREATE TABLE pull_request_checks (
    repo        text        NOT NULL,
    sha         text        NOT NULL,
    context     text        NOT NULL,
    state       text        NOT NULL,
    reported_at timestamptz NOT NULL,
    PRIMARY KEY (repo, sha, context)
);
