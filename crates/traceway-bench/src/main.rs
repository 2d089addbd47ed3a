//! `traceway-bench`: one run measures, side by side on this machine, a fast mock OpenAI upstream
//! called directly (the physical limit), a bare forwarder and optionally nginx in front of it
//! (what any proxy costs on this harness), the real `traceway` binary with tracing off, the same
//! with OTLP export on to a counting receiver, and optionally LiteLLM's proxy with its `otel`
//! callback; then prints a Markdown report (ratios, raw figures, machine, commands).
//!
//! Everything runs on 127.0.0.1, every phase is bounded in time, and every child is stopped at
//! the end. `bench/run.sh` builds the binaries and runs this with sensible defaults.

mod auth;
mod forwarder;
mod load;
mod machine;
mod nginx;
mod process;
mod receiver;
mod report;
mod upstream;

use anyhow::Context as _;
use clap::Parser;
use load::{Kind, Outcome, Target};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Spans one successful proxy request produces: `Received Proxy Server Request` (SERVER) and
/// `raw_gen_ai_request` (CLIENT).
pub const SPANS_PER_REQUEST: u64 = 2;

/// The load harness of BENCHMARKS.md.
#[derive(Parser, Debug, Clone)]
#[command(name = "traceway-bench", version, args_override_self = true)]
pub struct Cli {
    /// The release `traceway` binary (`cargo build --release -p traceway-proxy`).
    #[arg(long, default_value = "target/release/traceway")]
    pub traceway_bin: PathBuf,
    /// Connections in the max-throughput phase.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Seconds of one max-throughput round.
    #[arg(long, default_value_t = 5.0)]
    pub max_seconds: f64,
    /// Max-throughput rounds, interleaved across the cases (the median is reported, and the
    /// median of the ratios between cases within a round).
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
    /// The fixed rate, requests per second.
    #[arg(long, default_value_t = 1000.0)]
    pub rate: f64,
    /// Seconds at the fixed rate, direct and tracing off.
    #[arg(long, default_value_t = 30.0)]
    pub rate_seconds: f64,
    /// Seconds at the fixed rate with OTLP export on (the zero-loss target is for 60 s).
    #[arg(long, default_value_t = 60.0)]
    pub otlp_rate_seconds: f64,
    /// Connections in the fixed-rate phases.
    #[arg(long, default_value_t = 64)]
    pub rate_connections: usize,
    /// Mock upstream latency before it answers, milliseconds.
    #[arg(long, default_value_t = 0)]
    pub upstream_latency_ms: u64,
    /// Content chunks per streamed answer.
    #[arg(long, default_value_t = 20)]
    pub stream_chunks: usize,
    /// Pause between streamed chunks, milliseconds.
    #[arg(long, default_value_t = 10)]
    pub stream_gap_ms: u64,
    /// Streams per second in the time-to-first-chunk phase.
    #[arg(long, default_value_t = 100.0)]
    pub stream_rate: f64,
    /// Seconds of the time-to-first-chunk phase.
    #[arg(long, default_value_t = 10.0)]
    pub stream_seconds: f64,
    /// Concurrent streams while resident memory is sampled.
    #[arg(long, default_value_t = 64)]
    pub streams: usize,
    /// Seconds of the concurrent-streams phase.
    #[arg(long, default_value_t = 5.0)]
    pub streams_seconds: f64,
    /// Cold starts measured per tracing mode (the median is reported).
    #[arg(long, default_value_t = 5)]
    pub cold_starts: usize,
    /// Warm-up seconds per case before measuring.
    #[arg(long, default_value_t = 2.0)]
    pub warmup_seconds: f64,
    /// Which cases to run, in order: `direct` (the mock upstream itself), `forwarder` (a bare
    /// hyper server and pooled client passing requests and answers through unread: the floor of
    /// any gateway on this harness), `nginx` (nginx proxying to the mock, `--nginx-bin`), `off` (Traceway,
    /// tracing off and the `/ui` trace buffer off: no span work at all), `otlp` (Traceway with
    /// `callbacks: ["otel"]` to the counting receiver, shipped defaults otherwise: the `/ui`
    /// trace buffer on too), `off-ui` (tracing off, the `/ui` trace buffer asked for with
    /// `TRACEWAY_UI_TRACES=200`: it records spans), `otlp-noui` (OTLP on, trace buffer off).
    /// Ratios need `direct`, `off` and `otlp`.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "direct,forwarder,off,otlp"
    )]
    pub cases: Vec<String>,
    /// nginx's executable, for the `nginx` case (Debian's `nginx-light`).
    #[arg(long, default_value = "/usr/sbin/nginx")]
    pub nginx_bin: PathBuf,
    /// Run as the reference forwarder to this upstream instead (the `forwarder` case starts the
    /// harness itself this way).
    #[arg(long, hide = true)]
    pub forwarder_upstream: Option<std::net::SocketAddr>,
    /// The reference forwarder's port, with `--forwarder-upstream`.
    #[arg(long, hide = true, default_value_t = 0)]
    pub port: u16,
    /// Extra environment for every Traceway process, `NAME=VALUE` (repeatable), e.g.
    /// `LD_PRELOAD=…` to try another allocator.
    #[arg(long = "traceway-env", value_name = "NAME=VALUE")]
    pub traceway_env: Vec<String>,
    /// Also measure LiteLLM's proxy (`bench/run.sh --with-litellm` installs it).
    #[arg(long)]
    pub with_litellm: bool,
    /// LiteLLM's `litellm` executable.
    #[arg(long, default_value = "target/bench/litellm-venv/bin/litellm")]
    pub litellm_bin: PathBuf,
    /// Fixed rate for LiteLLM, requests per second (it cannot sustain `--rate` on 2 cores).
    #[arg(long, default_value_t = 10.0)]
    pub litellm_rate: f64,
    /// Cold starts of LiteLLM measured (each takes seconds).
    #[arg(long, default_value_t = 1)]
    pub litellm_cold_starts: usize,
    /// Also write the Markdown report to this file.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Directory for generated configs and the children's logs.
    #[arg(long, default_value = "target/bench")]
    pub work_dir: PathBuf,
    /// A run of a few seconds, to check that the harness works (figures meaningless).
    #[arg(long)]
    pub quick: bool,
    /// Run the virtual-key auth benchmark instead (BENCHMARKS.md, "Virtual-key auth"): Traceway
    /// with tracing off, with no auth, the master key and virtual keys, max-throughput rounds
    /// interleaved across `--auth-cases`, then `--rate` for `--rate-seconds` each (0: skip).
    #[arg(long)]
    pub auth: bool,
    /// Cases of `--auth`, in order: `noauth` (no master key), `master` (the master key),
    /// `vkey-sqlite`, `vkey-postgres` (a virtual key from `/key/generate`, SQLite or PostgreSQL
    /// key store), `vkey-postgres-redis` (PostgreSQL plus Redis, the key made with a large
    /// `rpm_limit` so that the Redis rate limiter runs on every request).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "noauth,master,vkey-sqlite,vkey-postgres,vkey-postgres-redis"
    )]
    pub auth_cases: Vec<String>,
    /// PostgreSQL server of the `vkey-postgres*` cases; each case gets a schema of its own,
    /// created and dropped with `psql`. Unset: those cases are left out, with a note.
    #[arg(long, env = "TRACEWAY_TEST_POSTGRES_URL", hide_env_values = true)]
    pub postgres_url: Option<String>,
    /// Redis server of the `vkey-postgres-redis` case. Unset: that case is left out.
    #[arg(long, env = "TRACEWAY_TEST_REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,
}

