//! Shared by the reliability suites (`collector_faults.rs`, `shutdown.rs`): a load loop whose
//! every request must succeed with a valid body, latency percentiles, and the real `traceway`
//! binary as a child process (start, health, SIGTERM, RSS, `/metrics`).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value, json};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// One chat call to model `model` through the proxy at `url`, streamed or not; panics unless
/// it is a 200 whose answer is the echoed `text` (the mock provider echoes the user message).
pub async fn call(client: &reqwest::Client, url: &str, model: &str, text: &str, stream: bool) {
    let resp = client
        .post(format!("{url}/v1/chat/completions"))
        .json(&json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": text}]}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("request {text:?} failed: {e}"));
    assert_eq!(resp.status(), 200, "request {text:?}");
    let answer = if stream {
        let body = resp.text().await.unwrap();
        stream_answer(&body).unwrap_or_else(|| panic!("stream {text:?} incomplete: {body}"))
    } else {
        let v: Value = resp.json().await.unwrap();
        v["choices"][0]["message"]["content"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(answer, text, "request {text:?}");
}

/// The text of an SSE chat stream that ended with `[DONE]`; `None` when it did not.
pub fn stream_answer(body: &str) -> Option<String> {
    let events: Vec<&str> = body
        .split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .collect();
    let (last, chunks) = events.split_last()?;
    if *last != "[DONE]" {
        return None;
    }
    Some(
        chunks
            .iter()
            .map(|e| serde_json::from_str::<Value>(e).unwrap())
            .filter_map(|c| {
                c["choices"][0]["delta"]["content"]
                    .as_str()
                    .map(str::to_owned)
            })
            .collect(),
    )
}

/// How load is offered.
#[derive(Debug, Clone, Copy)]
pub enum Pace {
    /// Each client calls back to back.
    Closed,
    /// Each client calls at this fixed interval (a late call is sent at once, not doubled up).
    Every(Duration),
}

/// `clients` tasks calling model `model` (every 4th call a stream) until `length` has passed or
/// `stop` is set. Returns every latency, sorted; panics if any request failed.
pub async fn drive(
    url: &str,
    model: &str,
    clients: usize,
    pace: Pace,
    length: Duration,
    stop: Option<Arc<AtomicBool>>,
) -> Vec<Duration> {
    traceway::client::install_crypto_provider();
    let deadline = Instant::now() + length;
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let url = url.to_owned();
            let model = model.to_owned();
            let stop = stop.clone();
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                let mut ticker = match pace {
                    Pace::Every(every) => {
                        let mut t = tokio::time::interval(every);
                        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                        Some(t)
                    }
                    Pace::Closed => None,
                };
                let mut latencies = Vec::new();
                let mut i = 0u64;
                loop {
                    if let Some(t) = ticker.as_mut() {
                        t.tick().await;
                    }
                    // At least one call each, however late the task starts on a busy machine.
                    if i > 0
                        && (Instant::now() >= deadline
                            || stop.as_ref().is_some_and(|s| s.load(Ordering::Relaxed)))
                    {
                        break;
                    }
                    let started = Instant::now();
                    call(&client, &url, &model, &format!("ping {c} {i}"), i % 4 == 3).await;
                    latencies.push(started.elapsed());
                    i += 1;
                }
                latencies
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("a client request failed"));
    }
    all.sort();
    all
}

/// The `p` quantile (0..=1) of sorted latencies.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// Milliseconds, for printing.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// `VmRSS` of process `pid` (`self` for this one), KiB.
pub fn rss_kib(pid: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// The value of the sample `name` (no labels) on the proxy's `/metrics`.
pub async fn scrape(url: &str, name: &str) -> u64 {
    let text = reqwest::get(format!("{url}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or_else(|| panic!("{name} not on /metrics:\n{text}")) as u64
}

/// The span pipeline counters on `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpanCounters {
    /// `traceway_otel_spans_exported_total`.
    pub exported: u64,
    /// `traceway_otel_spans_dropped_total`.
    pub dropped: u64,
    /// `traceway_otel_spans_export_failed_total`.
    pub failed: u64,
}

impl SpanCounters {
    /// Scrapes them from `url`.
    pub async fn scrape(url: &str) -> Self {
        Self {
            exported: scrape(url, "traceway_otel_spans_exported_total").await,
            dropped: scrape(url, "traceway_otel_spans_dropped_total").await,
            failed: scrape(url, "traceway_otel_spans_export_failed_total").await,
        }
    }

    /// The change since `before`.
    pub fn minus(self, before: Self) -> Self {
        Self {
            exported: self.exported - before.exported,
            dropped: self.dropped - before.dropped,
            failed: self.failed - before.failed,
        }
    }
}

/// The real `traceway` binary serving a config on a free port; killed when dropped if it is
/// still running.
pub struct Binary {
    /// The child process.
    pub child: Child,
    /// Its port.
    pub port: u16,
    config: std::path::PathBuf,
    stderr: std::path::PathBuf,
}

impl Binary {
    /// Starts `traceway serve` on `config` (YAML text) with `env` as its only environment
    /// (besides `RUST_LOG=warn`), and waits until it answers its liveness probe.
    pub async fn start(config: &str, env: &[(&str, &str)]) -> Binary {
        // The test's own reqwest clients need the process-wide rustls provider.
        traceway::client::install_crypto_provider();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let stem = std::env::temp_dir().join(format!(
            "traceway-reliability-{}-{port}",
            std::process::id()
        ));
        let config_path = stem.with_extension("yaml");
        let stderr_path = stem.with_extension("stderr");
        std::fs::write(&config_path, config).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_traceway"))
            .args([
                "serve",
                "--config",
                config_path.to_str().unwrap(),
                "--port",
                &port.to_string(),
            ])
            .env_clear()
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr_path).unwrap())
            .spawn()
            .unwrap();
        let mut binary = Binary {
            child,
            port,
            config: config_path,
            stderr: stderr_path,
        };
        binary.wait_healthy().await;
        binary
    }

    async fn wait_healthy(&mut self) {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(r) = client
                .get(format!("{}/health/liveliness", self.url()))
                .send()
                .await
                && r.status() == 200
            {
                return;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("traceway exited early with {status}: {}", self.stderr());
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("traceway did not become healthy: {}", self.stderr());
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Its process id, as text.
    pub fn pid(&self) -> String {
        self.child.id().to_string()
    }

    /// Its resident memory, KiB.
    pub fn rss_kib(&self) -> u64 {
        rss_kib(&self.pid())
    }

    /// What it wrote to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Sends SIGTERM.
    pub fn sigterm(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -TERM failed");
    }

    /// Waits at most `limit` for it to exit.
    pub async fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "traceway did not exit within {limit:?}: {}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = std::fs::remove_file(&self.config);
        let _ = std::fs::remove_file(&self.stderr);
    }
}
