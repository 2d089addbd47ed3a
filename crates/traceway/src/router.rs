//! The router: which deployment of a model group serves an attempt, whether a failed attempt is
//! retried (and after how long), which groups a failed call falls back to, and which
//! deployments are cooling down after repeated failures. LiteLLM's `router_settings` names.
//!
//! The clock and the random source are injectable so routing is deterministic under test.

use crate::deployment::Deployment;
use crate::error::{Error, ErrorKind};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How a deployment is chosen among those of a group (LiteLLM's `routing_strategy`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RoutingStrategy {
    /// Random, weighted by `weight`, else `rpm`, else `tpm`, else uniform.
    #[default]
    SimpleShuffle,
    /// The deployment with the fewest calls in flight.
    LeastBusy,
    /// The deployment with the lowest recent latency (untried ones first).
    LatencyBased,
    /// The deployment with the most rpm/tpm headroom this minute; full ones are skipped.
    UsageBased,
}

impl RoutingStrategy {
    /// Parses LiteLLM's names (`simple-shuffle`, `least-busy`, `latency-based-routing`,
    /// `usage-based-routing`, `usage-based-routing-v2`).
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "simple-shuffle" => Some(Self::SimpleShuffle),
            "least-busy" => Some(Self::LeastBusy),
            "latency-based-routing" => Some(Self::LatencyBased),
            "usage-based-routing" | "usage-based-routing-v2" => Some(Self::UsageBased),
            _ => None,
        }
    }
}

/// Router settings; defaults follow LiteLLM's router.
#[derive(Debug, Clone)]
pub struct RouterSettings {
    /// Deployment choice within a group.
    pub strategy: RoutingStrategy,
    /// Retries of a failed attempt within a group (the request's own `num_retries` and a
    /// deployment's win).
    pub num_retries: u32,
    /// Base wait before a retry; doubles each retry, with jitter (`retry_after`).
    pub retry_after: Duration,
    /// Longest wait before one retry, even when an upstream's `retry-after` asks for more.
    pub max_backoff: Duration,
    /// Model group → groups to try when it fails.
    pub fallbacks: BTreeMap<String, Vec<String>>,
    /// Model group → groups to try when its prompt is too long for it.
    pub context_window_fallbacks: BTreeMap<String, Vec<String>>,
    /// Model group → groups to try when its content filter refuses.
    pub content_policy_fallbacks: BTreeMap<String, Vec<String>>,
    /// Groups to try for any group without its own `fallbacks`.
    pub default_fallbacks: Vec<String>,
    /// Most fallback groups tried for one call.
    pub max_fallbacks: usize,
    /// Failures a deployment may have in a minute before it cools down.
    pub allowed_fails: u32,
    /// How long a deployment is skipped once it cools down.
    pub cooldown_time: Duration,
    /// Turn cooldowns off entirely.
    pub disable_cooldowns: bool,
    /// Time to the first byte of a stream, when a deployment does not set its own.
    pub stream_timeout: Option<Duration>,
}

impl Default for RouterSettings {
    fn default() -> Self {
        RouterSettings {
            strategy: RoutingStrategy::SimpleShuffle,
            num_retries: 0,
            retry_after: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            fallbacks: BTreeMap::new(),
            context_window_fallbacks: BTreeMap::new(),
            content_policy_fallbacks: BTreeMap::new(),
            default_fallbacks: Vec::new(),
            max_fallbacks: 5,
            allowed_fails: 3,
            cooldown_time: Duration::from_secs(5),
            disable_cooldowns: false,
            stream_timeout: None,
        }
    }
}

/// Where "now" comes from.
pub trait Clock: Send + Sync {
    /// The current instant.
    fn now(&self) -> Instant;
}

/// The real monotonic clock.
#[derive(Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// A clock that moves only when told to, for tests of cooldowns and windows.
#[derive(Debug)]
pub struct ManualClock(Mutex<Instant>);

impl Default for ManualClock {
    fn default() -> Self {
        ManualClock(Mutex::new(Instant::now()))
    }
}

impl ManualClock {
    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        if let Ok(mut t) = self.0.lock() {
            *t += by;
        }
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.0
            .lock()
            .map(|t| *t)
            .unwrap_or_else(|e| *e.into_inner())
    }
}

