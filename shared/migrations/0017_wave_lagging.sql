-- Quorum waves (shared/quorum.py): the targets a running wave did not count, shown by the
-- status view and the dashboard.
ALTER TABLE wave_status ADD COLUMN IF NOT EXISTS lagging text[] NOT NULL DEFAULT '{}';
