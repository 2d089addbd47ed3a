//! Settings of the virtual-key subsystem: the master key, the key database, the key cache and
//! Redis, read from `general_settings` / `router_settings` (LiteLLM's names) and the environment.
//! URLs carry passwords, so no message here ever repeats one.

use super::ConfigProblem;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;
use traceway::Secret;
use traceway_otel::env::Env;

/// The master key when `general_settings.master_key` is not set (LiteLLM's variable).
pub const LITELLM_MASTER_KEY: &str = "LITELLM_MASTER_KEY";
/// The key database when `general_settings.database_url` is not set: `sqlite://…` or `postgres://…`.
pub const DATABASE_URL: &str = "DATABASE_URL";
/// Redis for shared rate limits and key invalidation, when `router_settings` names none.
pub const REDIS_URL: &str = "REDIS_URL";
/// Redis host when neither `router_settings` nor `REDIS_URL` names one (LiteLLM's variable).
pub const REDIS_HOST: &str = "REDIS_HOST";
/// `true` reaches `REDIS_HOST` over TLS (`rediss://`), as LiteLLM's variable.
pub const REDIS_SSL: &str = "REDIS_SSL";
/// PEM file of the CA certificates that verify a TLS Redis, instead of the system's roots.
pub const REDIS_SSL_CA_CERTS: &str = "REDIS_SSL_CA_CERTS";
/// Redis port that goes with `REDIS_HOST` (default 6379).
pub const REDIS_PORT: &str = "REDIS_PORT";
/// Redis password that goes with `REDIS_HOST`.
pub const REDIS_PASSWORD: &str = "REDIS_PASSWORD";

/// How long a looked-up key is trusted before the database is asked again, unless
/// `general_settings.user_api_key_cache_ttl` says otherwise. Without Redis this bounds how long a
/// deleted or changed key keeps working on the other replicas.
pub const DEFAULT_KEY_CACHE_TTL: Duration = Duration::from_secs(10);
/// How often call costs are written to the stored spend unless
/// `general_settings.proxy_batch_write_at` says otherwise (LiteLLM's default).
pub const DEFAULT_SPEND_WRITE_INTERVAL: Duration = Duration::from_secs(10);
/// The SQLite file created beside the config file when no database URL is given.
pub const DEFAULT_SQLITE_FILE: &str = "traceway.db";

/// Where keys, users, teams and organisations are stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Database {
    /// A `sqlite:` or `postgres://` URL (it may hold a password).
    Url(Secret),
    /// A SQLite file at this path, created when missing.
    SqliteFile(PathBuf),
    /// An in-memory SQLite database: everything is lost when the proxy stops.
    InMemory,
}

impl Database {
    /// A description safe to log: the backend and, for files, the path; never a password.
    pub fn describe(&self) -> String {
        match self {
            Database::Url(u) if is_postgres(u.expose()) => "PostgreSQL".to_owned(),
            Database::Url(_) => "SQLite".to_owned(),
            Database::SqliteFile(p) => format!("SQLite at {}", p.display()),
            Database::InMemory => "SQLite in memory".to_owned(),
        }
    }
}

/// The key store's settings.
#[derive(Debug, Clone)]
pub struct KeyStoreSettings {
    /// `general_settings.database_url`, `DATABASE_URL`, or `None` for the default (a
    /// `traceway.db` beside the config file, or in memory without one).
    pub database: Option<Database>,
    /// Redis URL from `router_settings` or the environment (`rediss://` for TLS).
    pub redis_url: Option<Secret>,
    /// `REDIS_SSL_CA_CERTS`: the CA certificates (PEM) a TLS Redis is verified with, instead of
    /// the system's roots.
    pub redis_ca: Option<std::sync::Arc<[u8]>>,
    /// `general_settings.user_api_key_cache_ttl`.
    pub cache_ttl: Duration,
    /// `general_settings.proxy_batch_write_at`: how often call costs are added to the stored
    /// spend.
    pub spend_write_interval: Duration,
}

impl Default for KeyStoreSettings {
    fn default() -> Self {
        KeyStoreSettings {
            database: None,
            redis_url: None,
            redis_ca: None,
            cache_ttl: DEFAULT_KEY_CACHE_TTL,
            spend_write_interval: DEFAULT_SPEND_WRITE_INTERVAL,
        }
    }
}

impl KeyStoreSettings {
    /// The database to open for a proxy configured from `config_file` (if it came from a file).
    pub fn database_for(&self, config_file: Option<&Path>) -> Database {
        if let Some(db) = &self.database {
            return db.clone();
        }
        match config_file.filter(|p| p.is_file()) {
            Some(file) => {
                let dir = file
                    .parent()
                    .filter(|d| !d.as_os_str().is_empty())
                    .unwrap_or_else(|| Path::new("."));
                Database::SqliteFile(dir.join(DEFAULT_SQLITE_FILE))
            }
            None => Database::InMemory,
        }
    }
}

fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

fn database_url(url: &str, path: &str, problems: &mut Vec<ConfigProblem>) -> Option<Database> {
    if is_postgres(url) || url.starts_with("sqlite:") {
        return Some(Database::Url(Secret::new(url)));
    }
    // The URL itself is not repeated: it usually holds a password.
    problems.push(ConfigProblem {
        path: path.to_owned(),
        message: "must be a postgres://… (or postgresql://…) or sqlite:… URL".into(),
    });
    None
}

fn non_empty(v: Option<String>) -> Option<String> {
    v.filter(|s| !s.trim().is_empty())
}

/// The master key: `general_settings.master_key`, else `LITELLM_MASTER_KEY`; it must start `sk-`.
pub(super) fn master_key(
    configured: Option<String>,
    env: &dyn Env,
    problems: &mut Vec<ConfigProblem>,
) -> Option<Secret> {
    let (key, path) = match non_empty(configured) {
        Some(k) => (k, "general_settings.master_key"),
        None => (non_empty(env.var(LITELLM_MASTER_KEY))?, LITELLM_MASTER_KEY),
    };
    if !key.starts_with("sk-") {
        problems.push(ConfigProblem {
            path: path.into(),
            message: "must start with \"sk-\" (as LiteLLM requires)".into(),
        });
    }
    Some(Secret::new(key))
}

/// Reads the key store's settings from the (interpolated) config and the environment.
pub(super) fn settings(
    root: &Value,
    env: &dyn Env,
    problems: &mut Vec<ConfigProblem>,
) -> KeyStoreSettings {
    let general = root.get("general_settings");
    let router = root.get("router_settings");
    let get = |section: Option<&Value>, key: &str| -> Option<Value> {
        section
            .and_then(|s| s.get(key))
            .filter(|v| !v.is_null())
            .cloned()
    };
    let mut out = KeyStoreSettings::default();

    match get(general, "database_url") {
        Some(Value::String(s)) if !s.trim().is_empty() => {
            out.database = database_url(s.trim(), "general_settings.database_url", problems);
        }
        Some(_) => problems.push(ConfigProblem {
            path: "general_settings.database_url".into(),
            message: "must be a postgres://… or sqlite:… URL".into(),
        }),
        None => {
            if let Some(url) = non_empty(env.var(DATABASE_URL)) {
                out.database = database_url(url.trim(), DATABASE_URL, problems);
            }
        }
    }

    if let Some(v) = get(general, "user_api_key_cache_ttl") {
        match v.as_f64() {
            Some(s) if s.is_finite() && (0.0..=86_400.0).contains(&s) => {
                out.cache_ttl = Duration::from_secs_f64(s);
            }
            _ => problems.push(ConfigProblem {
                path: "general_settings.user_api_key_cache_ttl".into(),
                message: "must be a number of seconds from 0 to 86400".into(),
            }),
        }
    }

    if let Some(v) = get(general, "proxy_batch_write_at") {
        match v.as_f64() {
            Some(s) if s.is_finite() && s > 0.0 && s <= 3_600.0 => {
                out.spend_write_interval = Duration::from_secs_f64(s);
            }
            _ => problems.push(ConfigProblem {
                path: "general_settings.proxy_batch_write_at".into(),
                message: "must be a number of seconds above 0, at most 3600".into(),
            }),
        }
    }

    out.redis_url = redis_url(router, env, problems);
    if let Some(path) = non_empty(env.var(REDIS_SSL_CA_CERTS)) {
        match std::fs::read(path.trim()) {
            Ok(pem) if String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") => {
                out.redis_ca = Some(pem.into());
            }
            Ok(_) => problems.push(ConfigProblem {
                path: REDIS_SSL_CA_CERTS.into(),
                message: format!("\"{}\" holds no PEM certificate", path.trim()),
            }),
            Err(e) => problems.push(ConfigProblem {
                path: REDIS_SSL_CA_CERTS.into(),
                message: format!("\"{}\" cannot be read ({e})", path.trim()),
            }),
        }
    }
    out
}

