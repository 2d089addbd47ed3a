//! Gateways under test as child processes: launching, cold start to the first
//! `/health/liveliness` 200, resident memory from `/proc`, and SIGTERM shutdown.

use anyhow::{Context as _, bail};
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Environment variables removed from every child: the harness sets telemetry explicitly.
fn inherited_telemetry_var(name: &str) -> bool {
    name.starts_with("OTEL_")
        || name == "DEBUG_OTEL"
        || name == "USE_OTEL_LITELLM_REQUEST_SPAN"
        || name == "PORT"
}

/// How to start one gateway.
#[derive(Debug, Clone)]
pub struct Launch {
    /// Label in the report.
    pub name: String,
    /// The executable.
    pub program: PathBuf,
    /// Its arguments, the port included.
    pub args: Vec<String>,
    /// Extra environment.
    pub env: Vec<(String, String)>,
    /// Where its stdout and stderr go.
    pub log: PathBuf,
    /// The port it listens on.
    pub port: u16,
}

impl Launch {
    /// The command as a shell line, for the report (passwords in URLs replaced by `***`).
    pub fn command_line(&self) -> String {
        let mut parts: Vec<String> = self
            .env
            .iter()
            .map(|(k, v)| format!("{k}={}", hide_password(v)))
            .collect();
        parts.push(self.program.display().to_string());
        parts.extend(self.args.iter().cloned());
        parts.join(" ")
    }

    /// Starts the process.
    pub fn spawn(&self) -> anyhow::Result<Child> {
        let log = std::fs::File::create(&self.log)
            .with_context(|| format!("creating {}", self.log.display()))?;
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        for (k, _) in std::env::vars_os() {
            if k.to_str().is_some_and(inherited_telemetry_var) {
                cmd.env_remove(k);
            }
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd.spawn()
            .with_context(|| format!("starting {}", self.program.display()))
    }
}

/// `scheme://user:password@host…` with the password replaced by `***`; anything else as is.
pub fn hide_password(value: &str) -> String {
    let Some((scheme, rest)) = value.split_once("://") else {
        return value.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return value.to_owned();
    };
    match rest[..at].split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***{}", &rest[at..]),
        None => value.to_owned(),
    }
}

/// A port that was free a moment ago.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Whether `GET /health/liveliness` on `port` answers 200.
pub fn live(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(
        b"GET /health/liveliness HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
    )
    .is_err()
    {
        return false;
    }
    // No half-close after the request: the server (hyper, half-close off, as it must be to
    // notice clients that go away) may take a read EOF for a client gone and answer nothing,
    // and the probe would then measure its own retries instead of the start-up.
    let mut head = [0u8; 12];
    s.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.1 200")
}

/// Polls until the child answers its liveliness probe; the time from `started`.
pub fn wait_live(
    child: &mut Child,
    port: u16,
    started: Instant,
    limit: Duration,
    log: &Path,
) -> anyhow::Result<Duration> {
    loop {
        if live(port) {
            return Ok(started.elapsed());
        }
        if let Some(status) = child.try_wait()? {
            bail!(
                "the gateway exited ({status}) before answering; its log: {}",
                log.display()
            );
        }
        if started.elapsed() > limit {
            bail!(
                "no /health/liveliness 200 within {limit:?}; its log: {}",
                log.display()
            );
        }
        std::thread::sleep(Duration::from_micros(250));
    }
}

/// Resident memory of `pid` in KiB (`VmRSS` of `/proc/PID/status`).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// The processes below `pid`: children, theirs, and so on.
fn descendants(pid: u32) -> Vec<u32> {
    let mut found = Vec::new();
    let mut stack = vec![pid];
    while let Some(p) = stack.pop() {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) else {
            continue;
        };
        for t in tasks.flatten() {
            let children = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
            for c in children
                .split_whitespace()
                .filter_map(|c| c.parse::<u32>().ok())
            {
                found.push(c);
                stack.push(c);
            }
        }
    }
    found
}

/// Resident memory of `pid` and all its descendants (LiteLLM and nginx run workers as
/// children), KiB.
pub fn tree_rss_kib(pid: u32) -> Option<u64> {
    let own = rss_kib(pid)?;
    Some(
        own + descendants(pid)
            .into_iter()
            .filter_map(rss_kib)
            .sum::<u64>(),
    )
}

/// CPU time of `pid` and its live descendants so far (see [`cpu_time`]).
pub fn tree_cpu_time(pid: u32) -> Option<Duration> {
    let own = cpu_time(Some(pid))?;
    Some(
        own + descendants(pid)
            .into_iter()
            .filter_map(|c| cpu_time(Some(c)))
            .sum::<Duration>(),
    )
}

/// Sends SIGTERM (through `kill`, as the workspace forbids `unsafe`) and waits up to `limit`
/// for a clean exit; kills it after that.
pub fn terminate(child: &mut Child, limit: Duration) -> anyhow::Result<ExitStatus> {
    if let Some(status) = child.try_wait()? {
        return Ok(status);
    }
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill()?;
    Ok(child.wait()?)
}

/// Kills a child that is still running when dropped (an error path left it behind).
pub struct Guard(pub Child);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// CPU time (user + system, all threads, exited ones included) of `pid` so far, from
/// `/proc/PID/stat`, assuming the kernel's `USER_HZ` of 100.
pub fn cpu_time(pid: Option<u32>) -> Option<Duration> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/stat"),
        None => "/proc/self/stat".to_owned(),
    };
    let stat = std::fs::read_to_string(path).ok()?;
    // The command name (field 2) may hold spaces; the fields after its ')' are plain.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 10))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_stay_out_of_the_report() {
        assert_eq!(
            hide_password("postgres://tw:secret@127.0.0.1:5432/tw?options=x"),
            "postgres://tw:***@127.0.0.1:5432/tw?options=x"
        );
        assert_eq!(
            hide_password("redis://127.0.0.1:6379"),
            "redis://127.0.0.1:6379"
        );
        assert_eq!(hide_password("sqlite:///tmp/a.db"), "sqlite:///tmp/a.db");
        assert_eq!(hide_password("warn"), "warn");
    }
}
