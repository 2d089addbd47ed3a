//! `--auth`: what checking a caller's key costs. The real `traceway` binary with tracing off
//! (no callbacks, `TRACEWAY_UI_TRACES=0`), one `openai/` deployment on the mock upstream, run
//! open (no master key), behind a master key, and called with a virtual key from
//! `/key/generate` on a SQLite or PostgreSQL key store (and PostgreSQL plus Redis, the key
//! carrying an `rpm_limit` so that the shared rate limiter runs on every request).
//!
//! Each virtual key is made with the master key, then one request puts it in the gateway's key
//! cache, and another one right before every max-throughput round puts it back if it expired
//! (the cache trusts an entry for `user_api_key_cache_ttl`, 10 s by default, and rounds of the
//! other cases run in between), so that the rounds measure the cached path; an entry still
//! expires 10 s after it was read, so a round can hold one re-read, as a hot key's does.

use crate::load::{self, Kind, Target};
use crate::{Case, Cli, process, report, upstream};
use anyhow::Context as _;
use bytes::Bytes;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The master key of every case that has one.
pub const MASTER_KEY: &str = "sk-bench-master-7d3e9f1a2b4c6d8e0f1a3b5c7d9e1f2a";

/// The `rpm_limit` of the key in the Redis case: large enough never to refuse a request.
pub const LARGE_RPM_LIMIT: i64 = 1_000_000_000;

/// Where a case keeps its keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Store {
    /// No master key, hence no key store.
    None,
    /// A SQLite file of its own in the work directory.
    Sqlite,
    /// A schema of its own on the PostgreSQL server.
    Postgres,
}

/// One case of `--auth`.
#[derive(Debug)]
struct AuthCase {
    id: &'static str,
    name: &'static str,
    master_key: bool,
    store: Store,
    /// Load with a virtual key (else with the master key).
    virtual_key: bool,
    /// `REDIS_URL` set, and the key made with [`LARGE_RPM_LIMIT`].
    redis: bool,
}

const AUTH_CASES: &[AuthCase] = &[
    AuthCase {
        id: "noauth",
        name: "no auth (no master key)",
        master_key: false,
        store: Store::None,
        virtual_key: false,
        redis: false,
    },
    AuthCase {
        id: "master",
        name: "master key",
        master_key: true,
        store: Store::Sqlite,
        virtual_key: false,
        redis: false,
    },
    AuthCase {
        id: "vkey-sqlite",
        name: "virtual key, SQLite",
        master_key: true,
        store: Store::Sqlite,
        virtual_key: true,
        redis: false,
    },
    AuthCase {
        id: "vkey-postgres",
        name: "virtual key, PostgreSQL",
        master_key: true,
        store: Store::Postgres,
        virtual_key: true,
        redis: false,
    },
    AuthCase {
        id: "vkey-postgres-redis",
        name: "virtual key with rpm_limit, PostgreSQL + Redis",
        master_key: true,
        store: Store::Postgres,
        virtual_key: true,
        redis: true,
    },
];

/// The ids `--auth-cases` accepts.
fn known() -> String {
    AUTH_CASES
        .iter()
        .map(|c| c.id)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The config of one case: the bench deployment, behind `master_key` if given.
pub fn config(api_base: &str, master_key: Option<&str>) -> String {
    let mut c = crate::traceway_config(api_base, false);
    if let Some(k) = master_key {
        c.push_str(&format!("general_settings:\n  master_key: {k}\n"));
    }
    c
}

/// The body of `/key/generate`: an empty key, or one with `rpm_limit`.
pub fn generate_body(rpm_limit: Option<i64>) -> String {
    match rpm_limit {
        Some(n) => format!("{{\"key_alias\":\"bench\",\"rpm_limit\":{n}}}"),
        None => "{\"key_alias\":\"bench\"}".to_owned(),
    }
}

/// The `key` of a `/key/generate` answer.
pub fn key_of(answer: &[u8]) -> anyhow::Result<String> {
    let v: serde_json::Value =
        serde_json::from_slice(answer).context("the /key/generate answer is not JSON")?;
    v.get("key")
        .and_then(serde_json::Value::as_str)
        .filter(|k| k.starts_with("sk-"))
        .map(str::to_owned)
        .context("the /key/generate answer has no \"key\"")
}

/// `url` with `options=-c search_path=<schema>` added, as the proxy's own Postgres tests do.
pub fn with_search_path(url: &str, schema: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}options=-c%20search_path%3D{schema}")
}