fn redis_url(
    router: Option<&Value>,
    env: &dyn Env,
    problems: &mut Vec<ConfigProblem>,
) -> Option<Secret> {
    let text = |key: &str, problems: &mut Vec<ConfigProblem>| -> Option<String> {
        match router.and_then(|r| r.get(key)) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => non_empty(Some(s.clone())),
            Some(Value::Number(n)) => Some(n.to_string()),
            Some(_) => {
                problems.push(ConfigProblem {
                    path: format!("router_settings.{key}"),
                    message: "must be a string".into(),
                });
                None
            }
        }
    };
    let checked = |url: String, path: &str, problems: &mut Vec<ConfigProblem>| {
        if ["redis://", "rediss://", "unix://"]
            .iter()
            .any(|scheme| url.starts_with(scheme))
        {
            Some(Secret::new(url))
        } else {
            problems.push(ConfigProblem {
                path: path.to_owned(),
                message: "must be a redis://… URL (rediss://… for TLS)".into(),
            });
            None
        }
    };
    let tls = |key: &str, var: &str, problems: &mut Vec<ConfigProblem>| -> bool {
        let given = match router.and_then(|r| r.get(key)) {
            Some(Value::Bool(b)) => Some(*b),
            None | Some(Value::Null) => None,
            Some(_) => {
                problems.push(ConfigProblem {
                    path: format!("router_settings.{key}"),
                    message: "must be true or false".into(),
                });
                None
            }
        };
        given
            .or_else(|| env.var(var).and_then(|v| crate::config::ui::truthy(&v)))
            .unwrap_or(false)
    };
    if let Some(url) = text("redis_url", problems) {
        return checked(url, "router_settings.redis_url", problems);
    }
    if let Some(host) = text("redis_host", problems) {
        let port = text("redis_port", problems);
        let password = text("redis_password", problems);
        let tls = tls("redis_ssl", REDIS_SSL, problems);
        return from_parts(&host, port.as_deref(), password.as_deref(), tls).or_else(|| {
            problems.push(ConfigProblem {
                path: "router_settings.redis_host".into(),
                message: "with redis_port does not make a valid address".into(),
            });
            None
        });
    }
    if let Some(url) = non_empty(env.var(REDIS_URL)) {
        return checked(url, REDIS_URL, problems);
    }
    if let Some(host) = non_empty(env.var(REDIS_HOST)) {
        let port = non_empty(env.var(REDIS_PORT));
        let password = non_empty(env.var(REDIS_PASSWORD));
        let tls = tls("redis_ssl", REDIS_SSL, problems);
        return from_parts(&host, port.as_deref(), password.as_deref(), tls).or_else(|| {
            problems.push(ConfigProblem {
                path: REDIS_HOST.into(),
                message: format!("with {REDIS_PORT} does not make a valid address"),
            });
            None
        });
    }
    None
}

