-- promoter: how each promotion travels (commit, pull-request, webhook), and what came back.
ALTER TABLE promotions
    ADD COLUMN strategy text NOT NULL DEFAULT 'commit'
        CHECK (strategy IN ('commit', 'pull-request', 'webhook')),
    ADD COLUMN url      text,
    ADD COLUMN detail   text;
