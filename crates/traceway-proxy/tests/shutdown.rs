//! Graceful shutdown under load: slow replies, paced streams and delayed mock answers are in
//! flight when the proxy is told to stop (SIGTERM for the real binary, `RunningProxy::shutdown`
//! in process). New connections are refused at once, every in-flight request completes with its
//! full answer, the process exits 0, and every span of every request reaches the collector
//! (the spans wait in the queue until shutdown flushes them).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod reliability;

use reliability::{Binary, Pace, ms};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;
use traceway_testkit::openai_upstream::{self, OpenAiUpstream, Reply, StreamEnd};
use traceway_testkit::otlp::{OtlpReceiver, ReceivedSpan};

const SERVER_SPAN: &str = "Received Proxy Server Request";

/// `slow`: an OpenAI deployment at the test's upstream; `m`: the in-process mock.
fn config(api_base: &str) -> String {
    format!(
        "model_list:\n  - model_name: slow\n    litellm_params:\n      model: openai/gpt-4o-mini\n      api_base: {api_base}\n      api_key: sk-provider-secret\n  - model_name: m\n    litellm_params:\n      model: mock/m\nlitellm_settings:\n  callbacks: [\"otel\"]\ngeneral_settings:\n  ui: false\n"
    )
}

/// Exporter settings: nothing leaves the queue before shutdown unless a full batch (512) does.
fn otel_env(rx: &OtlpReceiver) -> Vec<(&'static str, String)> {
    vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", rx.http_endpoint()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf".to_owned()),
        ("OTEL_BSP_SCHEDULE_DELAY", "600000".to_owned()),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "5000".to_owned()),
    ]
}

/// How much load a scenario puts on the proxy.
#[derive(Debug, Clone, Copy)]
struct Scale {
    /// Background load before the in-flight requests: clients, pace, length.
    background_clients: usize,
    background_pace: Pace,
    background: Duration,
    /// Non-streamed calls the upstream answers after `reply_delay`.
    slow: usize,
    /// Streams the upstream starts after a pause and paces over about 0.7 s.
    streams: usize,
    /// Mock calls answering after `reply_delay`.
    mock_delayed: usize,
    reply_delay: Duration,
}

const QUICK: Scale = Scale {
    background_clients: 2,
    background_pace: Pace::Every(Duration::from_millis(10)),
    background: Duration::from_millis(300),
    slow: 4,
    streams: 4,
    mock_delayed: 4,
    reply_delay: Duration::from_millis(800),
};

/// Requests put in flight, to be awaited after the stop.
struct InFlight {
    tasks: Vec<JoinHandle<()>>,
    /// Background requests, all completed before the stop.
    background: usize,
}

impl InFlight {
    fn in_flight(&self) -> usize {
        self.tasks.len()
    }

    fn all_finished(&self) -> bool {
        self.tasks.iter().all(JoinHandle::is_finished)
    }

    /// Every in-flight request completes with its full answer.
    async fn join(self) {
        for t in self.tasks {
            t.await
                .expect("an in-flight request failed across shutdown");
        }
    }
}

async fn post(client: &reqwest::Client, url: &str, body: Value) -> reqwest::Response {
    let resp = client
        .post(format!("{url}/v1/chat/completions"))
        .json(&body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("in-flight request failed: {e}"));
    assert_eq!(resp.status(), 200);
    resp
}

