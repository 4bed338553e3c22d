-- Who did what (docs/security.md, Tokens, roles and actors): the name of the token that
-- announced each image set (NULL for a set produced straight to the topic without one, and
-- for sets recorded before this migration), and every operator action the promoter carried
-- out with the token that sent it.
ALTER TABLE image_sets ADD COLUMN actor text;

CREATE TABLE operator_actions (
    event_id    uuid        PRIMARY KEY,
    pipeline    text        NOT NULL,
    wave        text        NOT NULL,
    action      text        NOT NULL,
    actor       text        NOT NULL,
    -- rollback: where to; result: the promotion and how it ended
    detail      text,
    issued_at   timestamptz NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX operator_actions_wave ON operator_actions (pipeline, wave, recorded_at);