/// Where random choices come from: a number in `[0, 1)`.
pub trait RandomSource: Send + Sync {
    /// The next number in `[0, 1)`.
    fn next_f64(&self) -> f64;
}

/// The thread-local random generator.
#[derive(Debug, Default)]
pub struct ThreadRandom;

impl RandomSource for ThreadRandom {
    fn next_f64(&self) -> f64 {
        rand::random::<f64>()
    }
}

/// A seeded generator (SplitMix64), for reproducible tests.
#[derive(Debug)]
pub struct SeededRandom(AtomicU64);

impl SeededRandom {
    /// A generator starting from `seed`.
    pub fn new(seed: u64) -> Self {
        SeededRandom(AtomicU64::new(seed))
    }
}

impl RandomSource for SeededRandom {
    fn next_f64(&self) -> f64 {
        let mut z = self
            .0
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A per-minute counter window.
#[derive(Debug, Default, Clone, Copy)]
struct Window {
    start: Option<Instant>,
    requests: u64,
    tokens: u64,
    fails: u32,
}

impl Window {
    fn roll(&mut self, now: Instant) {
        if self
            .start
            .is_none_or(|s| now.duration_since(s) >= Duration::from_secs(60))
        {
            *self = Window {
                start: Some(now),
                ..Window::default()
            };
        }
    }
}

#[derive(Debug, Default)]
struct Health {
    window: Window,
    cooldown_until: Option<Instant>,
    /// Exponentially weighted latency in seconds; `None` until a success.
    latency: Option<f64>,
}

/// What the router knows of one deployment: calls in flight, this minute's usage and
/// failures, recent latency, and whether it is cooling down.
#[derive(Debug, Default)]
pub struct DeploymentStats {
    in_flight: AtomicU64,
    health: Mutex<Health>,
}

impl DeploymentStats {
    /// Calls in flight now.
    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Adds tokens to this minute's usage.
    pub fn add_tokens(&self, now: Instant, tokens: u64) {
        if let Ok(mut h) = self.health.lock() {
            h.window.roll(now);
            h.window.tokens += tokens;
        }
    }

    fn cooling(&self, now: Instant) -> Option<Duration> {
        let h = self.health.lock().ok()?;
        h.cooldown_until.filter(|t| *t > now).map(|t| t - now)
    }
}

/// Holds one call in flight on a deployment; dropping it ends the call.
#[derive(Debug)]
pub struct InFlight(Arc<DeploymentStats>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl InFlight {
    /// The stats of the deployment in use.
    pub fn stats(&self) -> &Arc<DeploymentStats> {
        &self.0
    }
}

/// Chooses deployments and keeps their health.
pub struct Router {
    /// The settings in force.
    pub settings: RouterSettings,
    clock: Arc<dyn Clock>,
    random: Arc<dyn RandomSource>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("settings", &self.settings)
            .finish()
    }
}

/// Which fallback list a failure calls for.
fn fallback_kind(err: &Error) -> FallbackKind {
    if err.is_context_window_exceeded() {
        FallbackKind::ContextWindow
    } else if err.is_content_policy_violation() {
        FallbackKind::ContentPolicy
    } else if err.kind == ErrorKind::BadRequest {
        FallbackKind::None
    } else {
        FallbackKind::General
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FallbackKind {
    None,
    General,
    ContextWindow,
    ContentPolicy,
}

impl Router {
    /// A router with `settings`, the given clock and random source.
    pub fn new(
        settings: RouterSettings,
        clock: Arc<dyn Clock>,
        random: Arc<dyn RandomSource>,
    ) -> Self {
        Router {
            settings,
            clock,
            random,
        }
    }

    /// The current instant of the router's clock.
    pub fn now(&self) -> Instant {
        self.clock.now()
    }

    /// Whether a failed attempt may be retried: rate limits, 5xx, timeouts and connection
    /// errors — never a request the upstream rejected as bad.
    pub fn is_retryable(err: &Error) -> bool {
        match err.kind {
            ErrorKind::RateLimited
            | ErrorKind::Timeout
            | ErrorKind::UpstreamServer
            | ErrorKind::Connection
            | ErrorKind::InvalidResponse
            | ErrorKind::Unavailable => true,
            ErrorKind::BadRequest
            | ErrorKind::Authentication
            | ErrorKind::PermissionDenied
            | ErrorKind::NotFound
            | ErrorKind::PayloadTooLarge
            | ErrorKind::BudgetExceeded
            | ErrorKind::Internal => false,
        }
    }

    /// How long to wait before retry number `retry` (1-based): exponential from `retry_after`
    /// with jitter in [50%, 100%], at least the upstream's `retry-after`, at most `max_backoff`.
    pub fn backoff(&self, retry: u32, err: &Error) -> Duration {
        let base = self.settings.retry_after.as_secs_f64()
            * 2f64.powi(retry.saturating_sub(1).min(16) as i32);
        let jittered = base * (0.5 + 0.5 * self.random.next_f64());
        let wait = err
            .retry_after
            .map_or(jittered, |r| r.as_secs_f64().max(jittered));
        Duration::from_secs_f64(wait.min(self.settings.max_backoff.as_secs_f64()))
    }

    /// The groups to fall back to after `group` failed with `err`, in order.
    pub fn fallbacks_for(
        &self,
        group: &str,
        err: &Error,
        per_request: Option<&[String]>,
    ) -> Vec<String> {
        let kind = fallback_kind(err);
        let list = match kind {
            FallbackKind::None => return Vec::new(),
            FallbackKind::ContextWindow => self.settings.context_window_fallbacks.get(group),
            FallbackKind::ContentPolicy => self.settings.content_policy_fallbacks.get(group),
            FallbackKind::General => None,
        };
        if let Some(list) = list {
            return list.clone();
        }
        if let Some(list) = per_request {
            return list.to_vec();
        }
        match self.settings.fallbacks.get(group) {
            Some(list) => list.clone(),
            None => self
                .settings
                .default_fallbacks
                .iter()
                .filter(|g| *g != group)
                .cloned()
                .collect(),
        }
    }

    /// Picks a deployment of `group` for the next attempt, skipping those cooling down (and,
    /// for usage-based routing, those at their rpm/tpm limit); `order` ranks come first.
    pub fn pick(
        &self,
        group: &str,
        deployments: &[Arc<Deployment>],
    ) -> Result<(Arc<Deployment>, InFlight), Error> {
        let now = self.clock.now();
        let mut soonest: Option<Duration> = None;
        let mut available: Vec<&Arc<Deployment>> = Vec::with_capacity(deployments.len());
        for d in deployments {
            match (!self.settings.disable_cooldowns)
                .then(|| d.stats.cooling(now))
                .flatten()
            {
                Some(left) => soonest = Some(soonest.map_or(left, |s| s.min(left))),
                None => available.push(d),
            }
        }
        if self.settings.strategy == RoutingStrategy::UsageBased {
            available.retain(|d| has_headroom(d, now));
            if available.is_empty() && soonest.is_none() {
                let mut e = Error::new(
                    ErrorKind::RateLimited,
                    format!(
                        "every deployment of model group \"{group}\" is at its rpm/tpm limit for this minute"
                    ),
                );
                e.retry_after = Some(Duration::from_secs(1));
                return Err(e);
            }
        }
        if let Some(best) = available.iter().filter_map(|d| d.order).min() {
            available.retain(|d| d.order.is_none_or(|o| o == best));
        }
        if available.is_empty() {
            let wait = soonest.unwrap_or(self.settings.cooldown_time);
            let mut e = Error::new(
                ErrorKind::RateLimited,
                format!(
                    "every deployment of model group \"{group}\" is cooling down after repeated failures; retry in {:.1}s",
                    wait.as_secs_f64()
                ),
            );
            e.retry_after = Some(wait);
            return Err(e);
        }
        let chosen = match self.settings.strategy {
            RoutingStrategy::SimpleShuffle => self.weighted(&available),
            RoutingStrategy::LeastBusy => self.lowest(&available, |d| d.stats.in_flight() as f64),
            RoutingStrategy::LatencyBased => self.lowest(&available, |d| {
                d.stats
                    .health
                    .lock()
                    .ok()
                    .and_then(|h| h.latency)
                    .unwrap_or(0.0)
            }),
            RoutingStrategy::UsageBased => self.lowest(&available, |d| {
                d.stats
                    .health
                    .lock()
                    .map(|h| h.window.tokens as f64 + h.window.requests as f64)
                    .unwrap_or(0.0)
            }),
        };
        if let Ok(mut h) = chosen.stats.health.lock() {
            h.window.roll(now);
            h.window.requests += 1;
        }
        chosen.stats.in_flight.fetch_add(1, Ordering::Relaxed);
        Ok((chosen.clone(), InFlight(chosen.stats.clone())))
    }

    fn weighted<'a>(&self, ds: &[&'a Arc<Deployment>]) -> &'a Arc<Deployment> {
        let weight = |d: &Deployment| {
            d.weight
                .or(d.rpm.map(|r| r as f64))
                .or(d.tpm.map(|t| t as f64))
        };
        let weights: Vec<f64> = if ds.iter().any(|d| weight(d).is_some()) {
            ds.iter()
                .map(|d| weight(d).unwrap_or(0.0).max(0.0))
                .collect()
        } else {
            vec![1.0; ds.len()]
        };
        let total: f64 = weights.iter().sum();
        if total <= 0.0 {
            return ds[(self.random.next_f64() * ds.len() as f64) as usize % ds.len()];
        }
        let mut x = self.random.next_f64() * total;
        for (d, w) in ds.iter().zip(&weights) {
            if x < *w {
                return d;
            }
            x -= w;
        }
        ds[ds.len() - 1]
    }

    fn lowest<'a>(
        &self,
        ds: &[&'a Arc<Deployment>],
        score: impl Fn(&Deployment) -> f64,
    ) -> &'a Arc<Deployment> {
        let scores: Vec<f64> = ds.iter().map(|d| score(d)).collect();
        let best = scores.iter().cloned().fold(f64::INFINITY, f64::min);
        let ties: Vec<&&Arc<Deployment>> = ds
            .iter()
            .zip(&scores)
            .filter(|(_, s)| **s <= best)
            .map(|(d, _)| d)
            .collect();
        ties[(self.random.next_f64() * ties.len() as f64) as usize % ties.len()]
    }

