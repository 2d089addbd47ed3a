//! Set-up shared by the virtual-key suites: a database of either kind per test, Redis, a proxy
//! with a master key, and an admin client speaking the management API.
//!
//! PostgreSQL and Redis come from `TRACEWAY_TEST_POSTGRES_URL` / `TRACEWAY_TEST_REDIS_URL`
//! (`eval "$(.ci/services)"` starts both and prints them); unset, the URLs `.ci/services`
//! creates are tried. A server that cannot be reached fails the test with how to start it —
//! the suites never skip.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value, json};
use sqlx::Connection as _;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use traceway_proxy::app::{App, RunningProxy};
use traceway_proxy::config::ProxyConfig;

/// The master key of every test proxy.
pub const MASTER: &str = "sk-master-keys-test";
/// Where the PostgreSQL test server is.
pub const POSTGRES_VAR: &str = "TRACEWAY_TEST_POSTGRES_URL";
/// Where the Redis test server is.
pub const REDIS_VAR: &str = "TRACEWAY_TEST_REDIS_URL";
const DEFAULT_POSTGRES: &str = "postgres://traceway:traceway@127.0.0.1:5432/traceway";
const DEFAULT_REDIS: &str = "redis://127.0.0.1:6379";
const HOW: &str = "start PostgreSQL and Redis with `eval \"$(.ci/services)\"` (Debian/Ubuntu, as root), or point TRACEWAY_TEST_POSTGRES_URL / TRACEWAY_TEST_REDIS_URL at servers of your own";

/// Which database a suite runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    /// A SQLite file of its own.
    Sqlite,
    /// A schema of its own in the test PostgreSQL database.
    Postgres,
}

/// A fresh, empty database for one test.
pub struct TestDb {
    /// Its URL (for `DATABASE_URL` or `general_settings.database_url`).
    pub url: String,
    file: Option<std::path::PathBuf>,
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some(f) = &self.file {
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", f.display()));
            }
        }
    }
}

fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The PostgreSQL server's URL.
pub fn postgres_url() -> String {
    std::env::var(POSTGRES_VAR).unwrap_or_else(|_| DEFAULT_POSTGRES.to_owned())
}

/// The Redis server's URL, checked to answer.
pub async fn redis_url() -> String {
    let url = std::env::var(REDIS_VAR).unwrap_or_else(|_| DEFAULT_REDIS.to_owned());
    let client = redis::Client::open(url.as_str())
        .unwrap_or_else(|e| panic!("{REDIS_VAR}={url} is not a Redis URL ({e}); {HOW}"));
    let ok = tokio::time::timeout(Duration::from_secs(5), async {
        let mut c = client.get_multiplexed_async_connection().await?;
        redis::cmd("PING").query_async::<String>(&mut c).await
    })
    .await;
    match ok {
        Ok(Ok(_)) => url,
        Ok(Err(e)) => panic!("Redis at {url} cannot be reached ({e}); {HOW}"),
        Err(_) => panic!("Redis at {url} does not answer; {HOW}"),
    }
}

/// A new, empty database of kind `db`.
pub async fn database(db: Db) -> TestDb {
    let id = uuid::Uuid::new_v4().simple().to_string();
    match db {
        Db::Sqlite => {
            let path = std::env::temp_dir().join(format!("traceway-keys-{id}.db"));
            TestDb {
                url: format!("sqlite://{}", path.display()),
                file: Some(path),
            }
        }
        Db::Postgres => {
            let base = postgres_url();
            let mut conn = tokio::time::timeout(
                Duration::from_secs(10),
                sqlx::postgres::PgConnection::connect(&base),
            )
            .await
            .unwrap_or_else(|_| panic!("PostgreSQL at {POSTGRES_VAR} does not answer; {HOW}"))
            .unwrap_or_else(|e| panic!("PostgreSQL cannot be reached ({e}); {HOW}"));
            // Schemas of earlier runs (named after their start time) are dropped after an hour.
            let old: Vec<String> = sqlx::query_scalar(
                "SELECT nspname::text FROM pg_namespace WHERE nspname LIKE 'twtest\\_%'",
            )
            .fetch_all(&mut conn)
            .await
            .unwrap();
            let now = unix_secs();
            for name in old {
                let started = name
                    .split('_')
                    .nth(1)
                    .and_then(|s| s.parse::<u64>().ok())
                    .unwrap_or(0);
                if now.saturating_sub(started) > 3600 {
                    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DROP SCHEMA IF EXISTS {name} CASCADE"
                    )))
                    .execute(&mut conn)
                    .await;
                }
            }
            let schema = format!("twtest_{}_{}", now, &id[..12]);
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
                .execute(&mut conn)
                .await
                .unwrap();
            let sep = if base.contains('?') { '&' } else { '?' };
            TestDb {
                url: format!("{base}{sep}options=-c%20search_path%3D{schema}"),
                file: None,
            }
        }
    }
}