impl Cli {
    fn quick(mut self) -> Self {
        if self.quick {
            self.max_seconds = 1.0;
            self.rounds = 1;
            self.rate_seconds = 2.0;
            self.otlp_rate_seconds = 2.0;
            self.stream_seconds = 1.0;
            self.streams_seconds = 1.0;
            self.cold_starts = 1;
            self.warmup_seconds = 0.5;
            self.litellm_cold_starts = 0;
        }
        self
    }
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.max(0.0))
}

/// One system under load.
pub struct Case {
    /// Short id (`direct`, `off`, `otlp`, `off-ui`, `otlp-noui`, `litellm`).
    pub id: String,
    /// Label in the report.
    pub name: String,
    /// Where the load goes.
    pub target: Target,
    /// The gateway process, if any (direct has none).
    pub child: Option<process::Guard>,
    /// How it was started.
    pub launch: Option<process::Launch>,
    /// The receiver its spans go to, if traced.
    pub receiver: Option<receiver::Receiver>,
    /// Whether its spans should number exactly `SPANS_PER_REQUEST` per request.
    pub exact_spans: bool,
    /// Results so far.
    pub results: report::CaseResults,
}

impl Case {
    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.0.id())
    }

    /// CPU time of the gateway process and its workers so far (`None` for direct).
    fn cpu(&self) -> Option<Duration> {
        self.pid().and_then(process::tree_cpu_time)
    }

    fn rss_kib(&self) -> Option<u64> {
        self.pid().and_then(process::tree_rss_kib)
    }

    /// Counts what was sent to it, for the span check.
    fn sent(&mut self, o: &Outcome) {
        self.results.requests_sent += o.ok + o.errors;
    }

    /// Waits for the spans of `requests` requests beyond `before` spans.
    async fn span_check(&self, before: u64, requests: u64) -> Option<report::SpanCheck> {
        let rx = self.receiver.as_ref()?;
        let expected = requests * SPANS_PER_REQUEST;
        let target = if self.exact_spans {
            before + expected
        } else {
            u64::MAX
        };
        let now = rx
            .settle(target, Duration::from_secs(3), Duration::from_secs(20))
            .await;
        Some(report::SpanCheck {
            requests,
            expected: self.exact_spans.then_some(expected),
            received: now.saturating_sub(before),
        })
    }
}