    /// Notes a successful attempt and its latency.
    pub fn on_success(&self, d: &Deployment, latency: Duration) {
        if let Ok(mut h) = d.stats.health.lock() {
            let l = latency.as_secs_f64();
            h.latency = Some(h.latency.map_or(l, |prev| 0.7 * prev + 0.3 * l));
        }
    }

    /// Notes a failed attempt; past `allowed_fails` this minute the deployment cools down.
    /// Failures the caller caused (a bad request) do not count.
    pub fn on_failure(&self, d: &Deployment, err: &Error) {
        if !Self::is_retryable(err)
            && !matches!(
                err.kind,
                ErrorKind::Authentication | ErrorKind::NotFound | ErrorKind::PermissionDenied
            )
        {
            return;
        }
        let now = self.clock.now();
        if let Ok(mut h) = d.stats.health.lock() {
            h.window.roll(now);
            h.window.fails += 1;
            if h.window.fails > self.settings.allowed_fails {
                h.cooldown_until = Some(now + self.settings.cooldown_time);
                h.window.fails = 0;
            }
        }
    }
}

fn has_headroom(d: &Deployment, now: Instant) -> bool {
    let Ok(mut h) = d.stats.health.lock() else {
        return true;
    };
    h.window.roll(now);
    d.rpm.is_none_or(|r| h.window.requests < r) && d.tpm.is_none_or(|t| h.window.tokens < t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deployment::DeploymentConfig;

    fn router(settings: RouterSettings, clock: Arc<ManualClock>) -> Router {
        Router::new(settings, clock, Arc::new(SeededRandom::new(7)))
    }

    fn dep(name: &str, f: impl FnOnce(&mut DeploymentConfig)) -> Arc<Deployment> {
        let mut c = DeploymentConfig {
            model_name: "g".into(),
            model: format!("mock/{name}"),
            ..DeploymentConfig::default()
        };
        f(&mut c);
        Arc::new(Deployment::new(c).unwrap())
    }

    fn server_error() -> Error {
        let mut e = Error::new(ErrorKind::UpstreamServer, "boom");
        e.status = Some(500);
        e
    }

    #[test]
    fn backoff_doubles_with_jitter_honours_retry_after_and_is_capped() {
        let r = router(
            RouterSettings {
                retry_after: Duration::from_millis(100),
                max_backoff: Duration::from_secs(2),
                ..RouterSettings::default()
            },
            Arc::default(),
        );
        for retry in 1..=4u32 {
            let base = 0.1 * 2f64.powi(retry as i32 - 1);
            for _ in 0..50 {
                let b = r.backoff(retry, &server_error()).as_secs_f64();
                assert!(
                    b >= base * 0.5 - 1e-9 && b <= base + 1e-9,
                    "retry {retry}: {b}"
                );
            }
        }
        assert_eq!(r.backoff(30, &server_error()), Duration::from_secs(2));
        let mut limited = Error::new(ErrorKind::RateLimited, "slow down");
        limited.retry_after = Some(Duration::from_millis(1500));
        assert_eq!(r.backoff(1, &limited), Duration::from_millis(1500));
        limited.retry_after = Some(Duration::from_secs(3600));
        assert_eq!(r.backoff(1, &limited), Duration::from_secs(2));
    }

    #[test]
    fn only_transient_failures_are_retried() {
        assert!(Router::is_retryable(&server_error()));
        assert!(Router::is_retryable(&Error::new(ErrorKind::Timeout, "t")));
        assert!(Router::is_retryable(&Error::new(
            ErrorKind::Connection,
            "c"
        )));
        assert!(Router::is_retryable(&Error::new(
            ErrorKind::RateLimited,
            "r"
        )));
        assert!(!Router::is_retryable(&Error::new(
            ErrorKind::BadRequest,
            "b"
        )));
        assert!(!Router::is_retryable(&Error::new(
            ErrorKind::Authentication,
            "a"
        )));
    }

    #[test]
    fn weighted_shuffle_follows_weights_then_rpm() {
        let r = router(RouterSettings::default(), Arc::default());
        let ds = vec![
            dep("a", |c| c.weight = Some(3.0)),
            dep("b", |c| c.weight = Some(1.0)),
        ];
        let a = (0..4000)
            .filter(|_| r.pick("g", &ds).unwrap().0.model == "a")
            .count();
        assert!(
            (2800..3200).contains(&a),
            "{a} of 4000 went to the weight-3 deployment"
        );
        let ds = vec![
            dep("a", |c| c.rpm = Some(100)),
            dep("b", |c| c.rpm = Some(300)),
        ];
        let b = (0..4000)
            .filter(|_| r.pick("g", &ds).unwrap().0.model == "b")
            .count();
        assert!((2800..3200).contains(&b), "{b}");
    }

    #[test]
    fn least_busy_and_latency_and_order_pick_as_named() {
        let r = router(
            RouterSettings {
                strategy: RoutingStrategy::LeastBusy,
                ..RouterSettings::default()
            },
            Arc::default(),
        );
        let ds = vec![dep("a", |_| {}), dep("b", |_| {})];
        let (first, _held) = r.pick("g", &ds).unwrap();
        for _ in 0..20 {
            let (d, _) = r.pick("g", &ds).unwrap();
            assert_ne!(d.model, first.model, "the busy deployment is avoided");
        }

        let r = router(
            RouterSettings {
                strategy: RoutingStrategy::LatencyBased,
                ..RouterSettings::default()
            },
            Arc::default(),
        );
        let ds = vec![dep("slow", |_| {}), dep("fast", |_| {})];
        r.on_success(&ds[0], Duration::from_millis(800));
        r.on_success(&ds[1], Duration::from_millis(20));
        assert!((0..50).all(|_| r.pick("g", &ds).unwrap().0.model == "fast"));

        let r = router(RouterSettings::default(), Arc::default());
        let ds = vec![
            dep("backup", |c| c.order = Some(2)),
            dep("primary", |c| c.order = Some(1)),
        ];
        assert!((0..50).all(|_| r.pick("g", &ds).unwrap().0.model == "primary"));
    }

    #[test]
    fn failing_deployments_cool_down_and_come_back() {
        let clock = Arc::new(ManualClock::default());
        let r = router(
            RouterSettings {
                allowed_fails: 1,
                cooldown_time: Duration::from_secs(30),
                ..RouterSettings::default()
            },
            clock.clone(),
        );
        let ds = vec![
            dep("a", |c| c.order = Some(1)),
            dep("b", |c| c.order = Some(2)),
        ];
        r.on_failure(&ds[0], &server_error());
        assert_eq!(
            r.pick("g", &ds).unwrap().0.model,
            "a",
            "one failure is allowed"
        );
        r.on_failure(&ds[0], &server_error());
        assert_eq!(
            r.pick("g", &ds).unwrap().0.model,
            "b",
            "past allowed_fails it cools down"
        );
        r.on_failure(&ds[1], &Error::new(ErrorKind::BadRequest, "caller's fault"));
        r.on_failure(&ds[1], &Error::new(ErrorKind::BadRequest, "caller's fault"));
        assert_eq!(
            r.pick("g", &ds).unwrap().0.model,
            "b",
            "bad requests do not count"
        );
        r.on_failure(&ds[1], &server_error());
        r.on_failure(&ds[1], &server_error());
        let err = r.pick("g", &ds).unwrap_err();
        assert_eq!(err.kind, ErrorKind::RateLimited);
        assert!(err.message.contains("cooling down"), "{}", err.message);
        assert_eq!(err.retry_after, Some(Duration::from_secs(30)));
        clock.advance(Duration::from_secs(31));
        assert_eq!(
            r.pick("g", &ds).unwrap().0.model,
            "a",
            "back after cooldown_time"
        );
    }

    #[test]
    fn usage_based_routing_skips_full_deployments() {
        let clock = Arc::new(ManualClock::default());
        let r = router(
            RouterSettings {
                strategy: RoutingStrategy::UsageBased,
                ..RouterSettings::default()
            },
            clock.clone(),
        );
        let ds = vec![dep("a", |c| c.rpm = Some(2)), dep("b", |c| c.rpm = Some(2))];
        let picks: Vec<String> = (0..4)
            .map(|_| r.pick("g", &ds).unwrap().0.model.clone())
            .collect();
        assert_eq!(picks.iter().filter(|m| *m == "a").count(), 2, "{picks:?}");
        let err = r.pick("g", &ds).unwrap_err();
        assert!(err.message.contains("rpm/tpm limit"), "{}", err.message);
        clock.advance(Duration::from_secs(61));
        assert!(r.pick("g", &ds).is_ok(), "a new minute, a new window");
    }

    #[test]
    fn fallbacks_follow_the_failure_kind() {
        let mut s = RouterSettings::default();
        s.fallbacks.insert("a".into(), vec!["b".into()]);
        s.context_window_fallbacks
            .insert("a".into(), vec!["big".into()]);
        s.content_policy_fallbacks
            .insert("a".into(), vec!["lenient".into()]);
        s.default_fallbacks = vec!["a".into(), "default".into()];
        let r = router(s, Arc::default());
        assert_eq!(r.fallbacks_for("a", &server_error(), None), ["b"]);
        let mut cw = Error::new(ErrorKind::BadRequest, "too long");
        cw.code = Some("context_length_exceeded".into());
        assert_eq!(r.fallbacks_for("a", &cw, None), ["big"]);
        let mut cp = Error::new(ErrorKind::BadRequest, "refused");
        cp.code = Some("content_policy_violation".into());
        assert_eq!(r.fallbacks_for("a", &cp, None), ["lenient"]);
        assert!(
            r.fallbacks_for("a", &Error::new(ErrorKind::BadRequest, "bad"), None)
                .is_empty()
        );
        assert_eq!(
            r.fallbacks_for("other", &server_error(), None),
            ["a", "default"]
        );
        assert_eq!(
            r.fallbacks_for("a", &server_error(), Some(&["x".to_owned()])),
            ["x"]
        );
    }
}
