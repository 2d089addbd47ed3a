//! The Markdown report: targets of issues 4 and 9 with the measured value and a verdict, then
//! the raw figures of every phase, the machine and the exact commands.

use crate::load::{Hist, Outcome};
use crate::{Case, Cli};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

/// Spans received against spans expected for a set of requests.
#[derive(Debug, Clone)]
pub struct SpanCheck {
    /// Requests sent (answered or failed).
    pub requests: u64,
    /// Spans expected (`None` where the count per request is not fixed, e.g. LiteLLM).
    pub expected: Option<u64>,
    /// Spans received.
    pub received: u64,
}

impl SpanCheck {
    fn text(&self) -> String {
        match self.expected {
            Some(e) => format!(
                "{} / {} ({} lost)",
                self.received,
                e,
                e.saturating_sub(self.received)
            ),
            None => format!(
                "{} for {} requests ({:.2} per request)",
                self.received,
                self.requests,
                self.received as f64 / self.requests.max(1) as f64
            ),
        }
    }

    fn lost(&self) -> Option<u64> {
        self.expected.map(|e| e.saturating_sub(self.received))
    }
}

/// CPU time spent during a phase: by the gateway process and by this harness (load generator,
/// mock upstream and receiver together).
#[derive(Debug, Clone, Default)]
pub struct Cpu {
    /// The gateway process (`None` for direct).
    pub gateway: Option<Duration>,
    /// This process.
    pub harness: Option<Duration>,
    /// Requests answered in the phase.
    pub requests: u64,
}

impl Cpu {
    /// Adds another phase's figures.
    pub fn add(&mut self, other: &Cpu) {
        let sum = |a: Option<Duration>, b: Option<Duration>| match (a, b) {
            (Some(a), Some(b)) => Some(a + b),
            (a, b) => a.or(b),
        };
        self.gateway = sum(self.gateway, other.gateway);
        self.harness = sum(self.harness, other.harness);
        self.requests += other.requests;
    }

    fn per_request(d: Option<Duration>, n: u64) -> String {
        match d {
            Some(d) if n > 0 => format!("{:.0}", d.as_secs_f64() * 1e6 / n as f64),
            _ => "—".to_owned(),
        }
    }

    /// Gateway CPU µs per request.
    fn gateway_us(&self) -> String {
        Self::per_request(self.gateway, self.requests)
    }

    /// Harness CPU µs per request.
    fn harness_us(&self) -> String {
        Self::per_request(self.harness, self.requests)
    }
}

/// A fixed-rate phase.
pub struct RatePhase {
    /// Requests per second asked for.
    pub rate: f64,
    /// Seconds.
    pub seconds: f64,
    /// What happened.
    pub outcome: Outcome,
    /// CPU spent.
    pub cpu: Cpu,
}

/// Everything measured for one case.
#[derive(Default)]
pub struct CaseResults {
    /// Cold starts (spawn to first liveliness 200).
    pub cold_starts: Vec<Duration>,
    /// RSS right after each cold start, KiB.
    pub rss_at_start: Vec<u64>,
    /// RSS of the long-running process before any load, KiB.
    pub rss_idle: Option<u64>,
    /// Peak RSS during the concurrent-streams phase, KiB.
    pub rss_streams: Option<u64>,
    /// RSS 2 s after the last load, KiB.
    pub rss_after: Option<u64>,
    /// Max-throughput rounds.
    pub max_rounds: Vec<Outcome>,
    /// CPU spent over all max-throughput rounds.
    pub max_cpu: Cpu,
    /// The fixed-rate phase.
    pub rate: Option<RatePhase>,
    /// The time-to-first-chunk phase.
    pub stream: Option<RatePhase>,
    /// The concurrent-streams phase.
    pub streams: Option<Outcome>,
    /// Requests sent in all.
    pub requests_sent: u64,
    /// Spans of the warm-up.
    pub spans_warmup: Option<SpanCheck>,
    /// Spans of the max-throughput phase.
    pub spans_max: Option<SpanCheck>,
    /// Spans of the fixed-rate phase.
    pub spans_rate: Option<SpanCheck>,
    /// Spans of both streaming phases.
    pub spans_streams: Option<SpanCheck>,
    /// Spans of the whole run, after shutdown.
    pub spans_total: Option<SpanCheck>,
    /// Spans that arrived between SIGTERM and the end (the shutdown flush).
    pub spans_at_shutdown: u64,
    /// Spans by name.
    pub spans_by_name: BTreeMap<String, u64>,
    /// Trace export requests the receiver could not decode.
    pub undecodable: u64,
    /// Metrics and logs export requests the receiver accepted.
    pub other_exports: u64,
    /// Exit status after SIGTERM.
    pub exit: Option<String>,
}

