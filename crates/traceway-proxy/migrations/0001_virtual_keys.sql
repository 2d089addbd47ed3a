-- Virtual keys, users, teams and organisations. Written once for SQLite and PostgreSQL alike:
-- text ids, JSON as TEXT, times as Unix milliseconds (BIGINT), flags as 0/1 (BIGINT).
-- `extra` holds the LiteLLM fields that are accepted and echoed back but not acted on yet.

CREATE TABLE traceway_organizations (
    organization_id    TEXT NOT NULL PRIMARY KEY,
    organization_alias TEXT,
    models             TEXT NOT NULL,
    metadata           TEXT NOT NULL,
    max_budget         DOUBLE PRECISION,
    spend              DOUBLE PRECISION NOT NULL,
    extra              TEXT NOT NULL,
    created_by         TEXT,
    created_at         BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL
);

CREATE TABLE traceway_teams (
    team_id         TEXT NOT NULL PRIMARY KEY,
    team_alias      TEXT,
    organization_id TEXT,
    models          TEXT NOT NULL,
    metadata        TEXT NOT NULL,
    rpm_limit       BIGINT,
    tpm_limit       BIGINT,
    max_budget      DOUBLE PRECISION,
    spend           DOUBLE PRECISION NOT NULL,
    blocked         BIGINT NOT NULL,
    extra           TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);
CREATE INDEX traceway_teams_organization ON traceway_teams (organization_id);

CREATE TABLE traceway_users (
    user_id    TEXT NOT NULL PRIMARY KEY,
    user_email TEXT,
    user_alias TEXT,
    user_role  TEXT,
    models     TEXT NOT NULL,
    metadata   TEXT NOT NULL,
    max_budget DOUBLE PRECISION,
    spend      DOUBLE PRECISION NOT NULL,
    extra      TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX traceway_users_email ON traceway_users (user_email);

CREATE TABLE traceway_team_members (
    team_id    TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    role       TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (team_id, user_id)
);
CREATE INDEX traceway_team_members_user ON traceway_team_members (user_id);

-- `token` is the SHA-256 hex of the key; the key itself is never stored.
CREATE TABLE traceway_keys (
    token           TEXT NOT NULL PRIMARY KEY,
    key_name        TEXT,
    key_alias       TEXT,
    user_id         TEXT,
    team_id         TEXT,
    organization_id TEXT,
    models          TEXT NOT NULL,
    metadata        TEXT NOT NULL,
    expires         BIGINT,
    rpm_limit       BIGINT,
    tpm_limit       BIGINT,
    max_budget      DOUBLE PRECISION,
    spend           DOUBLE PRECISION NOT NULL,
    blocked         BIGINT NOT NULL,
    extra           TEXT NOT NULL,
    created_by      TEXT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);
-- Aliases are unique (several NULLs are fine in both databases).
CREATE UNIQUE INDEX traceway_keys_alias ON traceway_keys (key_alias);
CREATE INDEX traceway_keys_user ON traceway_keys (user_id);
CREATE INDEX traceway_keys_team ON traceway_keys (team_id);
