//! The key database: keys (by hash), users, teams, team members and organisations, in SQLite or
//! PostgreSQL through sqlx's `Any` driver with runtime queries. Every statement is written once
//! for both (`$n` placeholders, which SQLite reads too); the schema is in `migrations/`.

use super::KeyInfo;
use super::spend::Scope;
use crate::config::key_store::Database;
use serde_json::{Map, Value};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};
use sqlx::{AnyPool, Row, SqlSafeStr};
use std::time::Duration;

/// A JSON object column.
pub type JsonMap = Map<String, Value>;

/// Why the key database failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be opened (its URL is not repeated: it may hold a password).
    #[error("cannot open the key database ({what}): {source}")]
    Open {
        /// Which database, safe to show.
        what: String,
        /// Why.
        source: sqlx::Error,
    },
    /// The schema could not be brought up to date.
    #[error("cannot migrate the key database: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A unique column already holds the value (`key_alias`, an id).
    #[error("{0} already exists")]
    Duplicate(&'static str),
    /// A query failed.
    #[error("key database error: {0}")]
    Query(#[from] sqlx::Error),
}

/// The migrations, embedded so the binary carries its schema.
#[derive(Debug)]
struct Embedded;

impl<'s> MigrationSource<'s> for Embedded {
    fn resolve(
        self,
    ) -> futures_util::future::BoxFuture<'s, Result<Vec<Migration>, sqlx::error::BoxDynError>> {
        Box::pin(async {
            Ok(vec![
                Migration::new(
                    1,
                    "virtual keys".into(),
                    MigrationType::Simple,
                    include_str!("../../migrations/0001_virtual_keys.sql").into_sql_str(),
                    false,
                ),
                Migration::new(
                    2,
                    "budget resets".into(),
                    MigrationType::Simple,
                    include_str!("../../migrations/0002_budget_resets.sql").into_sql_str(),
                    false,
                ),
            ])
        })
    }
}

/// The statements that move one table's `spend` (and `budget_reset_at`, for the tables that
/// keep one), each `WHERE` the table's id column is the id bound last but one.
struct SpendTable {
    scope: fn(String) -> Scope,
    /// Sets `spend` to `$1` (`$2`: the id).
    set_spend: &'static str,
    /// Adds `$1` to `spend` (`$2`: the id).
    add_spend: &'static str,
    resets: Option<ResetStatements>,
}

/// A table's budget-reset statements.
struct ResetStatements {
    /// Sets `budget_reset_at` to `$1` (`$2`: the id).
    set: &'static str,
    /// Ids, `extra` and `budget_reset_at` of the rows due at `$1`.
    due: &'static str,
    /// Zeroes `spend` and sets `budget_reset_at` to `$1` (`$2`: the id) if it is still `$3`.
    reset: &'static str,
}

const SPEND_TABLES: [SpendTable; 4] = [
    SpendTable {
        scope: Scope::Key,
        set_spend: "UPDATE traceway_keys SET spend = $1 WHERE token = $2",
        add_spend: "UPDATE traceway_keys SET spend = spend + $1 WHERE token = $2",
        resets: Some(ResetStatements {
            set: "UPDATE traceway_keys SET budget_reset_at = $1 WHERE token = $2",
            due: "SELECT token AS id, extra, budget_reset_at FROM traceway_keys \
                  WHERE budget_reset_at <= $1",
            reset: "UPDATE traceway_keys SET spend = 0, budget_reset_at = $1 \
                    WHERE token = $2 AND budget_reset_at = $3",
        }),
    },
    SpendTable {
        scope: Scope::Team,
        set_spend: "UPDATE traceway_teams SET spend = $1 WHERE team_id = $2",
        add_spend: "UPDATE traceway_teams SET spend = spend + $1 WHERE team_id = $2",
        resets: Some(ResetStatements {
            set: "UPDATE traceway_teams SET budget_reset_at = $1 WHERE team_id = $2",
            due: "SELECT team_id AS id, extra, budget_reset_at FROM traceway_teams \
                  WHERE budget_reset_at <= $1",
            reset: "UPDATE traceway_teams SET spend = 0, budget_reset_at = $1 \
                    WHERE team_id = $2 AND budget_reset_at = $3",
        }),
    },
    SpendTable {
        scope: Scope::User,
        set_spend: "UPDATE traceway_users SET spend = $1 WHERE user_id = $2",
        add_spend: "UPDATE traceway_users SET spend = spend + $1 WHERE user_id = $2",
        resets: Some(ResetStatements {
            set: "UPDATE traceway_users SET budget_reset_at = $1 WHERE user_id = $2",
            due: "SELECT user_id AS id, extra, budget_reset_at FROM traceway_users \
                  WHERE budget_reset_at <= $1",
            reset: "UPDATE traceway_users SET spend = 0, budget_reset_at = $1 \
                    WHERE user_id = $2 AND budget_reset_at = $3",
        }),
    },
    // Organisations keep no reset time.
    SpendTable {
        scope: Scope::Org,
        set_spend: "UPDATE traceway_organizations SET spend = $1 WHERE organization_id = $2",
        add_spend: "UPDATE traceway_organizations SET spend = spend + $1 \
                    WHERE organization_id = $2",
        resets: None,
    },
];