impl CaseResults {
    /// Median requests/s over the max-throughput rounds.
    pub fn max_rps(&self) -> Option<f64> {
        median(self.max_rounds.iter().map(Outcome::rps).collect())
    }

    fn max_merged(&self) -> Option<(Hist, u64)> {
        let mut it = self.max_rounds.iter();
        let first = it.next()?;
        let mut h = first.latency.clone();
        let mut errors = first.errors;
        for o in it {
            let _ = h.add(&o.latency);
            errors += o.errors;
        }
        Some((h, errors))
    }
}

/// The run as a whole.
pub struct Run {
    /// The options in force (after `--quick`).
    pub cli: Cli,
    /// The machine.
    pub machine: crate::machine::Machine,
    /// Load average before.
    pub load_start: String,
    /// Load average after.
    pub load_end: String,
    /// Wall time.
    pub wall: Duration,
    /// This harness's command line.
    pub command: String,
    /// Requests the mock upstream answered.
    pub upstream_requests: u64,
    /// Why LiteLLM is missing, when it was asked for.
    pub litellm_note: Option<String>,
    /// Anything else the reader should know (cases left out, settings of the auth benchmark).
    pub notes: Vec<String>,
}

/// The median, over interleaved max-throughput rounds, of `b`'s requests/s as a share of `a`'s
/// in the same round. Adjacent rounds see the same neighbours on a shared host, whose load moves
/// more between rounds than the cases differ; each case's own median mixes those moves in.
fn paired_share(a: &[Outcome], b: &[Outcome]) -> Option<f64> {
    median(
        a.iter()
            .zip(b)
            .filter(|(x, _)| x.rps() > 0.0)
            .map(|(x, y)| y.rps() / x.rps())
            .collect(),
    )
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    Some(v[v.len() / 2])
}

fn median_dur(v: &[Duration]) -> Option<Duration> {
    let mut v = v.to_vec();
    v.sort();
    v.get(v.len() / 2).copied()
}

fn ms(h: &Hist, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1e6
}

fn mib(kib: Option<u64>) -> String {
    kib.map_or("—".to_owned(), |k| {
        format!("{:.1} MiB", k as f64 / 1024.0)
    })
}

fn yes(b: bool) -> &'static str {
    if b { "**met**" } else { "**not met**" }
}

const QS: [(f64, &str); 4] = [(0.5, "p50"), (0.9, "p90"), (0.99, "p99"), (0.999, "p99.9")];

fn pcts(h: &Hist) -> String {
    QS.iter()
        .map(|(q, _)| format!("{:.3}", ms(h, *q)))
        .collect::<Vec<_>>()
        .join(" | ")
}

fn added(h: &Hist, base: Option<&Hist>, q: f64) -> String {
    match base {
        Some(b) => format!("{:+.3}", ms(h, q) - ms(b, q)),
        None => "—".to_owned(),
    }
}

/// The machine, the load, the harness's command and every gateway's command line.
fn header(s: &mut String, run: &Run, cases: &[Case]) {
    let m = &run.machine;
    let cli = &run.cli;
    let _ = writeln!(
        s,
        "Machine: {} × {} ({} logical CPUs), {:.1} GiB RAM, Linux {}. Code: {}. Load average \
         (1/5/15 min) {} before, {} after; run took {:.0} s.\n",
        m.cpus,
        m.cpu_model,
        m.cpus,
        m.mem_gib,
        m.kernel,
        m.revision,
        run.load_start,
        run.load_end,
        run.wall.as_secs_f64()
    );
    let _ = writeln!(s, "Harness: `{}`\n", run.command);
    for c in cases {
        if let Some(l) = &c.launch {
            let _ = writeln!(s, "- {}: `{}`", c.name, l.command_line());
        }
    }
    let _ = writeln!(
        s,
        "- mock upstream: in the harness process, {} ms latency, streams of {} content chunks {} ms apart; {} requests answered\n",
        cli.upstream_latency_ms, cli.stream_chunks, cli.stream_gap_ms, run.upstream_requests
    );
    if let Some(n) = &run.litellm_note {
        let _ = writeln!(s, "{n}\n");
    }
    for n in &run.notes {
        let _ = writeln!(s, "{n}\n");
    }
}