/// `redis://[:password@]host:port` (`rediss://` with `tls`), the password percent-encoded by
/// the URL type.
fn from_parts(host: &str, port: Option<&str>, password: Option<&str>, tls: bool) -> Option<Secret> {
    let port: u16 = match port {
        Some(p) => p.trim().parse().ok()?,
        None => 6379,
    };
    let scheme = if tls { "rediss" } else { "redis" };
    let mut url = url::Url::parse(&format!("{scheme}://{}:{port}", host.trim())).ok()?;
    if let Some(pw) = password {
        url.set_password(Some(pw)).ok()?;
    }
    Some(Secret::new(String::from(url)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;
    use std::collections::HashMap;

    fn env(vars: &[(&str, &str)]) -> HashMap<String, String> {
        vars.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn config_wins_over_the_environment_and_urls_are_checked() {
        let mut problems = Vec::new();
        let s = settings(
            &json!({"general_settings": {"database_url": "postgres://u:p@db/x", "user_api_key_cache_ttl": 3},
                    "router_settings": {"redis_host": "cache", "redis_port": 6380, "redis_password": "p@ss"}}),
            &env(&[
                (DATABASE_URL, "sqlite://other.db"),
                (REDIS_URL, "redis://env"),
            ]),
            &mut problems,
        );
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(
            s.database,
            Some(Database::Url(Secret::new("postgres://u:p@db/x")))
        );
        assert_eq!(s.cache_ttl, Duration::from_secs(3));
        assert_eq!(s.redis_url.unwrap().expose(), "redis://:p%40ss@cache:6380");

        let s = settings(
            &json!({}),
            &env(&[
                (DATABASE_URL, "sqlite://other.db"),
                (REDIS_URL, "redis://env:1"),
            ]),
            &mut problems,
        );
        assert_eq!(
            s.database,
            Some(Database::Url(Secret::new("sqlite://other.db")))
        );
        assert_eq!(s.redis_url.unwrap().expose(), "redis://env:1");
        assert_eq!(s.cache_ttl, DEFAULT_KEY_CACHE_TTL);

        settings(
            &json!({"general_settings": {"database_url": "mysql://root:hunter2@x", "user_api_key_cache_ttl": "soon"},
                    "router_settings": {"redis_url": "http://x"}}),
            &env(&[]),
            &mut problems,
        );
        let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "general_settings.database_url",
                "general_settings.user_api_key_cache_ttl",
                "router_settings.redis_url"
            ]
        );
        assert!(
            problems.iter().all(|p| !p.message.contains("hunter2")),
            "a URL's password is never repeated"
        );
    }

    #[test]
    fn a_config_file_names_them_without_warnings() {
        let text = "model_list: []\ngeneral_settings:\n  master_key: os.environ/LITELLM_MASTER_KEY\n  database_url: os.environ/DATABASE_URL\n  user_api_key_cache_ttl: 30\nrouter_settings:\n  redis_host: localhost\n  redis_port: 6379\n  redis_password: os.environ/REDIS_PASSWORD\n";
        let c = super::super::ProxyConfig::parse(
            text,
            "config.yaml",
            std::sync::Arc::new(env(&[
                (LITELLM_MASTER_KEY, "sk-m"),
                (DATABASE_URL, "postgres://u:p@db/x"),
                (REDIS_PASSWORD, "pw"),
            ])),
        )
        .unwrap();
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        assert_eq!(c.master_key.unwrap().expose(), "sk-m");
        assert_eq!(c.key_store.cache_ttl, Duration::from_secs(30));
        assert_eq!(c.key_store.database.unwrap().describe(), "PostgreSQL");
        assert_eq!(
            c.key_store.redis_url.unwrap().expose(),
            "redis://:pw@localhost:6379"
        );
    }

    #[test]
    fn the_default_database_sits_beside_a_config_file_or_in_memory() {
        let s = KeyStoreSettings::default();
        assert_eq!(s.database_for(None), Database::InMemory);
        assert_eq!(
            s.database_for(Some(Path::new("/no/such/config.yaml"))),
            Database::InMemory
        );
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
        assert_eq!(
            s.database_for(Some(&manifest)),
            Database::SqliteFile(Path::new(env!("CARGO_MANIFEST_DIR")).join(DEFAULT_SQLITE_FILE))
        );
    }

    #[test]
    fn the_master_key_comes_from_the_config_or_litellm_master_key() {
        let mut problems = Vec::new();
        let e = env(&[(LITELLM_MASTER_KEY, "sk-env")]);
        assert_eq!(
            master_key(Some("sk-conf".into()), &e, &mut problems)
                .unwrap()
                .expose(),
            "sk-conf"
        );
        assert_eq!(
            master_key(None, &e, &mut problems).unwrap().expose(),
            "sk-env"
        );
        assert!(problems.is_empty());
        master_key(None, &env(&[(LITELLM_MASTER_KEY, "nope")]), &mut problems);
        assert_eq!(problems[0].path, LITELLM_MASTER_KEY);
    }

    #[test]
    fn redis_over_tls_is_a_rediss_url_with_an_optional_ca_file() {
        let mut problems = Vec::new();
        let s = settings(
            &json!({"router_settings": {"redis_url": "rediss://:pw@cache:6380"}}),
            &env(&[]),
            &mut problems,
        );
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(s.redis_url.unwrap().expose(), "rediss://:pw@cache:6380");
        let s = settings(
            &json!({"router_settings": {"redis_host": "cache", "redis_ssl": true}}),
            &env(&[]),
            &mut problems,
        );
        assert_eq!(s.redis_url.unwrap().expose(), "rediss://cache:6379");
        let s = settings(
            &json!({}),
            &env(&[(REDIS_HOST, "cache"), (REDIS_SSL, "True")]),
            &mut problems,
        );
        assert_eq!(s.redis_url.unwrap().expose(), "rediss://cache:6379");
        assert!(problems.is_empty(), "{problems:?}");

        let config = std::env::temp_dir().join(format!("traceway-ks-{}.yaml", std::process::id()));
        std::fs::write(&config, "not a certificate").unwrap();
        for (path, says) in [
            ("/nowhere/ca.pem", "cannot be read"),
            (config.to_str().unwrap(), "holds no PEM certificate"),
        ] {
            let mut problems = Vec::new();
            let s = settings(
                &json!({}),
                &env(&[(REDIS_SSL_CA_CERTS, path)]),
                &mut problems,
            );
            assert!(s.redis_ca.is_none());
            let found: Vec<(&str, &str)> = problems
                .iter()
                .map(|p| (p.path.as_str(), p.message.as_str()))
                .collect();
            assert!(
                found
                    .iter()
                    .any(|(p, m)| *p == REDIS_SSL_CA_CERTS && m.contains(says)),
                "{found:?}"
            );
        }
        let _ = std::fs::remove_file(&config);
    }
}
