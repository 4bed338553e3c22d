-- promoter: image sets it has seen and the promotions it has started.
CREATE TABLE image_sets (
    pipeline    text        NOT NULL,
    app_sha     text        NOT NULL,
    images      jsonb       NOT NULL,
    event_id    uuid        NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (pipeline, app_sha)
);

CREATE TABLE promotions (
    promotion_id uuid        PRIMARY KEY,
    pipeline     text        NOT NULL,
    wave         text        NOT NULL,
    from_wave    text,
    app_sha      text        NOT NULL,
    kind         text        NOT NULL CHECK (kind IN ('introduce', 'promote', 'rollback')),
    status       text        NOT NULL,
    cfg_sha      text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);

-- Exactly one forward promotion per (pipeline, wave, image set): a redelivered event can
-- never start a second one. Rollbacks may return a wave to a set it ran before.
CREATE UNIQUE INDEX promotions_once
    ON promotions (pipeline, wave, app_sha)
    WHERE kind <> 'rollback';