/// Runs one SQL statement with `psql` (no Postgres client in this crate).
fn psql(url: &str, sql: &str) -> anyhow::Result<()> {
    let out = std::process::Command::new("psql")
        .arg(url)
        .args(["-v", "ON_ERROR_STOP=1", "-qAtc", sql])
        .env("PGCONNECT_TIMEOUT", "5")
        .output()
        .context("running psql (install the PostgreSQL client)")?;
    anyhow::ensure!(
        out.status.success(),
        "psql failed: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

/// What a case set up and must clean away.
enum Scratch {
    Files(Vec<PathBuf>),
    Schema(String),
}

fn sqlite_files(path: &Path) -> Vec<PathBuf> {
    ["", "-wal", "-shm"]
        .iter()
        .map(|suffix| PathBuf::from(format!("{}{suffix}", path.display())))
        .collect()
}

/// The key store of case `ac`: `DATABASE_URL` and what to remove afterwards; `Err` is why the
/// case is left out.
fn key_store(cli: &Cli, ac: &AuthCase) -> Result<Option<(String, Scratch)>, String> {
    match ac.store {
        Store::None => Ok(None),
        Store::Sqlite => {
            let path = std::path::absolute(cli.work_dir.join(format!("auth-{}.db", ac.id)))
                .map_err(|e| e.to_string())?;
            let files = sqlite_files(&path);
            for f in &files {
                let _ = std::fs::remove_file(f);
            }
            Ok(Some((
                format!("sqlite://{}", path.display()),
                Scratch::Files(files),
            )))
        }
        Store::Postgres => {
            let Some(base) = cli.postgres_url.as_deref().filter(|u| !u.is_empty()) else {
                return Err(
                    "TRACEWAY_TEST_POSTGRES_URL (or --postgres-url) is not set; start PostgreSQL \
                     with `eval \"$(.ci/services)\"`"
                        .to_owned(),
                );
            };
            let schema = format!(
                "twbench_{}_{}",
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs()),
                ac.id.replace('-', "_")
            );
            psql(base, &format!("CREATE SCHEMA {schema}")).map_err(|e| format!("{e:#}"))?;
            Ok(Some((
                with_search_path(base, &schema),
                Scratch::Schema(schema),
            )))
        }
    }
}

fn clean(cli: &Cli, scratch: Scratch) {
    match scratch {
        Scratch::Files(files) => {
            for f in files {
                let _ = std::fs::remove_file(f);
            }
        }
        Scratch::Schema(schema) => {
            if let Some(base) = &cli.postgres_url
                && let Err(e) = psql(base, &format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
            {
                eprintln!("could not drop schema {schema}: {e:#}");
            }
        }
    }
}

/// Starts the gateway of `ac`, makes its key and puts it in the cache.
async fn start_case(
    cli: &Cli,
    ac: &AuthCase,
    up: &upstream::Upstream,
    scratch: &mut Vec<Scratch>,
) -> anyhow::Result<Result<Case, String>> {
    if ac.redis && cli.redis_url.as_deref().is_none_or(str::is_empty) {
        return Ok(Err(
            "TRACEWAY_TEST_REDIS_URL (or --redis-url) is not set; start Redis with \
             `eval \"$(.ci/services)\"`"
                .to_owned(),
        ));
    }
    let mut env = Vec::new();
    match key_store(cli, ac) {
        Ok(Some((url, s))) => {
            env.push(("DATABASE_URL".to_owned(), url));
            scratch.push(s);
        }
        Ok(None) => {}
        Err(why) => return Ok(Err(why)),
    }
    if ac.redis
        && let Some(url) = &cli.redis_url
    {
        env.push(("REDIS_URL".to_owned(), url.clone()));
    }
    let cfg = cli.work_dir.join(format!("traceway-{}.yaml", ac.id));
    std::fs::write(
        &cfg,
        config(&up.api_base(), ac.master_key.then_some(MASTER_KEY)),
    )?;
    let launch = crate::traceway_launch(cli, ac.id, false, &cfg, None, &env)?;
    eprintln!("starting: {} …", ac.name);
    let (guard, cold, rss) = crate::start(&launch, Duration::from_secs(30)).await?;
    let addr = ([127, 0, 0, 1], launch.port).into();
    let master = load::bearer(MASTER_KEY)?;
    let key = if ac.virtual_key {
        let body = generate_body(ac.redis.then_some(LARGE_RPM_LIMIT));
        let (status, answer) = load::once(
            addr,
            http::Method::POST,
            "/key/generate",
            Some(&master),
            Bytes::from(body),
        )
        .await?;
        anyhow::ensure!(
            status.is_success(),
            "{}: /key/generate answered {status}: {}",
            ac.name,
            String::from_utf8_lossy(&answer)
        );
        key_of(&answer)?
    } else {
        // No auth: the same header as the master-key case, which an open proxy ignores.
        MASTER_KEY.to_owned()
    };
    let target = Target::new(addr, "/v1/chat/completions", "bench").with_key(&key)?;
    let (status, answer) = load::chat_once(&target).await?;
    anyhow::ensure!(
        status.is_success(),
        "{}: the first request answered {status}: {} (log: {})",
        ac.name,
        String::from_utf8_lossy(&answer),
        launch.log.display()
    );
    let mut results = report::CaseResults::default();
    results.cold_starts.push(cold);
    results.rss_at_start.extend(rss);
    results.requests_sent = 1;
    Ok(Ok(Case {
        id: ac.id.to_owned(),
        name: ac.name.to_owned(),
        target,
        child: Some(guard),
        launch: Some(launch),
        receiver: None,
        exact_spans: false,
        results,
    }))
}

/// The whole `--auth` run; the Markdown report.
pub async fn run(cli: Cli) -> anyhow::Result<String> {
    let cli = cli.quick();
    std::fs::create_dir_all(&cli.work_dir)
        .with_context(|| format!("creating {}", cli.work_dir.display()))?;
    let mut wanted = Vec::new();
    for id in &cli.auth_cases {
        let ac = AUTH_CASES
            .iter()
            .find(|c| c.id == id)
            .with_context(|| format!("unknown auth case {id:?} (known: {})", known()))?;
        wanted.push(ac);
    }
    let machine = crate::machine::Machine::read();
    let load_start = crate::machine::load_average();
    let started = Instant::now();
    let up = upstream::start(upstream::UpstreamSettings {
        latency: Duration::from_millis(cli.upstream_latency_ms),
        stream_chunks: cli.stream_chunks,
        stream_gap: Duration::from_millis(cli.stream_gap_ms),
    })
    .await?;

    let mut notes = vec![format!(
        "Auth benchmark: tracing off in every case (no callbacks, `TRACEWAY_UI_TRACES=0`); every \
         request carries `Authorization: Bearer <key>` (the master key's in the no-auth case, \
         ignored there); virtual keys from `POST /key/generate` with the master key (the \
         PostgreSQL + Redis one with `rpm_limit` {LARGE_RPM_LIMIT}); key cache TTL as shipped \
         (10 s); one request right before each max-throughput round puts the key back in the \
         cache if its entry has expired (an entry still expires 10 s after it was read, so a \
         round can hold one re-read from the database, as a hot key's steady state does)."
    )];
    let mut scratch = Vec::new();
    let mut cases = Vec::new();
    let mut failure = None;
    for ac in wanted {
        match start_case(&cli, ac, &up, &mut scratch).await {
            Ok(Ok(case)) => cases.push(case),
            Ok(Err(why)) => {
                eprintln!("left out: {} — {why}", ac.name);
                notes.push(format!("Left out: {} — {why}.", ac.name));
            }
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    let outcome = match failure {
        Some(e) => Err(e),
        None => measure(&cli, &mut cases).await,
    };
    eprintln!("shutting down …");
    for c in &mut cases {
        if let Some(mut guard) = c.child.take() {
            let status = tokio::task::spawn_blocking(move || {
                process::terminate(&mut guard.0, Duration::from_secs(10))
            })
            .await??;
            c.results.exit = Some(status.to_string());
        }
    }
    for s in scratch {
        clean(&cli, s);
    }
    outcome?;

    let run = report::Run {
        cli: cli.clone(),
        machine,
        load_start,
        load_end: crate::machine::load_average(),
        wall: started.elapsed(),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        upstream_requests: up.requests(),
        litellm_note: None,
        notes,
    };
    Ok(report::render_auth(&run, &cases))
}

/// Warm-up, interleaved max-throughput rounds, then the fixed rate on each case.
async fn measure(cli: &Cli, cases: &mut [Case]) -> anyhow::Result<()> {
    eprintln!("warm-up …");
    for c in cases.iter_mut() {
        let o = load::closed(&c.target, Kind::Chat, 8, crate::secs(cli.warmup_seconds)).await?;
        anyhow::ensure!(
            o.errors == 0,
            "{}: {} failed requests in the warm-up (log: {})",
            c.name,
            o.errors,
            c.launch
                .as_ref()
                .map_or(String::new(), |l| l.log.display().to_string())
        );
        c.sent(&o);
    }
    eprintln!("max throughput …");
    crate::max_throughput(cli, cases, true).await?;
    if cli.rate_seconds > 0.0 {
        eprintln!("fixed rate …");
        for c in cases.iter_mut() {
            eprintln!(
                "  {} — {} req/s for {} s",
                c.name, cli.rate, cli.rate_seconds
            );
            let _ = load::chat_once(&c.target).await?;
            let phase = load::open(
                &c.target,
                Kind::Chat,
                cli.rate,
                crate::secs(cli.rate_seconds),
                cli.rate_connections,
                Duration::from_secs(10),
            );
            let (o, cpu) = crate::measured(c, phase).await?;
            c.sent(&o);
            c.results.rate = Some(report::RatePhase {
                rate: cli.rate,
                seconds: cli.rate_seconds,
                outcome: o,
                cpu,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_keys_and_urls() {
        let open = config("http://127.0.0.1:1/v1", None);
        assert!(open.contains("api_base: http://127.0.0.1:1/v1"));
        assert!(!open.contains("master_key") && !open.contains("otel"));
        let locked = config("http://127.0.0.1:1/v1", Some(MASTER_KEY));
        assert!(locked.ends_with(&format!("general_settings:\n  master_key: {MASTER_KEY}\n")));

        assert_eq!(generate_body(None), r#"{"key_alias":"bench"}"#);
        assert!(generate_body(Some(LARGE_RPM_LIMIT)).contains("\"rpm_limit\":1000000000"));
        let answer = br#"{"key_alias":"bench","key":"sk-abc123","token_id":"f00"}"#;
        assert_eq!(key_of(answer).unwrap(), "sk-abc123");
        assert!(key_of(br#"{"error":{"message":"no"}}"#).is_err());
        assert!(key_of(b"not json").is_err());

        assert_eq!(
            with_search_path("postgres://u:p@h:5432/db", "s1"),
            "postgres://u:p@h:5432/db?options=-c%20search_path%3Ds1"
        );
        assert_eq!(
            with_search_path("postgres://h/db?sslmode=disable", "s1"),
            "postgres://h/db?sslmode=disable&options=-c%20search_path%3Ds1"
        );
        for id in known().split(", ") {
            assert!(AUTH_CASES.iter().any(|c| c.id == id));
        }
    }
}
