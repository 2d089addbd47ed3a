//! End-to-end with the real `traceway` binary: virtual keys in the default SQLite file beside
//! the config, surviving a restart, and no key ever in a log line or a printed span.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_traceway");
const MASTER: &str = "sk-master-binary-test";
const PROVIDER_KEY: &str = "sk-provider-binary-secret";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A directory of its own in the temp dir, removed on drop.
struct Dir(PathBuf);

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn start(config: &Path, port: u16) -> Child {
    Command::new(BIN)
        .args([
            "serve",
            "--config",
            config.to_str().unwrap(),
            "--port",
            &port.to_string(),
        ])
        .env("RUST_LOG", "debug")
        .env("OTEL_EXPORTER", "console")
        .env_remove("DATABASE_URL")
        .env_remove("REDIS_URL")
        .env_remove("LITELLM_MASTER_KEY")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

async fn wait_healthy(http: &reqwest::Client, base: &str, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(r) = http.get(format!("{base}/health/liveliness")).send().await
            && r.status() == 200
        {
            return;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("traceway exited early with {status}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("traceway did not become healthy");
}

/// SIGTERM, then everything it printed.
fn stop(child: Child) -> String {
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

async fn call(
    http: &reqwest::Client,
    base: &str,
    key: &str,
    path: &str,
    body: Value,
) -> (u16, Value) {
    let r = http
        .post(format!("{base}{path}"))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_live_in_sqlite_beside_the_config_and_never_reach_the_output() {
    traceway::client::install_crypto_provider();
    let dir = Dir(std::env::temp_dir().join(format!("traceway-keys-bin-{}", uuid::Uuid::new_v4())));
    std::fs::create_dir_all(&dir.0).unwrap();
    let config = dir.0.join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "model_list:\n  - model_name: m\n    litellm_params:\n      model: mock/m\n      api_key: {PROVIDER_KEY}\nlitellm_settings:\n  callbacks: [\"otel\"]\ngeneral_settings:\n  master_key: {MASTER}\n"
        ),
    )
    .unwrap();
    let http = reqwest::Client::new();
    let chat = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});

    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut child = start(&config, port);
    wait_healthy(&http, &base, &mut child).await;
    assert!(
        dir.0.join("traceway.db").is_file(),
        "the default database sits beside the config"
    );
    let (s, g) = call(
        &http,
        &base,
        MASTER,
        "/key/generate",
        json!({"key_alias": "bin"}),
    )
    .await;
    assert_eq!(s, 200, "{g}");
    let key = g["key"].as_str().unwrap().to_owned();
    let (s, g) = call(&http, &base, MASTER, "/key/generate", json!({})).await;
    assert_eq!(s, 200, "{g}");
    let doomed = g["key"].as_str().unwrap().to_owned();
    assert_eq!(
        call(&http, &base, &key, "/v1/chat/completions", chat.clone())
            .await
            .0,
        200
    );
    assert_eq!(
        call(&http, &base, &doomed, "/v1/chat/completions", chat.clone())
            .await
            .0,
        200
    );
    let wrong = "sk-binary-wrong-key";
    assert_eq!(
        call(&http, &base, wrong, "/v1/chat/completions", chat.clone())
            .await
            .0,
        401
    );
    assert_eq!(
        call(
            &http,
            &base,
            MASTER,
            "/key/delete",
            json!({"keys": [doomed]})
        )
        .await
        .0,
        200
    );
    assert_eq!(
        call(&http, &base, &doomed, "/v1/chat/completions", chat.clone())
            .await
            .0,
        401
    );
    let first = stop(child);
    assert!(first.contains("virtual keys in SQLite at"), "{first}");
    assert!(
        first.contains("Received Proxy Server Request"),
        "spans were printed"
    );

    // A restart keeps the keys: the one made before works, the deleted one does not.
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut child = start(&config, port);
    wait_healthy(&http, &base, &mut child).await;
    let ready: Value = http
        .get(format!("{base}/health/readiness"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["db"], "connected");
    assert_eq!(
        call(&http, &base, &key, "/v1/chat/completions", chat.clone())
            .await
            .0,
        200
    );
    assert_eq!(
        call(&http, &base, &doomed, "/v1/chat/completions", chat)
            .await
            .0,
        401
    );
    let second = stop(child);

    for output in [&first, &second] {
        for secret in [MASTER, PROVIDER_KEY, key.as_str(), doomed.as_str(), wrong] {
            assert!(!output.contains(secret), "a key reached the output");
        }
    }
}
