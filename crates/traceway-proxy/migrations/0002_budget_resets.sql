-- When a key's, team's or user's spend next returns to 0 (Unix ms), for those whose
-- `budget_duration` (kept in `extra`) says it should; NULL when it never does.
ALTER TABLE traceway_keys ADD COLUMN budget_reset_at BIGINT;
ALTER TABLE traceway_teams ADD COLUMN budget_reset_at BIGINT;
ALTER TABLE traceway_users ADD COLUMN budget_reset_at BIGINT;
CREATE INDEX traceway_keys_budget_reset ON traceway_keys (budget_reset_at);
CREATE INDEX traceway_teams_budget_reset ON traceway_teams (budget_reset_at);
CREATE INDEX traceway_users_budget_reset ON traceway_users (budget_reset_at);