/// Config text: `models` (YAML `model_list` entries) under a master key, plus `extra` YAML.
pub fn config(models: &str, extra: &str) -> String {
    format!("model_list:\n{models}general_settings:\n  master_key: {MASTER}\n{extra}")
}

/// Two mock groups: `m` (`mock/m`) and `m2` (`mock/m2`).
pub const MOCK_MODELS: &str = "  - model_name: m\n    litellm_params:\n      model: mock/m\n  - model_name: m2\n    litellm_params:\n      model: mock/m2\n";

/// A proxy from `config` with `vars` as its whole environment (add `DATABASE_URL` there).
pub async fn proxy(config: &str, vars: &[(&str, &str)]) -> RunningProxy {
    traceway::client::install_crypto_provider();
    let env: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let cfg = ProxyConfig::parse(config, "test.yaml", Arc::new(env)).expect("test config is valid");
    App::build(cfg, false)
        .expect("proxy builds")
        .spawn("127.0.0.1:0")
        .await
        .expect("proxy starts and opens its database")
}

/// A proxy serving [`MOCK_MODELS`] on `db`.
pub async fn mock_proxy(db: &TestDb) -> RunningProxy {
    proxy(&config(MOCK_MODELS, ""), &[("DATABASE_URL", &db.url)]).await
}

/// A client of one proxy, calling with one key.
#[derive(Clone)]
pub struct Api {
    /// `http://addr`.
    pub base: String,
    /// The key sent as `Authorization: Bearer`.
    pub key: String,
    http: reqwest::Client,
}

/// A status and a JSON body.
pub type Answer = (u16, Value);

impl Api {
    /// Calls `base` as `key`.
    pub fn new(base: &str, key: &str) -> Self {
        traceway::client::install_crypto_provider();
        Api {
            base: base.to_owned(),
            key: key.to_owned(),
            http: reqwest::Client::new(),
        }
    }

    /// The same proxy, as another key.
    pub fn as_key(&self, key: &str) -> Self {
        Api::new(&self.base, key)
    }

    async fn answer(resp: reqwest::Response) -> Answer {
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, body)
    }

    /// `POST path` with a JSON body.
    pub async fn post(&self, path: &str, body: Value) -> Answer {
        self.send(reqwest::Method::POST, path, body).await
    }

    /// `method path` with a JSON body (LiteLLM's PATCH and DELETE routes).
    pub async fn send(&self, method: reqwest::Method, path: &str, body: Value) -> Answer {
        Self::answer(
            self.http
                .request(method, format!("{}{path}", self.base))
                .bearer_auth(&self.key)
                .json(&body)
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    /// `POST path` with a raw body.
    pub async fn post_raw(&self, path: &str, body: &'static str) -> Answer {
        Self::answer(
            self.http
                .post(format!("{}{path}", self.base))
                .bearer_auth(&self.key)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> Answer {
        Self::answer(
            self.http
                .get(format!("{}{path}", self.base))
                .bearer_auth(&self.key)
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    /// A chat call to `model`; the whole response.
    pub async fn chat_response(&self, model: &str) -> reqwest::Response {
        self.http
            .post(format!("{}/v1/chat/completions", self.base))
            .bearer_auth(&self.key)
            .json(&json!({"model": model, "messages": [{"role": "user", "content": "Hello"}]}))
            .send()
            .await
            .unwrap()
    }

    /// A chat call to `model`.
    pub async fn chat(&self, model: &str) -> Answer {
        Self::answer(self.chat_response(model).await).await
    }

    /// `POST /key/generate`; panics unless it succeeds. Returns the body.
    pub async fn generate(&self, body: Value) -> Value {
        let (s, b) = self.post("/key/generate", body).await;
        assert_eq!(s, 200, "key/generate: {b}");
        b
    }

    /// A new key with `body`'s settings; returns the key itself.
    pub async fn key(&self, body: Value) -> String {
        self.generate(body).await["key"]
            .as_str()
            .unwrap()
            .to_owned()
    }
}

/// Asserts an OpenAI error body with `status`, and returns the `error` object.
pub fn error(answer: &Answer, status: u16) -> &Value {
    assert_eq!(answer.0, status, "{}", answer.1);
    let e = &answer.1["error"];
    for field in ["message", "type", "param", "code"] {
        assert!(
            e.get(field).is_some(),
            "error body lacks {field}: {}",
            answer.1
        );
    }
    e
}

/// Waits, when needed, so a test about per-minute limits does not straddle a minute boundary.
pub async fn clear_of_minute_boundary() {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let left = 60.0 - secs % 60.0;
    if left < 8.0 {
        tokio::time::sleep(Duration::from_secs_f64(left + 0.2)).await;
    }
}

/// `sha256(key)` hex, as LiteLLM's `hash_token`.
pub fn hash(key: &str) -> String {
    traceway_proxy::keys::hash_key(key)
}

/// One test per database for each listed `async fn name(db: Db)`.
#[macro_export]
macro_rules! on_both_databases {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::keys_common::Db::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::keys_common::Db::Postgres).await
                }
            )*
        }
    };
}