/// `scope`'s table and its id.
fn spend_table(scope: &Scope) -> (&'static SpendTable, &str) {
    match scope {
        Scope::Key(id) => (&SPEND_TABLES[0], id),
        Scope::Team(id) => (&SPEND_TABLES[1], id),
        Scope::User(id) => (&SPEND_TABLES[2], id),
        Scope::Org(id) => (&SPEND_TABLES[3], id),
    }
}

/// A stored virtual key.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KeyRow {
    /// SHA-256 hex of the key.
    pub token: String,
    /// Abbreviated key (`sk-...abcd`), for people to recognise it.
    pub key_name: Option<String>,
    /// Unique, user-chosen name.
    pub key_alias: Option<String>,
    /// Owning user.
    pub user_id: Option<String>,
    /// Owning team.
    pub team_id: Option<String>,
    /// Owning organisation.
    pub organization_id: Option<String>,
    /// Models (or patterns) it may call; empty means all.
    pub models: Vec<String>,
    /// Free-form metadata (`turn_off_message_logging` is read from here).
    pub metadata: JsonMap,
    /// Expiry, Unix ms.
    pub expires: Option<i64>,
    /// Requests per minute.
    pub rpm_limit: Option<i64>,
    /// Tokens per minute.
    pub tpm_limit: Option<i64>,
    /// Budget in USD (stored, not enforced yet).
    pub max_budget: Option<f64>,
    /// Spend in USD (not tracked yet).
    pub spend: f64,
    /// Refused on every call.
    pub blocked: bool,
    /// Accepted LiteLLM fields not acted on yet.
    pub extra: JsonMap,
    /// Who created it (`default_user_id` for the master key, else the admin's user id).
    pub created_by: Option<String>,
    /// Unix ms.
    pub created_at: i64,
    /// Unix ms.
    pub updated_at: i64,
    /// When the spend next returns to 0 (`budget_duration`), Unix ms.
    pub budget_reset_at: Option<i64>,
}

/// A stored team.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TeamRow {
    /// Id.
    pub team_id: String,
    /// Display name (not unique).
    pub team_alias: Option<String>,
    /// Owning organisation.
    pub organization_id: Option<String>,
    /// Models its keys may call; empty means all.
    pub models: Vec<String>,
    /// Free-form metadata.
    pub metadata: JsonMap,
    /// Requests per minute across its keys.
    pub rpm_limit: Option<i64>,
    /// Tokens per minute across its keys.
    pub tpm_limit: Option<i64>,
    /// Budget in USD (stored, not enforced yet).
    pub max_budget: Option<f64>,
    /// Spend in USD (not tracked yet).
    pub spend: f64,
    /// Its keys are refused.
    pub blocked: bool,
    /// Accepted LiteLLM fields not acted on yet.
    pub extra: JsonMap,
    /// Unix ms.
    pub created_at: i64,
    /// Unix ms.
    pub updated_at: i64,
    /// When the spend next returns to 0 (`budget_duration`), Unix ms.
    pub budget_reset_at: Option<i64>,
}

/// A stored user.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UserRow {
    /// Id.
    pub user_id: String,
    /// Email.
    pub user_email: Option<String>,
    /// Display name.
    pub user_alias: Option<String>,
    /// LiteLLM role (`proxy_admin`, `internal_user` …).
    pub user_role: Option<String>,
    /// Models (stored; keys carry their own).
    pub models: Vec<String>,
    /// Free-form metadata.
    pub metadata: JsonMap,
    /// Budget in USD (stored, not enforced yet).
    pub max_budget: Option<f64>,
    /// Spend in USD (not tracked yet).
    pub spend: f64,
    /// Accepted LiteLLM fields not acted on yet.
    pub extra: JsonMap,
    /// Unix ms.
    pub created_at: i64,
    /// Unix ms.
    pub updated_at: i64,
    /// When the spend next returns to 0 (`budget_duration`), Unix ms.
    pub budget_reset_at: Option<i64>,
}

/// A stored organisation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OrgRow {
    /// Id.
    pub organization_id: String,
    /// Display name (not unique).
    pub organization_alias: Option<String>,
    /// Models (stored).
    pub models: Vec<String>,
    /// Free-form metadata.
    pub metadata: JsonMap,
    /// Budget in USD (stored, not enforced yet).
    pub max_budget: Option<f64>,
    /// Spend in USD (not tracked yet).
    pub spend: f64,
    /// Accepted LiteLLM fields not acted on yet.
    pub extra: JsonMap,
    /// Who created it.
    pub created_by: Option<String>,
    /// Unix ms.
    pub created_at: i64,
    /// Unix ms.
    pub updated_at: i64,
}