/// Renders the whole report.
pub fn render(run: &Run, cases: &[Case]) -> String {
    let mut s = String::new();
    let cli = &run.cli;
    let by_id = |id: &str| cases.iter().find(|c| c.id == id);
    let direct = by_id("direct");
    let off = by_id("off");
    let otlp = by_id("otlp");
    let lite = by_id("litellm");
    header(&mut s, run, cases);

    // Targets.
    let _ = writeln!(s, "### Targets (issues 4 and 9)\n");
    let _ = writeln!(s, "| target | measured | verdict |\n|---|---|---|");
    let d_rps = direct.and_then(|c| c.results.max_rps());
    let off_rps = off.and_then(|c| c.results.max_rps());
    let otlp_rps = otlp.and_then(|c| c.results.max_rps());
    if let (Some(d), Some(o)) = (d_rps, otlp_rps) {
        let _ = writeln!(
            s,
            "| throughput ≥ 50% of direct (OTLP on) | {:.0}% ({:.0} vs {:.0} req/s) | {} |",
            100.0 * o / d,
            o,
            d,
            yes(o >= 0.5 * d)
        );
    }
    if let (Some(d), Some(o)) = (d_rps, off_rps) {
        let _ = writeln!(
            s,
            "| throughput ≥ 50% of direct (tracing off) | {:.0}% ({:.0} vs {:.0} req/s) | {} |",
            100.0 * o / d,
            o,
            d,
            yes(o >= 0.5 * d)
        );
    }
    // The reference proxies: what any gateway costs on this harness, and Traceway against them.
    for r in [by_id("forwarder"), by_id("nginx")].into_iter().flatten() {
        let (Some(d), Some(rr)) = (direct, r.results.max_rps()) else {
            continue;
        };
        let of_direct = paired_ratio(&r.results, &d.results).unwrap_or(0.0);
        let mut cell = format!(
            "{:.0}% of direct ({rr:.0} req/s; {} µs of CPU per request)",
            100.0 * of_direct,
            r.results.max_cpu.gateway_us()
        );
        for t in [off, otlp].into_iter().flatten() {
            if let Some(x) = paired_ratio(&t.results, &r.results) {
                let _ = write!(cell, "; {}: {:.0}% of it", t.name, 100.0 * x);
            }
        }
        let _ = writeln!(
            s,
            "| (reference) {}, max throughput, round by round | {cell} | — |",
            r.name
        );
    }
    fn rate_h(c: Option<&Case>) -> Option<&Hist> {
        c.and_then(|c| c.results.rate.as_ref())
            .map(|r| &r.outcome.latency)
    }
    if let (Some(d), Some(o)) = (rate_h(direct), rate_h(otlp)) {
        let a50 = ms(o, 0.5) - ms(d, 0.5);
        let a99 = ms(o, 0.99) - ms(d, 0.99);
        let _ = writeln!(
            s,
            "| added p50 ≤ 0.15 ms at {:.0} req/s, OTLP on | {a50:+.3} ms | {} |",
            cli.rate,
            yes(a50 <= 0.15)
        );
        let _ = writeln!(
            s,
            "| added p99 ≤ 1 ms at {:.0} req/s, OTLP on | {a99:+.3} ms | {} |",
            cli.rate,
            yes(a99 <= 1.0)
        );
    }
    if let (Some(f), Some(o), Some(off), Some(otlp)) = (off_rps, otlp_rps, off, otlp) {
        let cost = 100.0 * (1.0 - o / f);
        let paired = paired_share(&off.results.max_rounds, &otlp.results.max_rounds)
            .map_or(cost, |share| 100.0 * (1.0 - share));
        // Met only when both estimates say so.
        let _ = writeln!(
            s,
            "| tracing on costs ≤ 10% of throughput | {paired:.1}% by round pairs, {cost:.1}% by \
             medians ({o:.0} vs {f:.0} req/s) | {} |",
            yes(paired <= 10.0 && cost <= 10.0)
        );
    }
    if let (Some(f), Some(o)) = (rate_h(off), rate_h(otlp)) {
        let c50 = ms(o, 0.5) - ms(f, 0.5);
        let _ = writeln!(
            s,
            "| tracing on costs ≤ 0.1 ms at p50 ({:.0} req/s) | {c50:+.3} ms | {} |",
            cli.rate,
            yes(c50 <= 0.1)
        );
    }
    if let Some(c) = otlp
        && let (Some(sc), Some(r)) = (&c.results.spans_rate, &c.results.rate)
    {
        let lost = sc.lost().unwrap_or(0);
        let clean = lost == 0 && r.outcome.errors == 0 && r.outcome.not_sent == 0;
        let _ = writeln!(
            s,
            "| zero spans lost at {:.0} req/s for {:.0} s | {} | {} |",
            r.rate,
            r.seconds,
            sc.text(),
            yes(clean && r.seconds >= 60.0 && r.rate >= 1000.0)
        );
    }
    for c in [off, otlp].into_iter().flatten() {
        let idle = c.results.rss_idle;
        let _ = writeln!(
            s,
            "| RSS ≤ 30 MB idle ({}) | {} | {} |",
            c.name,
            mib(idle),
            yes(idle.is_some_and(|k| k as f64 <= 30.0 * 1e6 / 1024.0))
        );
    }
    for c in [off, otlp].into_iter().flatten() {
        let peak = c.results.rss_streams;
        let _ = writeln!(
            s,
            "| RSS ≤ 80 MB at {} streams ({}) | {} peak | {} |",
            cli.streams,
            c.name,
            mib(peak),
            yes(peak.is_some_and(|k| k as f64 <= 80.0 * 1e6 / 1024.0))
        );
    }
    for c in [off, otlp].into_iter().flatten() {
        if let Some(med) = median_dur(&c.results.cold_starts) {
            let _ = writeln!(
                s,
                "| cold start ≤ 50 ms ({}) | {:.1} ms median of {} | {} |",
                c.name,
                med.as_secs_f64() * 1e3,
                c.results.cold_starts.len(),
                yes(med <= Duration::from_millis(50))
            );
        }
    }
    if let (Some(l), Some(t)) = (lite, otlp)
        && let (Some(lr), Some(tr)) = (l.results.max_rps(), t.results.max_rps())
    {
        let _ = writeln!(
            s,
            "| (comparison) Traceway OTLP on vs LiteLLM otel, max throughput | {:.0}× ({tr:.0} vs {lr:.0} req/s) | — |",
            tr / lr.max(1e-9)
        );
    }

    // Max throughput.
    let _ = writeln!(
        s,
        "\n### Max throughput (closed loop, {} keep-alive connections, {} round(s) of {} s interleaved across cases; median round)\n",
        cli.concurrency, cli.rounds, cli.max_seconds
    );
    let _ = writeln!(
        s,
        "| case | req/s (median) | rounds | vs direct | p50 ms | p90 ms | p99 ms | p99.9 ms | errors | gateway CPU µs/req | harness CPU µs/req | spans |\n|---|---|---|---|---|---|---|---|---|---|---|---|"
    );
    for c in cases {
        let Some(rps) = c.results.max_rps() else {
            continue;
        };
        let rounds = c
            .results
            .max_rounds
            .iter()
            .map(|o| format!("{:.0}", o.rps()))
            .collect::<Vec<_>>()
            .join(", ");
        let ratio = d_rps.map_or("—".to_owned(), |d| format!("{:.0}%", 100.0 * rps / d));
        let (h, errors) = match c.results.max_merged() {
            Some(x) => x,
            None => continue,
        };
        let spans = c
            .results
            .spans_max
            .as_ref()
            .map_or("—".to_owned(), SpanCheck::text);
        let _ = writeln!(
            s,
            "| {} | {rps:.0} | {rounds} | {ratio} | {} | {errors} | {} | {} | {spans} |",
            c.name,
            pcts(&h),
            c.results.max_cpu.gateway_us(),
            c.results.max_cpu.harness_us()
        );
    }

    // Fixed rate.
    let _ = writeln!(
        s,
        "\n### Fixed rate (open loop, {} connections; latency from each request's scheduled send time)\n",
        cli.rate_connections
    );
    let _ = writeln!(
        s,
        "| case | rate × s | achieved req/s | p50 ms | p90 ms | p99 ms | p99.9 ms | added p50 | added p99 | added p99.9 | errors / not sent | gateway CPU µs/req | spans |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    );
    let d_rate = rate_h(direct);
    for c in cases {
        let Some(r) = &c.results.rate else { continue };
        let o = &r.outcome;
        let base = d_rate.filter(|_| (r.rate - cli.rate).abs() < 1e-9);
        let spans = c
            .results
            .spans_rate
            .as_ref()
            .map_or("—".to_owned(), SpanCheck::text);
        let _ = writeln!(
            s,
            "| {} | {:.0} × {:.0} | {:.0} | {} | {} | {} | {} | {} / {} | {} | {spans} |",
            c.name,
            r.rate,
            r.seconds,
            o.rps(),
            pcts(&o.latency),
            added(&o.latency, base, 0.5),
            added(&o.latency, base, 0.99),
            added(&o.latency, base, 0.999),
            o.errors,
            o.not_sent,
            r.cpu.gateway_us()
        );
    }
    let _ = writeln!(
        s,
        "\nService time (from the actual send, so without the pacer's own delay), same phases:\n"
    );
    let _ = writeln!(
        s,
        "| case | p50 ms | p90 ms | p99 ms | p99.9 ms |\n|---|---|---|---|---|"
    );
    for c in cases {
        if let Some(r) = &c.results.rate {
            let _ = writeln!(s, "| {} | {} |", c.name, pcts(&r.outcome.service));
        }
    }

    // Streaming.
    let _ = writeln!(
        s,
        "\n### Streaming: time to first chunk (open loop; {} content chunks {} ms apart)\n",
        cli.stream_chunks, cli.stream_gap_ms
    );
    let _ = writeln!(
        s,
        "| case | streams/s × s | TTFC p50 ms | TTFC p90 | TTFC p99 | TTFC p99.9 | added TTFC p50 | added TTFC p99 | whole stream p50 ms | errors / not sent |\n|---|---|---|---|---|---|---|---|---|---|"
    );
    let d_stream = direct
        .and_then(|c| c.results.stream.as_ref())
        .map(|r| (&r.outcome.first, r.rate));
    for c in cases {
        let Some(r) = &c.results.stream else { continue };
        let o = &r.outcome;
        let base = d_stream
            .filter(|(_, rate)| (rate - r.rate).abs() < 1e-9)
            .map(|(h, _)| h);
        let _ = writeln!(
            s,
            "| {} | {:.0} × {:.0} | {} | {} | {} | {:.3} | {} / {} |",
            c.name,
            r.rate,
            r.seconds,
            pcts(&o.first),
            added(&o.first, base, 0.5),
            added(&o.first, base, 0.99),
            ms(&o.latency, 0.5),
            o.errors,
            o.not_sent
        );
    }

    // Memory and start-up.
    let _ = writeln!(s, "\n### Memory and start-up\n");
    let _ = writeln!(
        s,
        "| case | cold start median (min–max, n) | RSS right after start | RSS idle | RSS peak, {} concurrent streams (streams/s) | RSS idle after load | exit on SIGTERM |\n|---|---|---|---|---|---|---|",
        cli.streams
    );
    for c in cases.iter().filter(|c| c.launch.is_some()) {
        let r = &c.results;
        let cold = match median_dur(&r.cold_starts) {
            Some(med) => {
                let min = r.cold_starts.iter().min().copied().unwrap_or(med);
                let max = r.cold_starts.iter().max().copied().unwrap_or(med);
                format!(
                    "{:.1} ms ({:.1}–{:.1}, {})",
                    med.as_secs_f64() * 1e3,
                    min.as_secs_f64() * 1e3,
                    max.as_secs_f64() * 1e3,
                    r.cold_starts.len()
                )
            }
            None => "—".to_owned(),
        };
        let at_start = median(r.rss_at_start.iter().map(|k| *k as f64).collect()).map(|k| k as u64);
        let streams = r.streams.as_ref().map_or("—".to_owned(), |o| {
            format!("{:.0}/s, {} errors", o.rps(), o.errors)
        });
        let _ = writeln!(
            s,
            "| {} | {cold} | {} | {} | {} ({streams}) | {} | {} |",
            c.name,
            mib(at_start),
            mib(r.rss_idle),
            mib(r.rss_streams),
            mib(r.rss_after),
            r.exit.as_deref().unwrap_or("—")
        );
    }

    // Spans.
    let _ = writeln!(s, "\n### Spans received\n");
    for c in cases {
        let r = &c.results;
        let Some(total) = &r.spans_total else {
            continue;
        };
        let phase = |p: &Option<SpanCheck>| p.as_ref().map_or("—".to_owned(), SpanCheck::text);
        let names = r
            .spans_by_name
            .iter()
            .map(|(n, k)| format!("`{n}` {k}"))
            .collect::<Vec<_>>()
            .join(", ");
        let _ = writeln!(
            s,
            "- {}: whole run {} (of which {} arrived after SIGTERM); warm-up {}; max throughput {}; fixed rate {}; streams {}. By name: {names}. Undecodable trace exports: {}; metrics/logs exports (not decoded): {}.",
            c.name,
            total.text(),
            r.spans_at_shutdown,
            phase(&r.spans_warmup),
            phase(&r.spans_max),
            phase(&r.spans_rate),
            phase(&r.spans_streams),
            r.undecodable,
            r.other_exports
        );
    }
    s
}

/// `part / whole` as a percentage, to one decimal.
fn pct(part: f64, whole: f64) -> String {
    if whole > 0.0 {
        format!("{:.1}%", 100.0 * part / whole)
    } else {
        "—".to_owned()
    }
}

/// The median over rounds of `a`'s req/s divided by `b`'s in the same round: rounds are
/// interleaved, so a neighbour's load that slows one round slows both sides of its ratio.
pub fn paired_ratio(a: &CaseResults, b: &CaseResults) -> Option<f64> {
    median(
        a.max_rounds
            .iter()
            .zip(&b.max_rounds)
            .filter(|(_, b)| b.rps() > 0.0)
            .map(|(a, b)| a.rps() / b.rps())
            .collect(),
    )
}

/// Gateway CPU µs per request over the max-throughput rounds.
fn cpu_us(r: &CaseResults) -> Option<f64> {
    let cpu = &r.max_cpu;
    let d = cpu.gateway?;
    (cpu.requests > 0).then(|| d.as_secs_f64() * 1e6 / cpu.requests as f64)
}

/// Renders the report of `--auth`: the keys issue's target, then max throughput and CPU per
/// request of every case against the master key and no auth, then the fixed-rate latencies.
pub fn render_auth(run: &Run, cases: &[Case]) -> String {
    let mut s = String::new();
    let cli = &run.cli;
    let by_id = |id: &str| cases.iter().find(|c| c.id == id);
    let noauth = by_id("noauth");
    let master = by_id("master");
    header(&mut s, run, cases);

    let _ = writeln!(
        s,
        "### Target (keys issue): with the key cached, a virtual key costs ≤ 5% of the master key's throughput\n"
    );
    let _ = writeln!(
        s,
        "| case | req/s vs master key (median rounds) | same, paired by round (median) | CPU µs/request vs master key | verdict (req/s ≥ 95%) | verdict (CPU ≤ 105%) |\n|---|---|---|---|---|---|"
    );
    if let Some(m) = master {
        let m_rps = m.results.max_rps().unwrap_or(0.0);
        let m_cpu = cpu_us(&m.results);
        for c in cases.iter().filter(|c| c.id.starts_with("vkey")) {
            let rps = c.results.max_rps().unwrap_or(0.0);
            let paired = paired_ratio(&c.results, &m.results);
            let cpu = cpu_us(&c.results);
            let cpu_text = match (cpu, m_cpu) {
                (Some(c), Some(m)) => format!("{c:.0} vs {m:.0} µs ({})", pct(c, m)),
                _ => "—".to_owned(),
            };
            let _ = writeln!(
                s,
                "| {} | {} ({rps:.0} vs {m_rps:.0}) | {} | {cpu_text} | {} | {} |",
                c.name,
                pct(rps, m_rps),
                paired.map_or("—".to_owned(), |p| format!("{:.1}%", 100.0 * p)),
                yes(m_rps > 0.0 && rps >= 0.95 * m_rps),
                match (cpu, m_cpu) {
                    (Some(c), Some(m)) => yes(c <= 1.05 * m),
                    _ => "—",
                }
            );
        }
    }

    let _ = writeln!(
        s,
        "\n### Max throughput (closed loop, {} keep-alive connections, {} round(s) of {} s interleaved across cases; median round)\n",
        cli.concurrency, cli.rounds, cli.max_seconds
    );
    let _ = writeln!(
        s,
        "| case | req/s (median) | rounds | vs master key | vs no auth | p50 ms | p90 ms | p99 ms | p99.9 ms | errors | gateway CPU µs/req | CPU vs master key | CPU vs no auth | harness CPU µs/req |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    );
    let m_rps = master.and_then(|c| c.results.max_rps());
    let n_rps = noauth.and_then(|c| c.results.max_rps());
    let m_cpu = master.and_then(|c| cpu_us(&c.results));
    let n_cpu = noauth.and_then(|c| cpu_us(&c.results));
    let vs = |x: Option<f64>, base: Option<f64>| match (x, base) {
        (Some(x), Some(b)) => pct(x, b),
        _ => "—".to_owned(),
    };
    for c in cases {
        let Some(rps) = c.results.max_rps() else {
            continue;
        };
        let Some((h, errors)) = c.results.max_merged() else {
            continue;
        };
        let rounds = c
            .results
            .max_rounds
            .iter()
            .map(|o| format!("{:.0}", o.rps()))
            .collect::<Vec<_>>()
            .join(", ");
        let cpu = cpu_us(&c.results);
        let _ = writeln!(
            s,
            "| {} | {rps:.0} | {rounds} | {} | {} | {} | {errors} | {} | {} | {} | {} |",
            c.name,
            vs(Some(rps), m_rps),
            vs(Some(rps), n_rps),
            pcts(&h),
            c.results.max_cpu.gateway_us(),
            vs(cpu, m_cpu),
            vs(cpu, n_cpu),
            c.results.max_cpu.harness_us()
        );
    }

    if cases.iter().any(|c| c.results.rate.is_some()) {
        let _ = writeln!(
            s,
            "\n### Fixed rate (open loop, {} connections; latency from each request's scheduled send time)\n",
            cli.rate_connections
        );
        let _ = writeln!(
            s,
            "| case | rate × s | achieved req/s | p50 ms | p90 ms | p99 ms | p99.9 ms | p50 vs master key | p99 vs master key | errors / not sent | gateway CPU µs/req |\n|---|---|---|---|---|---|---|---|---|---|---|"
        );
        let m_rate = master
            .and_then(|c| c.results.rate.as_ref())
            .map(|r| &r.outcome.latency);
        for c in cases {
            let Some(r) = &c.results.rate else { continue };
            let o = &r.outcome;
            let _ = writeln!(
                s,
                "| {} | {:.0} × {:.0} | {:.0} | {} | {} | {} | {} / {} | {} |",
                c.name,
                r.rate,
                r.seconds,
                o.rps(),
                pcts(&o.latency),
                added(&o.latency, m_rate, 0.5),
                added(&o.latency, m_rate, 0.99),
                o.errors,
                o.not_sent,
                r.cpu.gateway_us()
            );
        }
    }
    s
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn round(ok: u64) -> Outcome {
        Outcome {
            ok,
            errors: 0,
            not_sent: 0,
            elapsed: Duration::from_secs(1),
            latency: crate::load::histogram().unwrap(),
            first: crate::load::histogram().unwrap(),
            service: crate::load::histogram().unwrap(),
        }
    }

    #[test]
    fn paired_share_compares_rounds_that_ran_side_by_side() {
        // The machine halves its speed for two rounds: each case's median mixes fast and slow
        // rounds, the pairs do not.
        let off: Vec<Outcome> = [10_000, 5_000, 10_000, 5_000, 10_000].map(round).into();
        let on: Vec<Outcome> = [9_000, 4_500, 4_500, 4_500, 9_000].map(round).into();
        let share = paired_share(&off, &on).unwrap();
        assert!((share - 0.9).abs() < 1e-9, "{share}");
        let by_medians = median(on.iter().map(Outcome::rps).collect()).unwrap()
            / median(off.iter().map(Outcome::rps).collect()).unwrap();
        assert!((by_medians - 0.45).abs() < 1e-9, "{by_medians}");
        assert_eq!(
            paired_share(&[round(0)], &[round(5)]),
            None,
            "an empty round is left out"
        );
    }
}
