-- promoter: the promotions waiting at a gate are looked for by status, of every pipeline on
-- each gate tick; without this index each tick read all of promotions (a row per set and
-- wave, tens of thousands for a fleet's pipelines until retention removes them).
CREATE INDEX IF NOT EXISTS promotions_status ON promotions (status);