fn traceway_config(api_base: &str, otel: bool) -> String {
    let mut c = format!(
        "model_list:\n  - model_name: bench\n    litellm_params:\n      model: openai/{model}\n      api_base: {api_base}\n      api_key: sk-upstream-bench\n",
        model = upstream::MODEL
    );
    if otel {
        c.push_str("litellm_settings:\n  callbacks: [\"otel\"]\n");
    }
    c
}

/// A Traceway case: its id, label, whether OTLP is on, whether the `/ui` trace buffer is kept.
struct TracewayCase {
    id: &'static str,
    name: &'static str,
    otlp: bool,
    ui_buffer: bool,
}

const TRACEWAY_CASES: &[TracewayCase] = &[
    TracewayCase {
        id: "off",
        name: "Traceway, tracing off",
        otlp: false,
        ui_buffer: false,
    },
    TracewayCase {
        id: "otlp",
        name: "Traceway, OTLP on",
        otlp: true,
        ui_buffer: true,
    },
    TracewayCase {
        id: "off-ui",
        name: "Traceway, tracing off, /ui trace buffer on",
        otlp: false,
        ui_buffer: true,
    },
    TracewayCase {
        id: "otlp-noui",
        name: "Traceway, OTLP on, /ui trace buffer off",
        otlp: true,
        ui_buffer: false,
    },
];