/// The text the upstream's chat fixture answers.
fn fixture_answer() -> String {
    let v: Value = serde_json::from_str(openai_upstream::CHAT_COMPLETION).unwrap();
    v["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn wait_for_upstream(up: &OpenAiUpstream, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while up.requests().len() < n {
        assert!(
            Instant::now() < deadline,
            "the upstream got {} of {n} requests",
            up.requests().len()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Runs the background load to completion, then puts slow calls, streams and delayed mock
/// calls in flight (the upstream has received the first two kinds when this returns).
async fn put_in_flight(url: &str, up: &OpenAiUpstream, scale: Scale) -> InFlight {
    let background = reliability::drive(
        url,
        "m",
        scale.background_clients,
        scale.background_pace,
        scale.background,
        None,
    )
    .await
    .len();
    let client = reqwest::Client::new();
    let mut tasks = Vec::new();
    let answer = fixture_answer();
    let received = up.requests().len();
    for _ in 0..scale.slow {
        up.push(Reply::Delay(scale.reply_delay, Box::new(Reply::Fixture)));
    }
    for _ in 0..scale.slow {
        let (client, url, answer) = (client.clone(), url.to_owned(), answer.clone());
        tasks.push(tokio::spawn(async move {
            let v: Value = post(
                &client,
                &url,
                json!({"model": "slow", "messages": [{"role": "user", "content": "slow"}]}),
            )
            .await
            .json()
            .await
            .unwrap();
            assert_eq!(v["choices"][0]["message"]["content"], answer.as_str());
        }));
    }
    wait_for_upstream(up, received + scale.slow).await;
    let events: Vec<String> = openai_upstream::CHAT_COMPLETION_STREAM
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(str::to_owned)
        .collect();
    let gap = Duration::from_millis(700) / events.len() as u32;
    let streamed = reliability::stream_answer(openai_upstream::CHAT_COMPLETION_STREAM).unwrap();
    for _ in 0..scale.streams {
        up.push(Reply::Delay(
            Duration::from_millis(200),
            Box::new(Reply::Sse {
                events: events.clone(),
                gap,
                end: StreamEnd::Complete,
            }),
        ));
    }
    for _ in 0..scale.streams {
        let (client, url, streamed) = (client.clone(), url.to_owned(), streamed.clone());
        tasks.push(tokio::spawn(async move {
            let body = post(&client, &url, json!({"model": "slow", "stream": true, "messages": [{"role": "user", "content": "stream"}]}))
                .await
                .text()
                .await
                .unwrap();
            assert_eq!(
                reliability::stream_answer(&body).as_deref(),
                Some(streamed.as_str()),
                "the whole stream arrives: {body}"
            );
        }));
    }
    wait_for_upstream(up, received + scale.slow + scale.streams).await;
    for i in 0..scale.mock_delayed {
        let (client, url) = (client.clone(), url.to_owned());
        let delay = scale.reply_delay.as_secs_f64();
        tasks.push(tokio::spawn(async move {
            let text = format!("delayed {i}");
            let v: Value = post(&client, &url, json!({"model": "m", "mock_delay": delay, "messages": [{"role": "user", "content": text}]}))
                .await
                .json()
                .await
                .unwrap();
            assert_eq!(v["choices"][0]["message"]["content"], text.as_str());
        }));
    }
    // Let the delayed mock calls reach their handlers.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !tasks.iter().any(JoinHandle::is_finished),
        "requests finished before the stop"
    );
    InFlight { tasks, background }
}

/// Waits until `port` refuses connections; asserts that happens while requests are still in
/// flight (the listener closes first, the requests finish after).
async fn assert_stops_accepting(port: u16, in_flight: &InFlight) {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => break,
            _ => {}
        }
        assert!(
            Instant::now() < deadline,
            "still accepting connections after the stop"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(
        !in_flight.all_finished(),
        "the listener should close before the in-flight requests end"
    );
}

/// Every request's spans reached the receiver: one SERVER span per request, each with its
/// CLIENT attempt span, and the in-flight ones among them.
fn assert_every_span_arrived(spans: &[ReceivedSpan], requests: usize, scale: Scale) {
    let servers: Vec<&ReceivedSpan> = spans.iter().filter(|s| s.name == SERVER_SPAN).collect();
    assert_eq!(servers.len(), requests, "one SERVER span per request");
    assert_eq!(spans.len(), requests * 2, "each with its CLIENT span");
    let slow = servers
        .iter()
        .filter(|s| s.attr_str("litellm.model_group") == Some("slow"))
        .count();
    assert_eq!(
        slow,
        scale.slow + scale.streams,
        "the in-flight upstream calls"
    );
    for server in servers {
        assert!(
            spans.iter().any(|c| c.name == "raw_gen_ai_request"
                && c.parent_span_id.as_deref() == Some(server.span_id.as_str())),
            "a SERVER span without its CLIENT span"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_process_shutdown_finishes_in_flight_requests_and_flushes_every_span() {
    let rx = OtlpReceiver::start().await;
    let up = OpenAiUpstream::start().await;
    let env = otel_env(&rx);
    let vars: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let p = common::proxy(&config(&up.api_base()), &vars).await;
    let telemetry = p.app.telemetry.clone().unwrap();
    let port = p.addr.port();
    let url = p.url();
    let in_flight = put_in_flight(&url, &up, QUICK).await;
    assert!(rx.spans().is_empty(), "the spans are still queued");
    let started = Instant::now();
    let stopping = tokio::spawn(p.shutdown());
    assert_stops_accepting(port, &in_flight).await;
    let requests = in_flight.background + in_flight.in_flight();
    in_flight.join().await;
    stopping.await.unwrap();
    println!(
        "in process: {requests} requests, stopped in {:.0} ms",
        ms(started.elapsed())
    );
    assert_eq!(telemetry.spans_dropped(), 0);
    assert_eq!(telemetry.spans_export_failed(), 0);
    assert_every_span_arrived(&rx.spans(), requests, QUICK);
}

async fn sigterm_scenario(scale: Scale, env: &[(&'static str, String)]) {
    let rx = OtlpReceiver::start().await;
    let up = OpenAiUpstream::start().await;
    let mut all = otel_env(&rx);
    all.extend(env.iter().cloned());
    let vars: Vec<(&str, &str)> = all.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut bin = Binary::start(&config(&up.api_base()), &vars).await;
    let url = bin.url();
    let in_flight = put_in_flight(&url, &up, scale).await;
    let before = reliability::SpanCounters::scrape(&url).await;
    assert_eq!(before.dropped, 0, "nothing dropped before the stop");
    let requests = in_flight.background + in_flight.in_flight();
    let started = Instant::now();
    bin.sigterm();
    assert_stops_accepting(bin.port, &in_flight).await;
    in_flight.join().await;
    let finished = started.elapsed();
    let exit = bin.wait_exit(Duration::from_secs(20)).await;
    println!(
        "binary: {requests} requests ({} in flight at SIGTERM), last answer {:.0} ms and exit {:.0} ms after SIGTERM, {} of {} spans exported before it",
        in_flight_count(scale),
        ms(finished),
        ms(started.elapsed()),
        before.exported,
        requests * 2
    );
    assert_eq!(exit.code(), Some(0), "{}", bin.stderr());
    assert_every_span_arrived(&rx.spans(), requests, scale);
}

fn in_flight_count(scale: Scale) -> usize {
    scale.slow + scale.streams + scale.mock_delayed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_in_flight_requests_flushes_every_span_and_exits_zero() {
    sigterm_scenario(QUICK, &[]).await;
}

/// Soak: SIGTERM to the release binary after seconds of paced load, with 100 slow calls,
/// streams and delayed mock answers in flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "soak: run with bench/soak.sh"]
async fn soak_graceful_shutdown_under_load() {
    let scale = Scale {
        background_clients: 8,
        background_pace: Pace::Every(Duration::from_millis(20)),
        background: Duration::from_secs(5),
        slow: 40,
        streams: 40,
        mock_delayed: 20,
        reply_delay: Duration::from_millis(1500),
    };
    sigterm_scenario(scale, &[("OTEL_BSP_SCHEDULE_DELAY", "5000".to_owned())]).await;
}

/// A dead collector does not hold up the exit: spans and metrics that cannot be delivered are
/// given up within about the export timeout each, and the process still exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_a_dead_collector_exits_within_the_export_timeout() {
    let rx = OtlpReceiver::start().await;
    rx.kill().await;
    let up = OpenAiUpstream::start().await;
    let mut env = otel_env(&rx);
    env.push(("OTEL_EXPORTER_OTLP_TIMEOUT", "1000".to_owned()));
    let vars: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut bin = Binary::start(&config(&up.api_base()), &vars).await;
    let url = bin.url();
    let requests = reliability::drive(
        &url,
        "m",
        2,
        Pace::Every(Duration::from_millis(10)),
        Duration::from_millis(200),
        None,
    )
    .await
    .len();
    let started = Instant::now();
    bin.sigterm();
    let exit = bin.wait_exit(Duration::from_secs(10)).await;
    let took = started.elapsed();
    println!(
        "dead collector: {requests} requests, exit {:.0} ms after SIGTERM",
        ms(took)
    );
    assert_eq!(exit.code(), Some(0), "{}", bin.stderr());
    assert!(
        took < Duration::from_millis(3500),
        "shutdown waited {took:?} on a dead collector"
    );
}

/// Requests that would outlive any grace period: a non-streamed call the upstream never
/// answers, a stream that goes silent after its first event, and a mock call delayed a minute.
async fn put_hung_in_flight(url: &str, up: &OpenAiUpstream) -> Vec<JoinHandle<(u16, String)>> {
    let events: Vec<String> = openai_upstream::CHAT_COMPLETION_STREAM
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .take(1)
        .map(str::to_owned)
        .collect();
    let received = up.requests().len();
    up.push(Reply::Delay(
        Duration::from_secs(60),
        Box::new(Reply::Fixture),
    ));
    up.push(Reply::Sse {
        events,
        gap: Duration::ZERO,
        end: StreamEnd::Hang,
    });
    let client = reqwest::Client::new();
    let bodies = [
        json!({"model": "slow", "messages": [{"role": "user", "content": "never answered"}]}),
        json!({"model": "slow", "stream": true, "messages": [{"role": "user", "content": "goes silent"}]}),
        json!({"model": "m", "mock_delay": 60, "messages": [{"role": "user", "content": "a minute late"}]}),
    ];
    let mut tasks = Vec::new();
    for (i, body) in bodies.into_iter().enumerate() {
        let (client, url) = (client.clone(), url.to_owned());
        tasks.push(tokio::spawn(async move {
            let resp = client
                .post(format!("{url}/v1/chat/completions"))
                .json(&body)
                .send()
                .await
                .unwrap_or_else(|e| panic!("request {i} got no answer: {e}"));
            let status = resp.status().as_u16();
            (status, resp.text().await.unwrap_or_default())
        }));
        if i < 2 {
            wait_for_upstream(up, received + i + 1).await;
        }
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!tasks.iter().any(JoinHandle::is_finished));
    tasks
}

/// What the hung requests got once the grace period ran out: a 503 in OpenAI's shape for the
/// two non-streamed ones, the stream's first event then an error event; and one SERVER span
/// each, ended once with an error status.
async fn assert_hung_requests_ended(tasks: Vec<JoinHandle<(u16, String)>>, spans: &[ReceivedSpan]) {
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.unwrap());
    }
    for i in [0, 2] {
        let (status, body) = &answers[i];
        assert_eq!(*status, 503, "request {i}: {body}");
        let v: Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["error"]["type"], "service_unavailable_error", "{body}");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("shutting down"),
            "{body}"
        );
    }
    let (status, body) = &answers[1];
    assert_eq!(*status, 200);
    let events: Vec<&str> = body
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .collect();
    assert_eq!(events.len(), 2, "first chunk then the error event: {body}");
    let err: Value = serde_json::from_str(events[1]).unwrap();
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("shutting down"),
        "{body}"
    );
    let servers: Vec<&ReceivedSpan> = spans.iter().filter(|s| s.name == SERVER_SPAN).collect();
    assert_eq!(servers.len(), 3, "one SERVER span per hung request");
    let mut ids: Vec<&str> = spans.iter().map(|s| s.span_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), spans.len(), "a span exported twice");
    for s in servers {
        assert!(
            matches!(&s.status, traceway_testkit::otlp::Status::Error { message } if message.contains("shutting down")),
            "{:?}",
            s.status
        );
        assert_eq!(s.attr_str("error.type"), Some("unavailable"), "{s:?}");
    }
    let clients = spans
        .iter()
        .filter(|s| s.name == "raw_gen_ai_request")
        .count();
    assert_eq!(clients, 3, "each attempt's CLIENT span ended too");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_process_requests_outliving_the_grace_period_end_with_503_and_their_spans_flush() {
    let rx = OtlpReceiver::start().await;
    let up = OpenAiUpstream::start().await;
    let env = otel_env(&rx);
    let vars: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let p = common::proxy(&config(&up.api_base()), &vars).await;
    let tasks = put_hung_in_flight(&p.url(), &up).await;
    let started = Instant::now();
    p.shutdown_within(Duration::from_millis(300)).await;
    let took = started.elapsed();
    println!("in process: stopped {:.0} ms after the stop", ms(took));
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(5),
        "stopped after {took:?} with a 300 ms grace period"
    );
    assert_hung_requests_ended(tasks, &rx.spans()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_requests_outliving_traceway_shutdown_grace_and_exits_zero() {
    let rx = OtlpReceiver::start().await;
    let up = OpenAiUpstream::start().await;
    let mut env = otel_env(&rx);
    env.push(("TRACEWAY_SHUTDOWN_GRACE", "0.5".to_owned()));
    let vars: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut bin = Binary::start(&config(&up.api_base()), &vars).await;
    let tasks = put_hung_in_flight(&bin.url(), &up).await;
    let started = Instant::now();
    bin.sigterm();
    let exit = bin.wait_exit(Duration::from_secs(10)).await;
    let took = started.elapsed();
    println!("binary: exit {:.0} ms after SIGTERM", ms(took));
    assert_eq!(exit.code(), Some(0), "{}", bin.stderr());
    assert!(took >= Duration::from_millis(500), "exited after {took:?}");
    assert!(
        bin.stderr().contains("ending them with a 503"),
        "{}",
        bin.stderr()
    );
    assert_hung_requests_ended(tasks, &rx.spans()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_traceway_shutdown_grace_stops_start_up_naming_it() {
    for (value, says) in [
        ("soon", "not a number"),
        ("-1", "out of range"),
        ("1e9", "out of range"),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_traceway"))
            .args(["serve", "--port", "0"])
            .env("TRACEWAY_SHUTDOWN_GRACE", value)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{value}: started");
        assert!(
            stderr.contains("--shutdown-grace") && stderr.contains(says),
            "{value}: {stderr}"
        );
    }
}
