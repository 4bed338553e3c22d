-- status-tracker: the targets running one of an alignment's commits (watched moved outside
-- Waveline, e.g. a merged pull request) are looked up by revision; without this index each
-- alignment read all of target_deploys (one row per Argo CD target: 10,000 for a fleet).
CREATE INDEX IF NOT EXISTS target_deploys_revision ON target_deploys (revision);
