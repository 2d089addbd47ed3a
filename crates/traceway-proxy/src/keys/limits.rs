//! Requests- and tokens-per-minute limits of keys and teams, counted per calendar minute: in
//! Redis when one is configured (shared by every replica), else in this process (each replica
//! then allows the full limit on its own).

use redis::aio::ConnectionManager;
use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Counters live this long in Redis: the minute they count plus a margin.
const REDIS_TTL_SECS: i64 = 120;
/// Local counters kept at most before old minutes are dropped.
const MAX_LOCAL: usize = 100_000;

/// A limit that was reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exceeded {
    /// `rpm_limit` or `tpm_limit`.
    pub limit_name: &'static str,
    /// Its value.
    pub limit: i64,
    /// Until the minute rolls over.
    pub retry_after: Duration,
}

/// Where the counters are.
pub enum Limiter {
    /// In this process: `"rpm:scope"` → (minute, count).
    Local(Mutex<HashMap<String, (i64, i64)>>),
    /// In Redis, shared by every replica.
    Redis(ConnectionManager),
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Limiter::Local(_) => "Limiter::Local",
            Limiter::Redis(_) => "Limiter::Redis",
        })
    }
}

/// The current minute since the epoch, and the time left in it.
fn minute() -> (i64, Duration) {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    let m = (secs / 60.0).floor();
    let left = (m + 1.0) * 60.0 - secs;
    (m as i64, Duration::from_secs_f64(left.clamp(0.0, 60.0)))
}

fn redis_key(kind: &str, scope: &str, minute: i64) -> String {
    format!("traceway:{kind}:{scope}:{minute}")
}

impl Limiter {
    /// Counters in this process.
    pub fn local() -> Self {
        Limiter::Local(Mutex::new(HashMap::new()))
    }

    /// Counts one request against `scope` (a key hash or `team:<id>`) and checks both limits.
    /// A Redis failure lets the request through (and says so in the log): an outage of the
    /// counter store should not take the gateway down.
    pub async fn admit(
        &self,
        scope: &str,
        rpm: Option<i64>,
        tpm: Option<i64>,
    ) -> Result<(), Exceeded> {
        if rpm.is_none() && tpm.is_none() {
            return Ok(());
        }
        let (now, left) = minute();
        let (requests, tokens) = match self {
            Limiter::Local(counters) => {
                let mut c = counters.lock().unwrap_or_else(PoisonError::into_inner);
                if c.len() > MAX_LOCAL {
                    c.retain(|_, (m, _)| *m == now);
                }
                let requests = rpm.map(|_| {
                    let e = c.entry(format!("rpm:{scope}")).or_insert((now, 0));
                    if e.0 != now {
                        *e = (now, 0);
                    }
                    e.1 += 1;
                    e.1
                });
                let tokens = tpm.map(|_| match c.get(&format!("tpm:{scope}")) {
                    Some((m, n)) if *m == now => *n,
                    _ => 0,
                });
                (requests, tokens)
            }
            Limiter::Redis(conn) => {
                let mut conn = conn.clone();
                let mut pipe = redis::pipe();
                if rpm.is_some() {
                    let k = redis_key("rpm", scope, now);
                    pipe.incr(&k, 1).expire(&k, REDIS_TTL_SECS).ignore();
                }
                if tpm.is_some() {
                    pipe.get(redis_key("tpm", scope, now));
                }
                let result: Result<Vec<Option<i64>>, _> = pipe.query_async(&mut conn).await;
                match result {
                    Ok(values) => {
                        let mut values = values.into_iter();
                        let requests = rpm.and_then(|_| values.next().flatten());
                        let tokens = tpm.map(|_| values.next().flatten().unwrap_or(0));
                        (requests, tokens)
                    }
                    Err(e) => {
                        tracing::warn!("rate limits not checked, Redis failed: {e}");
                        return Ok(());
                    }
                }
            }
        };
        if let (Some(limit), Some(n)) = (rpm, requests)
            && n > limit
        {
            return Err(Exceeded {
                limit_name: "rpm_limit",
                limit,
                retry_after: left,
            });
        }
        if let (Some(limit), Some(n)) = (tpm, tokens)
            && n >= limit
        {
            return Err(Exceeded {
                limit_name: "tpm_limit",
                limit,
                retry_after: left,
            });
        }
        Ok(())
    }

    /// Adds a finished call's tokens to this minute's count of `scope`.
    pub async fn add_tokens(&self, scope: &str, tokens: u64) {
        let tokens = i64::try_from(tokens).unwrap_or(i64::MAX);
        if tokens == 0 {
            return;
        }
        let (now, _) = minute();
        match self {
            Limiter::Local(counters) => {
                let mut c = counters.lock().unwrap_or_else(PoisonError::into_inner);
                let e = c.entry(format!("tpm:{scope}")).or_insert((now, 0));
                if e.0 != now {
                    *e = (now, 0);
                }
                e.1 = e.1.saturating_add(tokens);
            }
            Limiter::Redis(conn) => {
                let mut conn = conn.clone();
                let k = redis_key("tpm", scope, now);
                let result: Result<(), _> = redis::pipe()
                    .incr(&k, tokens)
                    .ignore()
                    .expire(&k, REDIS_TTL_SECS)
                    .ignore()
                    .query_async(&mut conn)
                    .await;
                if let Err(e) = result {
                    tracing::warn!("token usage not counted, Redis failed: {e}");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn local_counters_refuse_past_the_limit() {
        // Counters are per calendar minute: stay clear of a rollover mid-test.
        let (_, left) = minute();
        if left < Duration::from_secs(2) {
            tokio::time::sleep(left + Duration::from_millis(50)).await;
        }
        let l = Limiter::local();
        assert_eq!(l.admit("k", None, None).await, Ok(()));
        assert_eq!(l.admit("k", Some(2), None).await, Ok(()));
        assert_eq!(l.admit("k", Some(2), None).await, Ok(()));
        let e = l.admit("k", Some(2), None).await.unwrap_err();
        assert_eq!((e.limit_name, e.limit), ("rpm_limit", 2));
        assert!(e.retry_after <= Duration::from_secs(60));
        assert_eq!(l.admit("other", Some(2), None).await, Ok(()));

        assert_eq!(l.admit("t", None, Some(100)).await, Ok(()));
        l.add_tokens("t", 60).await;
        assert_eq!(l.admit("t", None, Some(100)).await, Ok(()));
        l.add_tokens("t", 40).await;
        let e = l.admit("t", None, Some(100)).await.unwrap_err();
        assert_eq!(e.limit_name, "tpm_limit");
    }
}
