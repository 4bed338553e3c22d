-- Manual freezes (docs/gates.md, Freeze windows): `waveline freeze --all|PIPELINE [--wave W]`
-- stops promotions into every wave, a pipeline's waves or one wave until `waveline unfreeze`
-- lifts it. A lifted freeze is kept, with who lifted it and when, as the record of it.
CREATE TABLE freezes (
    freeze_id  uuid        PRIMARY KEY,
    scope      text        NOT NULL CHECK (scope IN ('all', 'pipeline', 'wave')),
    pipeline   text,
    wave       text,
    reason     text        NOT NULL CHECK (reason <> ''),
    actor      text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    lifted_at  timestamptz,
    lifted_by  text,
    CHECK ((scope = 'all') = (pipeline IS NULL)),
    CHECK ((scope = 'wave') = (wave IS NOT NULL)),
    CHECK ((lifted_at IS NULL) = (lifted_by IS NULL))
);
CREATE INDEX freezes_in_force ON freezes (pipeline) WHERE lifted_at IS NULL;

-- Break-glass: an approval that lets one image set into one wave during a freeze, with the
-- operator token's name and the reason given (the approve command's event id is its id).
CREATE TABLE break_glasses (
    break_glass_id uuid        PRIMARY KEY,
    pipeline       text        NOT NULL,
    wave           text        NOT NULL,
    app_sha        text        NOT NULL,
    reason         text        NOT NULL CHECK (reason <> ''),
    actor          text        NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX break_glasses_promotion ON break_glasses (pipeline, wave, app_sha);