/// One member of a team.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    /// The user.
    pub user_id: String,
    /// `admin` or `user`.
    pub role: String,
    /// The user's email, when known.
    pub user_email: Option<String>,
}

/// Filters of `/key/list`.
#[derive(Debug, Clone, Default)]
pub struct KeyFilter {
    /// Only this user's keys.
    pub user_id: Option<String>,
    /// Only this team's keys.
    pub team_id: Option<String>,
    /// Only the key with this alias.
    pub key_alias: Option<String>,
    /// Only this organisation's keys.
    pub organization_id: Option<String>,
}

fn text(v: &impl serde::Serialize) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".to_owned())
}

fn list(s: Option<String>) -> Vec<String> {
    s.and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or_default()
}

fn map(s: Option<String>) -> JsonMap {
    s.and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or_default()
}

fn unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

/// Whether a unique violation is on `key_alias` (PostgreSQL names the index, SQLite the column)
/// rather than on the key itself.
fn on_alias(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(d) => {
            d.constraint().is_some_and(|c| c.contains("alias")) || d.message().contains("alias")
        }
        _ => false,
    }
}

macro_rules! key_columns {
    () => {
        "token, key_name, key_alias, user_id, team_id, organization_id, models, metadata, expires, \
         rpm_limit, tpm_limit, max_budget, spend, blocked, extra, created_by, created_at, updated_at, \
         budget_reset_at"
    };
}
macro_rules! team_columns {
    () => {
        "team_id, team_alias, organization_id, models, metadata, rpm_limit, tpm_limit, max_budget, \
         spend, blocked, extra, created_at, updated_at, budget_reset_at"
    };
}
macro_rules! user_columns {
    () => {
        "user_id, user_email, user_alias, user_role, models, metadata, max_budget, spend, extra, \
         created_at, updated_at, budget_reset_at"
    };
}
macro_rules! org_columns {
    () => {
        "organization_id, organization_alias, models, metadata, max_budget, spend, extra, \
         created_by, created_at, updated_at"
    };
}

fn key_row(r: &AnyRow) -> Result<KeyRow, sqlx::Error> {
    Ok(KeyRow {
        token: r.try_get("token")?,
        key_name: r.try_get("key_name")?,
        key_alias: r.try_get("key_alias")?,
        user_id: r.try_get("user_id")?,
        team_id: r.try_get("team_id")?,
        organization_id: r.try_get("organization_id")?,
        models: list(r.try_get("models")?),
        metadata: map(r.try_get("metadata")?),
        expires: r.try_get("expires")?,
        rpm_limit: r.try_get("rpm_limit")?,
        tpm_limit: r.try_get("tpm_limit")?,
        max_budget: r.try_get("max_budget")?,
        spend: r.try_get("spend")?,
        blocked: r.try_get::<i64, _>("blocked")? != 0,
        extra: map(r.try_get("extra")?),
        created_by: r.try_get("created_by")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
        budget_reset_at: r.try_get("budget_reset_at")?,
    })
}

fn team_row(r: &AnyRow) -> Result<TeamRow, sqlx::Error> {
    Ok(TeamRow {
        team_id: r.try_get("team_id")?,
        team_alias: r.try_get("team_alias")?,
        organization_id: r.try_get("organization_id")?,
        models: list(r.try_get("models")?),
        metadata: map(r.try_get("metadata")?),
        rpm_limit: r.try_get("rpm_limit")?,
        tpm_limit: r.try_get("tpm_limit")?,
        max_budget: r.try_get("max_budget")?,
        spend: r.try_get("spend")?,
        blocked: r.try_get::<i64, _>("blocked")? != 0,
        extra: map(r.try_get("extra")?),
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
        budget_reset_at: r.try_get("budget_reset_at")?,
    })
}

fn user_row(r: &AnyRow) -> Result<UserRow, sqlx::Error> {
    Ok(UserRow {
        user_id: r.try_get("user_id")?,
        user_email: r.try_get("user_email")?,
        user_alias: r.try_get("user_alias")?,
        user_role: r.try_get("user_role")?,
        models: list(r.try_get("models")?),
        metadata: map(r.try_get("metadata")?),
        max_budget: r.try_get("max_budget")?,
        spend: r.try_get("spend")?,
        extra: map(r.try_get("extra")?),
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
        budget_reset_at: r.try_get("budget_reset_at")?,
    })
}