/// How to start the `traceway` binary as case `id` on `config`: the `/ui` trace buffer kept or
/// not, OTLP export to `otlp` if given, `extra` environment on top of `--traceway-env`.
fn traceway_launch(
    cli: &Cli,
    id: &str,
    ui_buffer: bool,
    config: &std::path::Path,
    otlp: Option<&receiver::Receiver>,
    extra: &[(String, String)],
) -> anyhow::Result<process::Launch> {
    let port = process::free_port()?;
    let mut env = vec![("RUST_LOG".to_owned(), "warn".to_owned())];
    // The `/ui` page's in-memory trace buffer, said explicitly either way: it is on by default
    // only with tracing on, and asked for it records spans with tracing off too.
    let traces = if ui_buffer { "200" } else { "0" };
    env.push(("TRACEWAY_UI_TRACES".to_owned(), traces.to_owned()));
    for kv in &cli.traceway_env {
        let (k, v) = kv
            .split_once('=')
            .with_context(|| format!("--traceway-env {kv:?} is not NAME=VALUE"))?;
        env.push((k.to_owned(), v.to_owned()));
    }
    if let Some(rx) = otlp {
        env.push(("OTEL_EXPORTER_OTLP_ENDPOINT".to_owned(), rx.endpoint()));
        env.push((
            "OTEL_EXPORTER_OTLP_PROTOCOL".to_owned(),
            "http/protobuf".to_owned(),
        ));
    }
    env.extend(extra.iter().cloned());
    Ok(process::Launch {
        name: id.to_owned(),
        program: cli.traceway_bin.clone(),
        args: vec![
            "serve".to_owned(),
            "--config".to_owned(),
            config.display().to_string(),
            "--host".to_owned(),
            "127.0.0.1".to_owned(),
            "--port".to_owned(),
            port.to_string(),
        ],
        env,
        log: cli.work_dir.join(format!("traceway-{id}.log")),
        port,
    })
}

fn litellm_launch(
    cli: &Cli,
    config: &std::path::Path,
    rx: &receiver::Receiver,
) -> anyhow::Result<process::Launch> {
    let port = process::free_port()?;
    Ok(process::Launch {
        name: "litellm".to_owned(),
        program: cli.litellm_bin.clone(),
        args: vec![
            "--config".to_owned(),
            config.display().to_string(),
            "--host".to_owned(),
            "127.0.0.1".to_owned(),
            "--port".to_owned(),
            port.to_string(),
        ],
        env: vec![
            ("OTEL_EXPORTER".to_owned(), "otlp_http".to_owned()),
            (
                "OTEL_ENDPOINT".to_owned(),
                format!("{}/v1/traces", rx.endpoint()),
            ),
            // No network here: use the model cost map bundled with the package.
            ("LITELLM_LOCAL_MODEL_COST_MAP".to_owned(), "True".to_owned()),
            // It refuses to start without a master key.
            ("LITELLM_MASTER_KEY".to_owned(), load::API_KEY.to_owned()),
        ],
        log: cli.work_dir.join("litellm.log"),
        port,
    })
}

/// Starts `launch`, waits for its liveliness 200; the cold start and the idle RSS right after.
async fn start(
    launch: &process::Launch,
    limit: Duration,
) -> anyhow::Result<(process::Guard, Duration, Option<u64>)> {
    let launch = launch.clone();
    tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let mut child = launch.spawn()?;
        let cold = process::wait_live(&mut child, launch.port, started, limit, &launch.log);
        let guard = process::Guard(child);
        let cold = cold?;
        let rss = process::tree_rss_kib(guard.0.id());
        Ok((guard, cold, rss))
    })
    .await?
}

/// `n` cold starts of `launch` (each a fresh process on a fresh port, stopped after it), then the
/// process the load goes to; every start's time and RSS right after it are in the results.
async fn launched(
    launch: &process::Launch,
    n: usize,
    limit: Duration,
) -> anyhow::Result<(process::Guard, report::CaseResults)> {
    let mut results = report::CaseResults::default();
    for _ in 0..n {
        let mut l = launch.clone();
        l.port = process::free_port()?;
        if let Some(p) = l.args.iter().position(|a| a == "--port") {
            l.args[p + 1] = l.port.to_string();
        }
        let (mut guard, cold, rss) = start(&l, limit).await?;
        results.cold_starts.push(cold);
        results.rss_at_start.extend(rss);
        tokio::task::spawn_blocking(move || {
            process::terminate(&mut guard.0, Duration::from_secs(10))
        })
        .await??;
    }
    let (guard, cold, rss) = start(launch, limit).await?;
    results.cold_starts.push(cold);
    results.rss_at_start.extend(rss);
    Ok((guard, results))
}

