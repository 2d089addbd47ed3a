//! End-to-end: the real `traceway` binary — start-up on a config, clean exit on SIGTERM, and
//! config errors that name the file, the key path and the problem, and HTTPS upstreams verified
//! against the root certificates (`SSL_CERT_FILE`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use traceway_testkit::openai_upstream::OpenAiUpstream;
use traceway_testkit::tls_front::{self, FrontOptions, TlsFront};

const BIN: &str = env!("CARGO_BIN_EXE_traceway");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn write_config(text: &str) -> tempfile_path::TempPath {
    tempfile_path::TempPath::new(text)
}

/// A config file in the system temp dir, removed on drop.
mod tempfile_path {
    pub struct TempPath(pub std::path::PathBuf);
    impl TempPath {
        pub fn new(text: &str) -> Self {
            let p = std::env::temp_dir().join(format!("traceway-test-{}.yaml", uuid_like()));
            std::fs::write(&p, text).unwrap();
            TempPath(p)
        }
    }
    impl Drop for TempPath {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
    fn uuid_like() -> String {
        use std::time::{SystemTime, UNIX_EPOCH};
        let n = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        format!("{}-{n}", std::process::id())
    }
}

fn wait_healthy(port: u16, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            let _ = s.write_all(
                b"GET /health/liveliness HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            );
            let mut out = String::new();
            let _ = std::io::Read::read_to_string(&mut s, &mut out);
            if out.starts_with("HTTP/1.1 200") {
                return;
            }
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("traceway exited early with {status}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("traceway did not become healthy");
}

fn post(port: u16, body: &str) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    std::io::Read::read_to_string(&mut s, &mut out).unwrap();
    out
}

#[test]
fn serves_a_config_and_exits_zero_on_sigterm() {
    let cfg = write_config(
        "model_list:\n  - model_name: echo\n    litellm_params:\n      model: mock/echo\n",
    );
    let port = free_port();
    let mut child = Command::new(BIN)
        .args([
            "serve",
            "--config",
            cfg.0.to_str().unwrap(),
            "--port",
            &port.to_string(),
        ])
        .env("OTEL_EXPORTER", "none")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_healthy(port, &mut child);
    let out = post(
        port,
        r#"{"model":"echo","messages":[{"role":"user","content":"ping"}]}"#,
    );
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.contains("\"content\":\"ping\""), "{out}");
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let exit = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "traceway did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(exit.code(), Some(0));
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert!(
        err.contains("no master_key set"),
        "the open proxy is announced: {err}"
    );
}

#[test]
fn embedded_defaults_serve_the_mock_model_and_port_env_is_honoured() {
    let port = free_port();
    let mut child = Command::new(BIN)
        .env("PORT", port.to_string())
        .env("OTEL_EXPORTER", "console")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_healthy(port, &mut child);
    let out = post(
        port,
        r#"{"model":"mock","messages":[{"role":"user","content":"hi there"}]}"#,
    );
    assert!(out.contains("hi there"), "{out}");
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("Received Proxy Server Request"),
        "console traces are printed: {stdout}"
    );
}

#[test]
fn bad_configs_stop_start_up_naming_file_path_and_problem() {
    let cfg = write_config(
        "model_list:\n  - model_name: x\n    litellm_params:\n      model: openai/x\n      api_key: os.environ/TRACEWAY_TEST_UNSET_VAR\nlitellm_setings: {}\n",
    );
    let path = cfg.0.to_str().unwrap().to_owned();
    for args in [
        vec!["check-config", "--config", &path],
        vec!["serve", "--config", &path, "--port", "0"],
    ] {
        let out = Command::new(BIN)
            .args(&args)
            .env_remove("TRACEWAY_TEST_UNSET_VAR")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(&path), "{err}");
        assert!(err.contains("model_list[0].litellm_params.api_key: environment variable TRACEWAY_TEST_UNSET_VAR is not set"), "{err}");
        assert!(err.contains("did you mean \"litellm_settings\""), "{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    let good = write_config(
        "model_list:\n  - model_name: x\n    litellm_params:\n      model: mock/x\n      max_parallel_requests: 5\n",
    );
    let out = Command::new(BIN)
        .args(["check-config", "--config", good.0.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("OK (1 deployments)") && text.contains("max_parallel_requests"),
        "{text}"
    );
}

#[test]
fn a_malformed_telemetry_variable_stops_start_up_with_its_name() {
    for (var, value, shown) in [
        ("OTEL_EXPORTER", "otlp_htp", "otlp_htp"),
        (
            "OTEL_EXPORTER_OTLP_CERTIFICATE",
            "/nowhere/collector-ca.pem",
            "\"/nowhere/collector-ca.pem\" cannot be read",
        ),
    ] {
        let out = Command::new(BIN)
            .args(["serve", "--port", "0"])
            .env(var, value)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(var) && err.contains(shown), "{err}");
    }
}

/// HTTPS upstreams are verified against the system's roots (loaded off the start-up path),
/// which `SSL_CERT_FILE` replaces: with the test CA there the call goes through TLS to the
/// upstream; with the system's roots the upstream's certificate is refused, and with no roots
/// at all the gateway still starts; both refusals are a 502 that says why.
#[test]
fn https_upstreams_are_verified_against_the_system_roots() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let up = rt.block_on(OpenAiUpstream::start());
    let front = rt.block_on(TlsFront::start(up.addr(), FrontOptions::default()));
    let tls_port = front.port();
    let cfg = write_config(&format!(
        "model_list:\n  - model_name: gpt\n    litellm_params:\n      model: openai/gpt-4o-mini\n      api_base: https://127.0.0.1:{tls_port}/v1\n      api_key: sk-test\n"
    ));
    let ca = tls_front::material("ca.pem");
    let no_roots = write_config("");
    let body = r#"{"model":"gpt","messages":[{"role":"user","content":"Hello"}]}"#;
    for (roots, expected) in [
        (Some(ca.as_path()), "HTTP/1.1 200"),
        (None, "UnknownIssuer"),
        (Some(no_roots.0.as_path()), "No CA certificates were loaded"),
    ] {
        let port = free_port();
        let mut cmd = Command::new(BIN);
        cmd.args(["serve", "--config", cfg.0.to_str().unwrap()])
            .args(["--port", &port.to_string()])
            .env("OTEL_EXPORTER", "none")
            .env_remove("SSL_CERT_DIR")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        match roots {
            Some(file) => cmd.env("SSL_CERT_FILE", file),
            None => cmd.env_remove("SSL_CERT_FILE"),
        };
        let mut child = cmd.spawn().unwrap();
        wait_healthy(port, &mut child);
        let out = post(port, body);
        let _ = child.kill();
        let _ = child.wait();
        assert!(out.contains(expected), "{expected}: {out}");
        if expected.starts_with("HTTP") {
            assert!(out.contains("chatcmpl"), "{out}");
        } else {
            assert!(out.starts_with("HTTP/1.1 502"), "{out}");
            assert!(out.contains("could not reach openai at 127.0.0.1"), "{out}");
        }
    }
    assert_eq!(
        up.requests().len(),
        1,
        "only the trusted call reached the upstream"
    );
}
