-- Retention (shared/retention.py, docs/reliability.md): what the pruning job needs to find
-- old rows, and to tell which of them the rules still need, without reading whole tables.
-- The time indexes are on columns set once at insert where a table has one (created_at
-- rather than updated_at), so the services' updates of other columns stay HOT.

-- commit_waves had no time: rows recorded before this migration count from now.
ALTER TABLE commit_waves ADD COLUMN recorded_at timestamptz NOT NULL DEFAULT now();
CREATE INDEX commit_waves_recorded ON commit_waves (recorded_at);

CREATE INDEX git_command_results_finished ON git_command_results (finished_at);
CREATE INDEX image_sets_received ON image_sets (received_at);
CREATE INDEX promotions_created ON promotions (created_at);
-- Has a wave had a later promotion (the newest one per wave is kept; an unfinished one
-- is history once a later one into the same wave is done)?
CREATE INDEX promotions_wave ON promotions (pipeline, wave, created_at);
-- Is an image set or a wave run still named by a promotion (any wave)?
CREATE INDEX promotions_set ON promotions (pipeline, app_sha);
CREATE INDEX wave_runs_newest ON wave_runs (pipeline, wave, since);
CREATE INDEX auto_commits_created ON auto_commits (created_at);
CREATE INDEX commit_checks_reported ON commit_checks (reported_at);
CREATE INDEX deliveries_created ON deliveries (created_at);
CREATE INDEX pull_request_checks_reported ON pull_request_checks (reported_at);
-- The newest pull request per promotion branch is kept.
CREATE INDEX pull_requests_newest ON pull_requests (repo, branch, event_at);