fn org_row(r: &AnyRow) -> Result<OrgRow, sqlx::Error> {
    Ok(OrgRow {
        organization_id: r.try_get("organization_id")?,
        organization_alias: r.try_get("organization_alias")?,
        models: list(r.try_get("models")?),
        metadata: map(r.try_get("metadata")?),
        max_budget: r.try_get("max_budget")?,
        spend: r.try_get("spend")?,
        extra: map(r.try_get("extra")?),
        created_by: r.try_get("created_by")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

/// The key database.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
}

/// `sqlite:` URLs create their file unless told otherwise, as a newcomer expects.
fn sqlite_url(url: &str) -> String {
    if url.contains(":memory:") || url.contains("mode=") {
        return url.to_owned();
    }
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}mode=rwc")
}

impl Store {
    /// Opens (creating when needed) and migrates the database.
    pub async fn open(db: &Database) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let what = db.describe();
        let open_err = |source| StoreError::Open {
            what: what.clone(),
            source,
        };
        let (url, memory, postgres) = match db {
            Database::Url(u) => {
                let u = u.expose();
                if u.starts_with("sqlite:") {
                    (sqlite_url(u), u.contains(":memory:"), false)
                } else {
                    (u.to_owned(), false, true)
                }
            }
            Database::SqliteFile(p) => (format!("sqlite://{}?mode=rwc", p.display()), false, false),
            Database::InMemory => ("sqlite::memory:".to_owned(), true, false),
        };
        let options = AnyPoolOptions::new().acquire_timeout(Duration::from_secs(10));
        let options = if memory {
            // Each connection to `:memory:` is its own database: keep exactly one, forever.
            options
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
        } else if postgres {
            options.max_connections(10)
        } else {
            // WAL lets readers work while a management call writes.
            options.max_connections(4).after_connect(|conn, _| {
                Box::pin(async move {
                    sqlx::query("PRAGMA journal_mode = WAL")
                        .execute(&mut *conn)
                        .await?;
                    Ok(())
                })
            })
        };
        let pool = options.connect(&url).await.map_err(open_err)?;
        Migrator::new(Embedded).await?.run(&pool).await?;
        Ok(Store { pool })
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }

    // ---- keys ----

    /// Stores a new key; a taken `key_alias` is [`StoreError::Duplicate`].
    pub async fn insert_key(&self, k: &KeyRow) -> Result<(), StoreError> {
        sqlx::query(concat!(
            "INSERT INTO traceway_keys (",
            key_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, \
             $19)"
        ))
        .bind(&k.token)
        .bind(&k.key_name)
        .bind(&k.key_alias)
        .bind(&k.user_id)
        .bind(&k.team_id)
        .bind(&k.organization_id)
        .bind(text(&k.models))
        .bind(text(&k.metadata))
        .bind(k.expires)
        .bind(k.rpm_limit)
        .bind(k.tpm_limit)
        .bind(k.max_budget)
        .bind(k.spend)
        .bind(i64::from(k.blocked))
        .bind(text(&k.extra))
        .bind(&k.created_by)
        .bind(k.created_at)
        .bind(k.updated_at)
        .bind(k.budget_reset_at)
        .execute(&self.pool)
        .await
        .map_err(|e| {
            if unique_violation(&e) {
                StoreError::Duplicate(if on_alias(&e) { "key_alias" } else { "key" })
            } else {
                e.into()
            }
        })?;
        Ok(())
    }

    /// Rewrites a key's every column but its token, creation and spend (which calls add to
    /// meanwhile: [`Store::add_spend`], [`Store::set_spend`]).
    pub async fn update_key(&self, k: &KeyRow) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE traceway_keys SET key_alias = $2, user_id = $3, team_id = $4, \
             organization_id = $5, models = $6, metadata = $7, expires = $8, rpm_limit = $9, \
             tpm_limit = $10, max_budget = $11, blocked = $12, extra = $13, updated_at = $14 \
             WHERE token = $1",
        )
        .bind(&k.token)
        .bind(&k.key_alias)
        .bind(&k.user_id)
        .bind(&k.team_id)
        .bind(&k.organization_id)
        .bind(text(&k.models))
        .bind(text(&k.metadata))
        .bind(k.expires)
        .bind(k.rpm_limit)
        .bind(k.tpm_limit)
        .bind(k.max_budget)
        .bind(i64::from(k.blocked))
        .bind(text(&k.extra))
        .bind(k.updated_at)
        .execute(&self.pool)
        .await
        .map_err(|e| {
            if unique_violation(&e) {
                StoreError::Duplicate("key_alias")
            } else {
                e.into()
            }
        })?;
        Ok(())
    }

    /// A key by its hash.
    pub async fn key(&self, token: &str) -> Result<Option<KeyRow>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            key_columns!(),
            " FROM traceway_keys WHERE token = $1"
        ))
        .bind(token)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(key_row).transpose()?)
    }

    /// The hash of the key with this alias.
    pub async fn token_for_alias(&self, alias: &str) -> Result<Option<String>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT token FROM traceway_keys WHERE key_alias = $1")
                .bind(alias)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// Gives the key `old` (by hash) a new hash and display name in one statement, so that the
    /// old key stops working as the new one starts; false when `old` does not exist.
    pub async fn rekey(
        &self,
        old: &str,
        new: &str,
        key_name: &str,
        updated_at: i64,
    ) -> Result<bool, StoreError> {
        let n = sqlx::query(
            "UPDATE traceway_keys SET token = $1, key_name = $2, updated_at = $3 WHERE token = $4",
        )
        .bind(new)
        .bind(key_name)
        .bind(updated_at)
        .bind(old)
        .execute(&self.pool)
        .await
        .map_err(|e| {
            if unique_violation(&e) {
                StoreError::Duplicate("new_key")
            } else {
                e.into()
            }
        })?
        .rows_affected();
        Ok(n > 0)
    }

    /// Deletes these keys (by hash) in one transaction; returns how many existed.
    pub async fn delete_keys(&self, tokens: &[String]) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await?;
        let mut n = 0;
        for t in tokens {
            n += sqlx::query("DELETE FROM traceway_keys WHERE token = $1")
                .bind(t)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        }
        tx.commit().await?;
        Ok(n)
    }

    /// One page of keys (oldest first) and how many match in all.
    pub async fn list_keys(
        &self,
        f: &KeyFilter,
        offset: i64,
        limit: i64,
    ) -> Result<(Vec<KeyRow>, i64), StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            key_columns!(),
            " FROM traceway_keys WHERE ($1 IS NULL OR user_id = $1) AND ($2 IS NULL OR team_id = $2) \
             AND ($3 IS NULL OR key_alias = $3) AND ($4 IS NULL OR organization_id = $4) \
             ORDER BY created_at, token LIMIT $5 OFFSET $6"
        ))
        .bind(&f.user_id)
        .bind(&f.team_id)
        .bind(&f.key_alias)
        .bind(&f.organization_id)
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.pool)
        .await?;
        let total: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM traceway_keys WHERE ($1 IS NULL OR user_id = $1) \
             AND ($2 IS NULL OR team_id = $2) AND ($3 IS NULL OR key_alias = $3) \
             AND ($4 IS NULL OR organization_id = $4)",
        )
        .bind(&f.user_id)
        .bind(&f.team_id)
        .bind(&f.key_alias)
        .bind(&f.organization_id)
        .fetch_one(&self.pool)
        .await?;
        let keys = rows.iter().map(key_row).collect::<Result<_, _>>()?;
        Ok((keys, total))
    }

    /// What the hot path needs to know about a key: the key with its team and its user's role.
    pub async fn resolve(&self, token: &str) -> Result<Option<KeyInfo>, StoreError> {
        let Some(row) = sqlx::query(
            "SELECT k.token, k.key_alias, k.user_id, k.team_id, k.organization_id, k.models, \
             k.metadata, k.expires, k.rpm_limit, k.tpm_limit, k.blocked, k.max_budget, k.spend, \
             t.team_alias, t.organization_id AS team_organization_id, t.models AS team_models, \
             t.metadata AS team_metadata, t.rpm_limit AS team_rpm_limit, \
             t.tpm_limit AS team_tpm_limit, t.blocked AS team_blocked, \
             t.max_budget AS team_max_budget, t.spend AS team_spend, u.user_role, \
             u.max_budget AS user_max_budget, u.spend AS user_spend, \
             o.max_budget AS org_max_budget, o.spend AS org_spend \
             FROM traceway_keys k \
             LEFT JOIN traceway_teams t ON t.team_id = k.team_id \
             LEFT JOIN traceway_users u ON u.user_id = k.user_id \
             LEFT JOIN traceway_organizations o \
             ON o.organization_id = COALESCE(k.organization_id, t.organization_id) \
             WHERE k.token = $1",
        )
        .bind(token)
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        let r = &row;
        let metadata = map(r.try_get("metadata")?);
        let team_metadata = map(r.try_get("team_metadata")?);
        let team_org: Option<String> = r.try_get("team_organization_id")?;
        let flag = |m: &JsonMap| {
            m.get("turn_off_message_logging")
                .and_then(Value::as_bool)
                .unwrap_or(false)
        };
        Ok(Some(KeyInfo {
            token: r.try_get("token")?,
            key_alias: r.try_get("key_alias")?,
            user_id: r.try_get("user_id")?,
            user_role: r.try_get("user_role")?,
            team_id: r.try_get("team_id")?,
            team_alias: r.try_get("team_alias")?,
            organization_id: r
                .try_get::<Option<String>, _>("organization_id")?
                .or(team_org),
            models: list(r.try_get("models")?),
            team_models: list(r.try_get("team_models")?),
            rpm_limit: r.try_get("rpm_limit")?,
            tpm_limit: r.try_get("tpm_limit")?,
            team_rpm_limit: r.try_get("team_rpm_limit")?,
            team_tpm_limit: r.try_get("team_tpm_limit")?,
            expires: r.try_get("expires")?,
            blocked: r.try_get::<i64, _>("blocked")? != 0
                || r.try_get::<Option<i64>, _>("team_blocked")?.unwrap_or(0) != 0,
            turn_off_message_logging: flag(&metadata) || flag(&team_metadata),
            max_budget: r.try_get("max_budget")?,
            spend: r.try_get("spend")?,
            team_max_budget: r.try_get("team_max_budget")?,
            team_spend: r.try_get::<Option<f64>, _>("team_spend")?.unwrap_or(0.0),
            user_max_budget: r.try_get("user_max_budget")?,
            user_spend: r.try_get::<Option<f64>, _>("user_spend")?.unwrap_or(0.0),
            org_max_budget: r.try_get("org_max_budget")?,
            org_spend: r.try_get::<Option<f64>, _>("org_spend")?.unwrap_or(0.0),
        }))
    }

    /// Sets when a key's, team's or user's spend next returns to 0 (`None`: never).
    /// Organisations keep no reset time; for them this does nothing.
    pub async fn set_budget_reset(&self, scope: &Scope, at: Option<i64>) -> Result<(), StoreError> {
        let (table, id) = spend_table(scope);
        let Some(resets) = &table.resets else {
            return Ok(());
        };
        sqlx::query(resets.set)
            .bind(at)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The keys, teams and users whose budget reset is due at `now`: each with its `extra`
    /// (where `budget_duration` is kept) and the reset time it was due at.
    pub async fn due_budget_resets(
        &self,
        now: i64,
    ) -> Result<Vec<(Scope, JsonMap, i64)>, StoreError> {
        let mut due = Vec::new();
        for table in &SPEND_TABLES {
            let Some(resets) = &table.resets else {
                continue;
            };
            let rows = sqlx::query(resets.due)
                .bind(now)
                .fetch_all(&self.pool)
                .await?;
            for r in &rows {
                let id: String = r.try_get("id")?;
                due.push((
                    (table.scope)(id),
                    map(r.try_get("extra")?),
                    r.try_get("budget_reset_at")?,
                ));
            }
        }
        Ok(due)
    }

    /// Returns `scope`'s spend to 0 and sets its next reset to `next`, if its reset is still
    /// the one due at `due` (a replica resetting it first wins); whether this call did it.
    pub async fn reset_budget(
        &self,
        scope: &Scope,
        due: i64,
        next: Option<i64>,
    ) -> Result<bool, StoreError> {
        let (table, id) = spend_table(scope);
        let Some(resets) = &table.resets else {
            return Ok(false);
        };
        let done = sqlx::query(resets.reset)
            .bind(next)
            .bind(id)
            .bind(due)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Sets one key's, team's, user's or organisation's spend (a management update that names it).
    pub async fn set_spend(&self, scope: &Scope, value: f64) -> Result<(), StoreError> {
        let (table, id) = spend_table(scope);
        sqlx::query(table.set_spend)
            .bind(value)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Adds `amount` to one key's, team's, user's or organisation's spend, in the database
    /// (one statement, so replicas adding at once all count).
    pub async fn add_spend(&self, scope: &Scope, amount: f64) -> Result<(), StoreError> {
        let (table, id) = spend_table(scope);
        sqlx::query(table.add_spend)
            .bind(amount)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    // ---- teams ----

    /// Stores a new team; a taken id is [`StoreError::Duplicate`].
    pub async fn insert_team(&self, t: &TeamRow) -> Result<(), StoreError> {
        sqlx::query(concat!(
            "INSERT INTO traceway_teams (",
            team_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
        ))
        .bind(&t.team_id)
        .bind(&t.team_alias)
        .bind(&t.organization_id)
        .bind(text(&t.models))
        .bind(text(&t.metadata))
        .bind(t.rpm_limit)
        .bind(t.tpm_limit)
        .bind(t.max_budget)
        .bind(t.spend)
        .bind(i64::from(t.blocked))
        .bind(text(&t.extra))
        .bind(t.created_at)
        .bind(t.updated_at)
        .bind(t.budget_reset_at)
        .execute(&self.pool)
        .await
        .map_err(|e| {
            if unique_violation(&e) {
                StoreError::Duplicate("team_id")
            } else {
                e.into()
            }
        })?;
        Ok(())
    }

    /// Rewrites a team's every column but its id, creation and spend (which calls add to).
    pub async fn update_team(&self, t: &TeamRow) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE traceway_teams SET team_alias = $2, organization_id = $3, models = $4, \
             metadata = $5, rpm_limit = $6, tpm_limit = $7, max_budget = $8, blocked = $9, \
             extra = $10, updated_at = $11 WHERE team_id = $1",
        )
        .bind(&t.team_id)
        .bind(&t.team_alias)
        .bind(&t.organization_id)
        .bind(text(&t.models))
        .bind(text(&t.metadata))
        .bind(t.rpm_limit)
        .bind(t.tpm_limit)
        .bind(t.max_budget)
        .bind(i64::from(t.blocked))
        .bind(text(&t.extra))
        .bind(t.updated_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A team by id.
    pub async fn team(&self, team_id: &str) -> Result<Option<TeamRow>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            team_columns!(),
            " FROM traceway_teams WHERE team_id = $1"
        ))
        .bind(team_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(team_row).transpose()?)
    }

    /// Every team, oldest first (of one organisation, when given).
    pub async fn teams(&self, organization_id: Option<&str>) -> Result<Vec<TeamRow>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            team_columns!(),
            " FROM traceway_teams WHERE ($1 IS NULL OR organization_id = $1) ORDER BY created_at, team_id"
        ))
        .bind(organization_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(team_row).collect::<Result<_, _>>()?)
    }

    /// The teams `user_id` is a member of.
    pub async fn teams_of_user(&self, user_id: &str) -> Result<Vec<TeamRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT t.team_id, t.team_alias, t.organization_id, t.models, t.metadata, t.rpm_limit, \
             t.tpm_limit, t.max_budget, t.spend, t.blocked, t.extra, t.created_at, t.updated_at, \
             t.budget_reset_at \
             FROM traceway_teams t JOIN traceway_team_members m ON m.team_id = t.team_id \
             WHERE m.user_id = $1 ORDER BY t.created_at, t.team_id",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(team_row).collect::<Result<_, _>>()?)
    }

    /// Deletes teams with their memberships and their keys; returns the deleted keys' hashes.
    pub async fn delete_teams(&self, team_ids: &[String]) -> Result<Vec<String>, StoreError> {
        self.delete_with_keys(
            team_ids,
            "SELECT token FROM traceway_keys WHERE team_id = $1",
            [
                "DELETE FROM traceway_keys WHERE team_id = $1",
                "DELETE FROM traceway_team_members WHERE team_id = $1",
                "DELETE FROM traceway_teams WHERE team_id = $1",
            ],
        )
        .await
    }

    /// In one transaction, for each id: the hashes `tokens` selects, then the `deletes`.
    async fn delete_with_keys(
        &self,
        ids: &[String],
        tokens: &'static str,
        deletes: [&'static str; 3],
    ) -> Result<Vec<String>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let mut deleted = Vec::new();
        for id in ids {
            let mut t: Vec<String> = sqlx::query_scalar(tokens)
                .bind(id)
                .fetch_all(&mut *tx)
                .await?;
            deleted.append(&mut t);
            for sql in deletes {
                sqlx::query(sql).bind(id).execute(&mut *tx).await?;
            }
        }
        tx.commit().await?;
        Ok(deleted)
    }

    /// Adds (or re-roles) a member.
    pub async fn upsert_member(
        &self,
        team_id: &str,
        user_id: &str,
        role: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO traceway_team_members (team_id, user_id, role, created_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (team_id, user_id) DO UPDATE SET role = excluded.role",
        )
        .bind(team_id)
        .bind(user_id)
        .bind(role)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Removes one member; returns whether it was one.
    pub async fn delete_member(&self, team_id: &str, user_id: &str) -> Result<bool, StoreError> {
        let n =
            sqlx::query("DELETE FROM traceway_team_members WHERE team_id = $1 AND user_id = $2")
                .bind(team_id)
                .bind(user_id)
                .execute(&self.pool)
                .await?
                .rows_affected();
        Ok(n > 0)
    }

    /// Removes every member of a team.
    pub async fn clear_members(&self, team_id: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM traceway_team_members WHERE team_id = $1")
            .bind(team_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// A team's members, in the order they joined.
    pub async fn members(&self, team_id: &str) -> Result<Vec<Member>, StoreError> {
        let rows = sqlx::query(
            "SELECT m.user_id, m.role, u.user_email FROM traceway_team_members m \
             LEFT JOIN traceway_users u ON u.user_id = m.user_id \
             WHERE m.team_id = $1 ORDER BY m.created_at, m.user_id",
        )
        .bind(team_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Member {
                    user_id: r.try_get("user_id")?,
                    role: r.try_get("role")?,
                    user_email: r.try_get("user_email")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    /// Whether `user_id` is a member of `team_id`.
    pub async fn is_member(&self, team_id: &str, user_id: &str) -> Result<bool, StoreError> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM traceway_team_members WHERE team_id = $1 AND user_id = $2",
        )
        .bind(team_id)
        .bind(user_id)
        .fetch_one(&self.pool)
        .await?;
        Ok(n > 0)
    }

    // ---- users ----

    /// A user by id.
    pub async fn user(&self, user_id: &str) -> Result<Option<UserRow>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            user_columns!(),
            " FROM traceway_users WHERE user_id = $1"
        ))
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(user_row).transpose()?)
    }

    /// The first user with this email.
    pub async fn user_by_email(&self, email: &str) -> Result<Option<UserRow>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            user_columns!(),
            " FROM traceway_users WHERE user_email = $1 ORDER BY created_at, user_id"
        ))
        .bind(email)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(user_row).transpose()?)
    }

    /// Stores a new user; an existing id is left as it is (concurrent creators both succeed).
    pub async fn insert_user(&self, u: &UserRow) -> Result<(), StoreError> {
        sqlx::query(concat!(
            "INSERT INTO traceway_users (",
            user_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) ON CONFLICT (user_id) DO NOTHING"
        ))
        .bind(&u.user_id)
        .bind(&u.user_email)
        .bind(&u.user_alias)
        .bind(&u.user_role)
        .bind(text(&u.models))
        .bind(text(&u.metadata))
        .bind(u.max_budget)
        .bind(u.spend)
        .bind(text(&u.extra))
        .bind(u.created_at)
        .bind(u.updated_at)
        .bind(u.budget_reset_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Rewrites a user's every column but its id, creation and spend (which calls add to).
    pub async fn update_user(&self, u: &UserRow) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE traceway_users SET user_email = $2, user_alias = $3, user_role = $4, \
             models = $5, metadata = $6, max_budget = $7, extra = $8, updated_at = $9 \
             WHERE user_id = $1",
        )
        .bind(&u.user_id)
        .bind(&u.user_email)
        .bind(&u.user_alias)
        .bind(&u.user_role)
        .bind(text(&u.models))
        .bind(text(&u.metadata))
        .bind(u.max_budget)
        .bind(text(&u.extra))
        .bind(u.updated_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A page of users (by creation) with how many there are, optionally only `role`'s.
    pub async fn list_users(
        &self,
        role: Option<&str>,
        offset: i64,
        limit: i64,
    ) -> Result<(Vec<UserRow>, i64), StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            user_columns!(),
            " FROM traceway_users WHERE ($1 IS NULL OR user_role = $1) \
             ORDER BY created_at, user_id LIMIT $2 OFFSET $3"
        ))
        .bind(role)
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.pool)
        .await?;
        let total: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM traceway_users WHERE ($1 IS NULL OR user_role = $1)",
        )
        .bind(role)
        .fetch_one(&self.pool)
        .await?;
        Ok((rows.iter().map(user_row).collect::<Result<_, _>>()?, total))
    }

    /// Deletes users with their keys and team memberships; returns the deleted keys' hashes.
    pub async fn delete_users(&self, user_ids: &[String]) -> Result<Vec<String>, StoreError> {
        self.delete_with_keys(
            user_ids,
            "SELECT token FROM traceway_keys WHERE user_id = $1",
            [
                "DELETE FROM traceway_keys WHERE user_id = $1",
                "DELETE FROM traceway_team_members WHERE user_id = $1",
                "DELETE FROM traceway_users WHERE user_id = $1",
            ],
        )
        .await
    }

    // ---- organisations ----

    /// Stores a new organisation; a taken id is [`StoreError::Duplicate`].
    pub async fn insert_org(&self, o: &OrgRow) -> Result<(), StoreError> {
        sqlx::query(concat!(
            "INSERT INTO traceway_organizations (",
            org_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        ))
        .bind(&o.organization_id)
        .bind(&o.organization_alias)
        .bind(text(&o.models))
        .bind(text(&o.metadata))
        .bind(o.max_budget)
        .bind(o.spend)
        .bind(text(&o.extra))
        .bind(&o.created_by)
        .bind(o.created_at)
        .bind(o.updated_at)
        .execute(&self.pool)
        .await
        .map_err(|e| {
            if unique_violation(&e) {
                StoreError::Duplicate("organization_id")
            } else {
                e.into()
            }
        })?;
        Ok(())
    }

    /// An organisation by id.
    pub async fn org(&self, organization_id: &str) -> Result<Option<OrgRow>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            org_columns!(),
            " FROM traceway_organizations WHERE organization_id = $1"
        ))
        .bind(organization_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(org_row).transpose()?)
    }

    /// Rewrites an organisation's alias, models, metadata, budget and extras.
    pub async fn update_org(&self, o: &OrgRow) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE traceway_organizations SET organization_alias = $2, models = $3, \
             metadata = $4, max_budget = $5, extra = $6, updated_at = $7 \
             WHERE organization_id = $1",
        )
        .bind(&o.organization_id)
        .bind(&o.organization_alias)
        .bind(text(&o.models))
        .bind(text(&o.metadata))
        .bind(o.max_budget)
        .bind(text(&o.extra))
        .bind(o.updated_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// How many teams and keys belong to an organisation.
    pub async fn org_members(&self, organization_id: &str) -> Result<(i64, i64), StoreError> {
        let teams: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM traceway_teams WHERE organization_id = $1")
                .bind(organization_id)
                .fetch_one(&self.pool)
                .await?;
        let keys: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM traceway_keys WHERE organization_id = $1")
                .bind(organization_id)
                .fetch_one(&self.pool)
                .await?;
        Ok((teams, keys))
    }

    /// Deletes organisations (none of which has teams or keys left).
    pub async fn delete_orgs(&self, organization_ids: &[String]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        for id in organization_ids {
            sqlx::query("DELETE FROM traceway_organizations WHERE organization_id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Every organisation, oldest first.
    pub async fn orgs(&self) -> Result<Vec<OrgRow>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            org_columns!(),
            " FROM traceway_organizations ORDER BY created_at, organization_id"
        ))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(org_row).collect::<Result<_, _>>()?)
    }
}