/// Samples the RSS of `pid` (and its children) every 50 ms until `stop`; the peak.
async fn sample_rss(pid: Option<u32>, stop: tokio::sync::watch::Receiver<bool>) -> Option<u64> {
    let pid = pid?;
    let mut peak = None;
    loop {
        if let Some(r) = process::tree_rss_kib(pid) {
            peak = Some(peak.map_or(r, |p: u64| p.max(r)));
        }
        if *stop.borrow() {
            return peak;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs one load phase on `case`, with the CPU time the gateway and this harness spent on it.
async fn measured(
    case: &Case,
    phase: impl std::future::Future<Output = anyhow::Result<Outcome>>,
) -> anyhow::Result<(Outcome, report::Cpu)> {
    let (gw0, me0) = (case.cpu(), process::cpu_time(None));
    let o = phase.await?;
    let (gw1, me1) = (case.cpu(), process::cpu_time(None));
    let diff = |a: Option<Duration>, b: Option<Duration>| Some(b?.saturating_sub(a?));
    let cpu = report::Cpu {
        gateway: diff(gw0, gw1),
        harness: diff(me0, me1),
        requests: o.ok,
    };
    Ok((o, cpu))
}

/// The max-throughput phase: `--rounds` closed-loop rounds of `--max-seconds`, interleaved
/// across `cases` (a, b, c, a, b, c, …); requests sent per case. With `prime`, one request
/// (which must succeed) goes to each case right before its round, so that a virtual key is in
/// the gateway's cache when the round starts.
async fn max_throughput(cli: &Cli, cases: &mut [Case], prime: bool) -> anyhow::Result<Vec<u64>> {
    let mut max_requests = vec![0u64; cases.len()];
    for round in 0..cli.rounds {
        for (i, c) in cases.iter_mut().enumerate() {
            eprintln!("  round {} — {}", round + 1, c.name);
            if prime {
                let (status, body) = load::chat_once(&c.target).await?;
                c.results.requests_sent += 1;
                anyhow::ensure!(
                    status.is_success(),
                    "{}: the request before round {} got {status}: {}",
                    c.name,
                    round + 1,
                    String::from_utf8_lossy(&body)
                );
            }
            let phase = load::closed(
                &c.target,
                Kind::Chat,
                cli.concurrency,
                secs(cli.max_seconds),
            );
            let (o, cpu) = measured(c, phase).await?;
            c.sent(&o);
            max_requests[i] += o.ok + o.errors;
            c.results.max_cpu.add(&cpu);
            c.results.max_rounds.push(o);
        }
    }
    Ok(max_requests)
}

fn spans_now(c: &Case) -> u64 {
    c.receiver.as_ref().map_or(0, receiver::Receiver::spans)
}

async fn run(cli: Cli) -> anyhow::Result<String> {
    let cli = cli.quick();
    std::fs::create_dir_all(&cli.work_dir)
        .with_context(|| format!("creating {}", cli.work_dir.display()))?;
    for id in &cli.cases {
        anyhow::ensure!(
            ["direct", "forwarder", "nginx"].contains(&id.as_str())
                || TRACEWAY_CASES.iter().any(|c| c.id == id),
            "unknown case {id:?} (known: direct, forwarder, nginx, off, otlp, off-ui, otlp-noui)"
        );
    }
    let machine = machine::Machine::read();
    let load_start = machine::load_average();
    let started = Instant::now();

    let up = upstream::start(upstream::UpstreamSettings {
        latency: Duration::from_millis(cli.upstream_latency_ms),
        stream_chunks: cli.stream_chunks,
        stream_gap: Duration::from_millis(cli.stream_gap_ms),
    })
    .await?;

    let off_cfg = cli.work_dir.join("traceway-off.yaml");
    let otlp_cfg = cli.work_dir.join("traceway-otlp.yaml");
    std::fs::write(&off_cfg, traceway_config(&up.api_base(), false))?;
    std::fs::write(&otlp_cfg, traceway_config(&up.api_base(), true))?;

    let path = "/v1/chat/completions".to_owned();
    let start_limit = Duration::from_secs(20);
    let mut cases = Vec::new();
    let mut notes = Vec::new();
    for id in &cli.cases {
        if id == "forwarder" || id == "nginx" {
            match start_reference(&cli, id, up.addr, &path, start_limit).await {
                Ok(case) => cases.push(case),
                Err(e) => {
                    eprintln!("{id} left out: {e:#}");
                    notes.push(format!("The `{id}` case was asked for but left out: {e:#}"));
                }
            }
            continue;
        }
        if id == "direct" {
            cases.push(Case {
                id: id.clone(),
                name: "direct to mock".to_owned(),
                target: Target::new(up.addr, &path, upstream::MODEL),
                child: None,
                launch: None,
                receiver: None,
                exact_spans: false,
                results: report::CaseResults::default(),
            });
            continue;
        }
        let Some(tc) = TRACEWAY_CASES.iter().find(|c| c.id == id) else {
            continue;
        };
        eprintln!("cold starts: {} …", tc.name);
        // Each traced case has its own receiver, so that its count is its own.
        let rx = if tc.otlp {
            Some(receiver::start().await?)
        } else {
            None
        };
        let cfg = if tc.otlp { &otlp_cfg } else { &off_cfg };
        let launch = traceway_launch(&cli, tc.id, tc.ui_buffer, cfg, rx.as_ref(), &[])?;
        let (guard, results) = launched(&launch, cli.cold_starts, start_limit).await?;
        cases.push(Case {
            id: id.clone(),
            name: tc.name.to_owned(),
            target: Target::new(([127, 0, 0, 1], launch.port).into(), &path, "bench"),
            child: Some(guard),
            launch: Some(launch),
            exact_spans: rx.is_some(),
            receiver: rx,
            results,
        });
    }

    let mut litellm_note = None;
    if cli.with_litellm {
        match start_litellm(&cli, &up, &path).await {
            Ok(case) => cases.push(case),
            Err(e) => {
                eprintln!("LiteLLM left out: {e:#}");
                litellm_note = Some(format!("LiteLLM was asked for but left out: {e:#}"));
            }
        }
    }

    // Let the fresh processes settle, then idle RSS.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for c in &mut cases {
        c.results.rss_idle = c.rss_kib();
    }

    eprintln!("warm-up …");
    for c in &mut cases {
        let o = load::closed(&c.target, Kind::Chat, 8, secs(cli.warmup_seconds)).await?;
        c.sent(&o);
        let o = load::closed(&c.target, Kind::Stream, 4, secs(cli.warmup_seconds / 2.0)).await?;
        c.sent(&o);
    }
    for c in &mut cases {
        let sent = c.results.requests_sent;
        c.results.spans_warmup = c.span_check(0, sent).await;
    }

    eprintln!("max throughput …");
    let mut span_base: Vec<u64> = cases.iter().map(spans_now).collect();
    let max_requests = max_throughput(&cli, &mut cases, false).await?;
    for (i, c) in cases.iter_mut().enumerate() {
        c.results.spans_max = c.span_check(span_base[i], max_requests[i]).await;
    }

    eprintln!("fixed rate …");
    for c in &mut cases {
        let is_litellm = c.id == "litellm";
        let rate = if is_litellm {
            cli.litellm_rate
        } else {
            cli.rate
        };
        let seconds = if c.receiver.is_some() && !is_litellm {
            cli.otlp_rate_seconds
        } else {
            cli.rate_seconds
        };
        eprintln!("  {} — {rate} req/s for {seconds} s", c.name);
        let before = spans_now(c);
        let phase = load::open(
            &c.target,
            Kind::Chat,
            rate,
            secs(seconds),
            cli.rate_connections,
            Duration::from_secs(10),
        );
        let (o, cpu) = measured(c, phase).await?;
        c.sent(&o);
        let requests = o.ok + o.errors;
        c.results.rate = Some(report::RatePhase {
            rate,
            seconds,
            outcome: o,
            cpu,
        });
        c.results.spans_rate = c.span_check(before, requests).await;
    }

    eprintln!("streams: time to first chunk …");
    span_base = cases.iter().map(spans_now).collect();
    let mut stream_requests = vec![0u64; cases.len()];
    for (i, c) in cases.iter_mut().enumerate() {
        let rate = if c.id == "litellm" {
            cli.stream_rate.min(cli.litellm_rate)
        } else {
            cli.stream_rate
        };
        let phase = load::open(
            &c.target,
            Kind::Stream,
            rate,
            secs(cli.stream_seconds),
            cli.rate_connections,
            Duration::from_secs(10),
        );
        let (o, cpu) = measured(c, phase).await?;
        c.sent(&o);
        stream_requests[i] += o.ok + o.errors;
        c.results.stream = Some(report::RatePhase {
            rate,
            seconds: cli.stream_seconds,
            outcome: o,
            cpu,
        });
    }

    eprintln!("streams: {} concurrent, resident memory …", cli.streams);
    for (i, c) in cases.iter_mut().enumerate() {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let sampler = tokio::spawn(sample_rss(c.pid(), stop_rx));
        let o = load::closed(
            &c.target,
            Kind::Stream,
            cli.streams,
            secs(cli.streams_seconds),
        )
        .await?;
        let _ = stop_tx.send(true);
        c.results.rss_streams = sampler.await?;
        c.sent(&o);
        stream_requests[i] += o.ok + o.errors;
        c.results.streams = Some(o);
    }
    for (i, c) in cases.iter_mut().enumerate() {
        c.results.spans_streams = c.span_check(span_base[i], stream_requests[i]).await;
    }

    tokio::time::sleep(Duration::from_secs(2)).await;
    for c in &mut cases {
        c.results.rss_after = c.rss_kib();
    }

    eprintln!("shutting down …");
    for c in &mut cases {
        let before = spans_now(c);
        if let Some(mut guard) = c.child.take() {
            let status = tokio::task::spawn_blocking(move || {
                process::terminate(&mut guard.0, Duration::from_secs(35))
            })
            .await??;
            c.results.exit = Some(status.to_string());
        }
        if let Some(rx) = &c.receiver {
            let total_expected = c.results.requests_sent * SPANS_PER_REQUEST;
            let target = if c.exact_spans {
                total_expected
            } else {
                u64::MAX
            };
            let _ = rx
                .settle(target, Duration::from_secs(2), Duration::from_secs(5))
                .await;
            c.results.spans_total = Some(report::SpanCheck {
                requests: c.results.requests_sent,
                expected: c.exact_spans.then_some(total_expected),
                received: rx.spans(),
            });
            c.results.spans_at_shutdown = rx.spans().saturating_sub(before);
            c.results.spans_by_name = rx.by_name();
            c.results.undecodable = rx.undecodable();
            c.results.other_exports = rx.other_exports();
        }
    }

    let run = report::Run {
        cli: cli.clone(),
        machine,
        load_start,
        load_end: machine::load_average(),
        wall: started.elapsed(),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        upstream_requests: up.requests(),
        litellm_note,
        notes,
    };
    Ok(report::render(&run, &cases))
}

/// Starts a reference proxy in front of the mock: the bare forwarder (this executable again,
/// with cold starts measured like Traceway's) or nginx (one start).
async fn start_reference(
    cli: &Cli,
    id: &str,
    upstream: std::net::SocketAddr,
    path: &str,
    limit: Duration,
) -> anyhow::Result<Case> {
    let (name, launch, colds) = if id == "nginx" {
        let launch = nginx::launch(&cli.nginx_bin, &cli.work_dir, upstream)?;
        (format!("nginx {}", nginx_version(cli)), launch, 0)
    } else {
        let port = process::free_port()?;
        let launch = process::Launch {
            name: id.to_owned(),
            program: std::env::current_exe().context("finding this executable")?,
            args: vec![
                "--forwarder-upstream".to_owned(),
                upstream.to_string(),
                "--port".to_owned(),
                port.to_string(),
            ],
            env: Vec::new(),
            log: cli.work_dir.join("forwarder.log"),
            port,
        };
        ("bare forwarder (hyper)".to_owned(), launch, cli.cold_starts)
    };
    eprintln!("cold starts: {name} …");
    let (guard, results) = launched(&launch, colds, limit).await?;
    Ok(Case {
        id: id.to_owned(),
        name,
        target: Target::new(([127, 0, 0, 1], launch.port).into(), path, upstream::MODEL),
        child: Some(guard),
        launch: Some(launch),
        receiver: None,
        exact_spans: false,
        results,
    })
}

/// nginx's version line (`nginx -v` prints it on stderr).
fn nginx_version(cli: &Cli) -> String {
    std::process::Command::new(&cli.nginx_bin)
        .arg("-v")
        .output()
        .ok()
        .and_then(|o| {
            let text = String::from_utf8_lossy(&o.stderr).into_owned();
            text.trim()
                .rsplit_once('/')
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "(version unknown)".to_owned())
}

async fn start_litellm(cli: &Cli, up: &upstream::Upstream, path: &str) -> anyhow::Result<Case> {
    anyhow::ensure!(
        cli.litellm_bin.exists(),
        "{} not found (bench/run.sh --with-litellm installs it)",
        cli.litellm_bin.display()
    );
    let rx = receiver::start().await?;
    let cfg = cli.work_dir.join("litellm.yaml");
    std::fs::write(&cfg, traceway_config(&up.api_base(), true))?;
    let launch = litellm_launch(cli, &cfg, &rx)?;
    let limit = Duration::from_secs(120);
    eprintln!("LiteLLM cold starts (seconds each) …");
    let (guard, results) = launched(&launch, cli.litellm_cold_starts, limit).await?;
    Ok(Case {
        id: "litellm".to_owned(),
        name: format!("LiteLLM proxy {}, otel on", litellm_version(cli)),
        target: Target::new(([127, 0, 0, 1], launch.port).into(), path, "bench"),
        child: Some(guard),
        launch: Some(launch),
        receiver: Some(rx),
        exact_spans: false,
        results,
    })
}

/// The installed LiteLLM's version, from the virtualenv's python next to the executable.
fn litellm_version(cli: &Cli) -> String {
    let python = cli.litellm_bin.with_file_name("python");
    std::process::Command::new(python)
        .args([
            "-c",
            "import importlib.metadata as m; print(m.version('litellm'))",
        ])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "(version unknown)".to_owned())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(upstream) = cli.forwarder_upstream {
        return forwarder::serve(cli.port, upstream).await;
    }
    let out = cli.out.clone();
    let text = if cli.auth {
        auth::run(cli).await?
    } else {
        run(cli).await?
    };
    println!("{text}");
    if let Some(path) = out {
        std::fs::write(&path, &text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The harness's own parts against each other, in well under 2 s: mock upstream, both load
    /// modes, JSON and SSE.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn smoke_direct_to_the_mock() {
        let up = upstream::start_small().await;
        let target = Target::new(up.addr, "/v1/chat/completions", upstream::MODEL);
        let o = load::closed(&target, Kind::Chat, 2, Duration::from_millis(150))
            .await
            .unwrap();
        assert!(o.ok > 10, "{} ok", o.ok);
        assert_eq!(o.errors, 0);
        let o = load::open(
            &target,
            Kind::Stream,
            200.0,
            Duration::from_millis(200),
            4,
            Duration::from_secs(1),
        )
        .await
        .unwrap();
        assert_eq!(o.ok, 40);
        assert_eq!(o.errors + o.not_sent, 0);
        // Time to first chunk is well below the whole stream (5 events, 1 ms apart).
        assert!(o.first.value_at_quantile(0.5) < o.latency.value_at_quantile(0.5));
    }

    #[test]
    fn configs_name_the_upstream_and_turn_tracing_on() {
        let off = traceway_config("http://127.0.0.1:1/v1", false);
        assert!(off.contains("api_base: http://127.0.0.1:1/v1"));
        assert!(!off.contains("otel"));
        assert!(traceway_config("http://x/v1", true).contains("callbacks: [\"otel\"]"));
    }
}
