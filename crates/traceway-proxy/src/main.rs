//! The `traceway` binary: `traceway serve` runs the proxy, `traceway check-config` validates a
//! config file. Like LiteLLM's CLI, `traceway --config config.yaml` also serves.

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use traceway_otel::env::ProcessEnv;
use traceway_proxy::app::App;
use traceway_proxy::config::{OverlayEnv, ProxyConfig};

/// jemalloc: less CPU per request than the system allocator on the proxy's small, short-lived
/// allocations (BENCHMARKS.md).
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Default port, as LiteLLM's proxy.
const DEFAULT_PORT: u16 = 4000;

#[derive(Parser)]
#[command(
    name = "traceway",
    version,
    about = "An OpenAI-compatible LLM gateway that traces every call with OpenTelemetry"
)]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy.
    Serve(ServeArgs),
    /// Validate a config file and print every problem found.
    CheckConfig {
        /// The config file.
        #[arg(long)]
        config: PathBuf,
    },
}

#[derive(Args, Clone)]
struct ServeArgs {
    /// LiteLLM-style config.yaml; without it, a `mock` model with console traces.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Address to listen on (use 0.0.0.0 in a container).
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port to listen on.
    #[arg(long, env = "PORT", default_value_t = DEFAULT_PORT)]
    port: u16,
    /// Trace every request with OpenTelemetry, whatever the config's callbacks say.
    #[arg(long)]
    otel: bool,
    /// Seconds in-flight requests get to finish after SIGTERM/SIGINT; those still running then
    /// are ended with a 503 (an error event on a stream) and their spans flushed.
    #[arg(long, env = "TRACEWAY_SHUTDOWN_GRACE", value_name = "SECONDS", value_parser = grace_seconds,
          default_value_t = traceway_proxy::server::DEFAULT_SHUTDOWN_GRACE.as_secs_f64())]
    shutdown_grace: f64,
}

/// Longest accepted grace period: an hour is already longer than any orchestrator waits.
const MAX_SHUTDOWN_GRACE: f64 = 3600.0;

fn grace_seconds(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(s) if (0.0..=MAX_SHUTDOWN_GRACE).contains(&s) => Ok(s),
        Ok(s) => Err(format!(
            "{s} is out of range: give seconds between 0 and {MAX_SHUTDOWN_GRACE}"
        )),
        Err(_) => Err(format!(
            "{text:?} is not a number of seconds (e.g. 20 or 2.5)"
        )),
    }
}

fn load(path: Option<&Path>) -> Result<ProxyConfig, traceway_proxy::config::ConfigError> {
    match path {
        Some(p) => ProxyConfig::load(p, Arc::new(ProcessEnv)),
        None => Ok(ProxyConfig::embedded_defaults(OverlayEnv::process())),
    }
}

fn init_logging() {
    // LITELLM_LOG (INFO, DEBUG …) is honoured for LiteLLM users; RUST_LOG wins when set.
    let filter = std::env::var("RUST_LOG")
        .ok()
        .or_else(|| std::env::var("LITELLM_LOG").ok().map(|l| l.to_lowercase()))
        .unwrap_or_else(|| "info".to_owned());
    let filter = tracing_subscriber::EnvFilter::try_new(&filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = load(args.config.as_deref())?;
    for w in &config.warnings {
        tracing::warn!("{}: {w}", config.source_name);
    }
    if config.master_key.is_none() {
        tracing::warn!(
            "no master_key set: the proxy is open, anyone who can reach it may call every model"
        );
    }
    let source = config.source_name.clone();
    let models: Vec<String> = config
        .deployments
        .iter()
        .map(|d| d.model_name.clone())
        .collect();
    let app = App::build(config, args.otel)?;
    // The key database and Redis are opened before listening: a bad URL stops start-up here.
    app.connect().await?;
    if let Some(keys) = &app.state.keys {
        let db = keys.database();
        let shared = if keys.has_redis() {
            "rate limits and key invalidation shared through Redis"
        } else {
            "no Redis: rate limits are per instance"
        };
        tracing::info!("virtual keys in {}; {shared}", db.describe());
        if *db == traceway_proxy::config::key_store::Database::InMemory {
            tracing::warn!(
                "virtual keys are kept in memory and lost at exit: set DATABASE_URL (or general_settings.database_url) to keep them"
            );
        }
    }
    let addr = format!("{}:{}", args.host, args.port);
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let tracing_mode = match &app.telemetry {
        // Only the web UI's trace buffer records (no callback, or OTEL_EXPORTER=none).
        Some(t) if t.exporter() == traceway_otel::config::ExporterKind::None => {
            "tracing to the web UI only".to_owned()
        }
        Some(t) => format!("tracing on ({:?} exporter)", t.exporter()),
        None => "tracing off".to_owned(),
    };
    let local = listener.local_addr()?;
    tracing::info!(
        "Traceway {} listening on http://{local} — config {source}, models [{}], {tracing_mode}",
        env!("CARGO_PKG_VERSION"),
        models.join(", ")
    );
    if app.state.config.ui.enabled {
        tracing::info!("web UI on http://{local}/ui");
    }
    let router = app.router();
    let grace = std::time::Duration::from_secs_f64(args.shutdown_grace);
    let stop = async move {
        traceway_proxy::server::shutdown_signal().await;
        tracing::info!(
            "shutting down: no new connections, in-flight requests get {:.1} s to finish",
            grace.as_secs_f64()
        );
        grace
    };
    traceway_proxy::server::serve(listener, router, stop, app.state.abort.clone()).await?;
    if let Some(keys) = &app.state.keys {
        keys.write_spend().await;
    }
    tracing::info!("shutting down: no request in flight any more, flushing telemetry");
    app.shutdown_telemetry();
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    traceway::client::install_crypto_provider();
    match cli.command {
        Some(Command::CheckConfig { config }) => {
            match ProxyConfig::load(&config, Arc::new(ProcessEnv)) {
                Ok(c) => {
                    for w in &c.warnings {
                        println!("warning: {w}");
                    }
                    println!(
                        "{}: OK ({} deployments)",
                        c.source_name,
                        c.deployments.len()
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprint!("{e}");
                    ExitCode::FAILURE
                }
            }
        }
        command => {
            let args = match command {
                Some(Command::Serve(a)) => a,
                _ => cli.serve,
            };
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("error: cannot start the async runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match rt.block_on(serve(args)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
