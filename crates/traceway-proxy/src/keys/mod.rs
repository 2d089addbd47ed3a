//! Virtual keys: who is calling (the master key, or a stored key with its user, team and
//! organisation), what they may call (models, rpm/tpm limits), and the management API that
//! creates them, with LiteLLM's request and response bodies.
//!
//! Only the SHA-256 hex of a key is stored; it is also what spans export as
//! `metadata.user_api_key_hash`, the value LiteLLM exports for the same key. The database is
//! opened on first use (or eagerly by [`Keys::connect`] at start-up), so assembling the proxy
//! stays synchronous.

pub mod access;
mod body;
pub mod cache;
pub mod duration;
pub mod limits;
pub mod meter;
pub mod routes;
pub mod spend;
pub mod store;

use crate::config::key_store::{Database, KeyStoreSettings};
use crate::error::ApiError;
use cache::KeyCache;
use futures_util::StreamExt;
use limits::Limiter;
use opentelemetry::KeyValue;
use sha2::{Digest, Sha256};
use spend::{Scope, SpendLedger};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use store::{Store, StoreError};
use traceway::{Error, ErrorKind, Secret};
use traceway_otel::keys as k;

/// The user id LiteLLM reports for calls made with the master key.
pub const MASTER_USER_ID: &str = "default_user_id";
/// The `user_role` whose keys may call the whole management API.
pub const ROLE_PROXY_ADMIN: &str = "proxy_admin";
/// The `user_role` whose keys may call the management API's reads.
pub const ROLE_PROXY_ADMIN_VIEWER: &str = "proxy_admin_viewer";
/// The Redis channel carrying key invalidations between replicas.
const INVALIDATION_CHANNEL: &str = "traceway:key-invalidations";

/// SHA-256 hex of a key, as LiteLLM's `hash_token`.
pub fn hash_key(key: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = Sha256::digest(key.as_bytes());
    let mut out = String::with_capacity(64);
    for b in digest {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    out
}

/// A key as a caller names one to the management API: the key itself (`sk-…`), else its hash.
pub fn token_of(key_or_hash: &str) -> String {
    if key_or_hash.starts_with("sk-") {
        hash_key(key_or_hash)
    } else {
        key_or_hash.to_owned()
    }
}

/// A new key: `sk-` and 32 random letters and digits (about 190 bits, from a CSPRNG).
pub fn generate_key() -> String {
    use rand::Rng;
    let tail: String = rand::rng()
        .sample_iter(&rand::distr::Alphanumeric)
        .take(32)
        .map(char::from)
        .collect();
    format!("sk-{tail}")
}

/// `sk-...abcd`: enough of a key for a person to recognise it, as LiteLLM's `key_name`.
pub fn abbreviate(key: &str) -> String {
    let tail: String = key
        .chars()
        .rev()
        .take(4)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("sk-...{tail}")
}

/// What the hot path knows about a stored key (with its team), cached for a short TTL.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KeyInfo {
    /// SHA-256 hex of the key.
    pub token: String,
    /// Its alias.
    pub key_alias: Option<String>,
    /// Its user.
    pub user_id: Option<String>,
    /// Its user's role.
    pub user_role: Option<String>,
    /// Its team.
    pub team_id: Option<String>,
    /// Its team's alias.
    pub team_alias: Option<String>,
    /// Its organisation (the key's own, else its team's).
    pub organization_id: Option<String>,
    /// Models it may call.
    pub models: Vec<String>,
    /// Models its team may call.
    pub team_models: Vec<String>,
    /// Its requests per minute.
    pub rpm_limit: Option<i64>,
    /// Its tokens per minute.
    pub tpm_limit: Option<i64>,
    /// Its team's requests per minute.
    pub team_rpm_limit: Option<i64>,
    /// Its team's tokens per minute.
    pub team_tpm_limit: Option<i64>,
    /// Expiry, Unix ms.
    pub expires: Option<i64>,
    /// The key or its team is blocked.
    pub blocked: bool,
    /// `turn_off_message_logging` in the key's or team's metadata.
    pub turn_off_message_logging: bool,
    /// Its budget.
    pub max_budget: Option<f64>,
    /// What it has spent, as the database knew when it was read.
    pub spend: f64,
    /// Its team's budget.
    pub team_max_budget: Option<f64>,
    /// Its team's spend.
    pub team_spend: f64,
    /// Its user's budget.
    pub user_max_budget: Option<f64>,
    /// Its user's spend.
    pub user_spend: f64,
    /// Its organisation's budget.
    pub org_max_budget: Option<f64>,
    /// Its organisation's spend.
    pub org_spend: f64,
}

impl KeyInfo {
    /// Whose spend a call with this key adds to, each with its budget and its spend when read.
    pub fn spend_scopes(&self) -> Vec<(Scope, Option<f64>, f64)> {
        let mut scopes = Vec::with_capacity(4);
        scopes.push((Scope::Key(self.token.clone()), self.max_budget, self.spend));
        if let Some(team) = &self.team_id {
            scopes.push((
                Scope::Team(team.clone()),
                self.team_max_budget,
                self.team_spend,
            ));
        }
        if let Some(user) = &self.user_id {
            scopes.push((
                Scope::User(user.clone()),
                self.user_max_budget,
                self.user_spend,
            ));
        }
        if let Some(org) = &self.organization_id {
            scopes.push((Scope::Org(org.clone()), self.org_max_budget, self.org_spend));
        }
        scopes
    }
}

/// Who is calling.
#[derive(Debug, Clone)]
pub enum Caller {
    /// No master key is configured: everyone may call the LLM routes.
    Open,
    /// The master key (its hash, for spans).
    Master(Arc<str>),
    /// A stored virtual key.
    Key(Arc<KeyInfo>),
}

impl Caller {
    /// The stored key, for a virtual-key caller.
    pub fn key(&self) -> Option<&KeyInfo> {
        match self {
            Caller::Key(k) => Some(k),
            Caller::Open | Caller::Master(_) => None,
        }
    }

    /// May call every management route.
    pub fn is_admin(&self) -> bool {
        match self {
            Caller::Master(_) => true,
            Caller::Key(k) => k.user_role.as_deref() == Some(ROLE_PROXY_ADMIN),
            Caller::Open => false,
        }
    }

    /// May call every management read.
    pub fn is_admin_reader(&self) -> bool {
        self.is_admin()
            || matches!(self, Caller::Key(k) if k.user_role.as_deref() == Some(ROLE_PROXY_ADMIN_VIEWER))
    }

    /// The user id recorded as `created_by`.
    pub fn user_id(&self) -> Option<&str> {
        match self {
            Caller::Master(_) => Some(MASTER_USER_ID),
            Caller::Key(k) => k.user_id.as_deref(),
            Caller::Open => None,
        }
    }

    /// The caller's identity as span attributes (TELEMETRY.md §4): never the key, only its hash.
    pub fn span_attributes(&self) -> Vec<KeyValue> {
        let mut attrs = Vec::new();
        match self {
            Caller::Open => {}
            Caller::Master(hash) => {
                attrs.push(KeyValue::new(
                    k::METADATA_USER_API_KEY_HASH,
                    hash.to_string(),
                ));
                attrs.push(KeyValue::new(
                    k::METADATA_USER_API_KEY_USER_ID,
                    MASTER_USER_ID,
                ));
            }
            Caller::Key(info) => {
                attrs.push(KeyValue::new(
                    k::METADATA_USER_API_KEY_HASH,
                    info.token.clone(),
                ));
                for (key, value) in [
                    (k::METADATA_USER_API_KEY_ALIAS, &info.key_alias),
                    (k::METADATA_USER_API_KEY_USER_ID, &info.user_id),
                    (k::METADATA_USER_API_KEY_TEAM_ID, &info.team_id),
                    (k::METADATA_USER_API_KEY_TEAM_ALIAS, &info.team_alias),
                    (k::METADATA_USER_API_KEY_ORG_ID, &info.organization_id),
                ] {
                    if let Some(v) = value {
                        attrs.push(KeyValue::new(key, v.clone()));
                    }
                }
            }
        }
        attrs
    }
}

/// Why the key subsystem could not start.
#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    /// The database.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Redis (its URL is not repeated: it may hold a password).
    #[error("cannot reach Redis for shared rate limits and key invalidation: {0}")]
    Redis(String),
}

/// What is opened on first use.
pub(crate) struct Backend {
    pub(crate) store: Store,
    redis: Option<redis::aio::ConnectionManager>,
    pub(crate) limiter: Limiter,
}

/// The virtual-key subsystem of one proxy instance.
pub struct Keys {
    master_hash: Arc<str>,
    database: Database,
    redis_url: Option<Secret>,
    /// The CA certificates a TLS Redis is verified with (`REDIS_SSL_CA_CERTS`).
    redis_ca: Option<Arc<[u8]>>,
    /// Keys looked up recently.
    pub cache: Arc<KeyCache>,
    backend: tokio::sync::OnceCell<Backend>,
    subscriber: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Keys being read from the store now: one read per key, however many requests missed
    /// the cache at once (a hot key's entry expiring would otherwise send them all to it).
    loading: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Reads of a key from the store (cache misses that reached it).
    store_reads: std::sync::atomic::AtomicU64,
    /// Call costs not yet written to the database.
    pub spend: Arc<SpendLedger>,
    /// How often pending spend is written (`general_settings.proxy_batch_write_at`).
    spend_interval: Duration,
    /// The task writing pending spend every `spend_interval`.
    spend_writer: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// One request's turn at reading a key; the last one out (done or cancelled) removes the gate.
struct LoadGate<'a> {
    loading: &'a Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    token: &'a str,
    gate: Arc<tokio::sync::Mutex<()>>,
}

impl Drop for LoadGate<'_> {
    fn drop(&mut self) {
        let mut loading = self.loading.lock().unwrap_or_else(PoisonError::into_inner);
        // The map holds one reference and this turn another: no one else is waiting.
        if Arc::strong_count(&self.gate) == 2 {
            loading.remove(self.token);
        }
    }
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys")
            .field("database", &self.database.describe())
            .field("redis", &self.redis_url.is_some())
            .finish()
    }
}

impl Drop for Keys {
    fn drop(&mut self) {
        for slot in [&self.subscriber, &self.spend_writer] {
            if let Some(task) = slot.lock().unwrap_or_else(PoisonError::into_inner).take() {
                task.abort();
            }
        }
    }
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError(Error::new(
        ErrorKind::Internal,
        format!("the key store failed: {e}"),
    ))
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        internal(e)
    }
}

impl From<KeysError> for ApiError {
    fn from(e: KeysError) -> Self {
        ApiError(Error::new(ErrorKind::Unavailable, e.to_string()))
    }
}

impl Keys {
    /// The subsystem for `master_key` with `settings`; `config_file` places the default SQLite file.
    pub fn new(
        master_key: &Secret,
        settings: &KeyStoreSettings,
        config_file: Option<&Path>,
    ) -> Self {
        Keys {
            master_hash: hash_key(master_key.expose()).into(),
            database: settings.database_for(config_file),
            redis_url: settings.redis_url.clone(),
            redis_ca: settings.redis_ca.clone(),
            cache: Arc::new(KeyCache::new(settings.cache_ttl)),
            backend: tokio::sync::OnceCell::new(),
            subscriber: Mutex::new(None),
            loading: Mutex::new(HashMap::new()),
            store_reads: std::sync::atomic::AtomicU64::new(0),
            spend: Arc::default(),
            spend_interval: settings.spend_write_interval,
            spend_writer: Mutex::new(None),
        }
    }

    /// How many times a presented key was read from the store (cache misses).
    pub fn store_reads(&self) -> u64 {
        self.store_reads.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Which database, safe to log.
    pub fn database(&self) -> &Database {
        &self.database
    }

    /// Whether Redis shares limits and invalidations.
    pub fn has_redis(&self) -> bool {
        self.redis_url.is_some()
    }

    /// The master key as a caller.
    pub fn master(&self) -> Caller {
        Caller::Master(self.master_hash.clone())
    }

    /// Opens the database (migrating it) and Redis, once; later calls return the same.
    pub(crate) async fn connect(&self) -> Result<&Backend, KeysError> {
        self.backend.get_or_try_init(|| self.open()).await
    }

    async fn open(&self) -> Result<Backend, KeysError> {
        let store = Store::open(&self.database).await?;
        let (redis, limiter) = match &self.redis_url {
            None => (None, Limiter::local()),
            Some(url) => {
                let client = match &self.redis_ca {
                    Some(ca) => redis::Client::build_with_tls(
                        url.expose(),
                        redis::TlsCertificates {
                            client_tls: None,
                            root_cert: Some(ca.to_vec()),
                        },
                    ),
                    None => redis::Client::open(url.expose()),
                }
                .map_err(|_| KeysError::Redis("the Redis URL is not valid".into()))?;
                let config = redis::aio::ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(Duration::from_secs(2)))
                    .set_response_timeout(Some(Duration::from_secs(2)))
                    .set_number_of_retries(2);
                let conn = client
                    .get_connection_manager_with_config(config)
                    .await
                    .map_err(|e| KeysError::Redis(e.to_string()))?;
                // Subscribed before start-up finishes, so no invalidation is missed from then on.
                let mut pubsub = client
                    .get_async_pubsub()
                    .await
                    .map_err(|e| KeysError::Redis(e.to_string()))?;
                pubsub
                    .subscribe(INVALIDATION_CHANNEL)
                    .await
                    .map_err(|e| KeysError::Redis(e.to_string()))?;
                let task = tokio::spawn(listen(client, pubsub, self.cache.clone()));
                if let Some(old) = self
                    .subscriber
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .replace(task)
                {
                    old.abort();
                }
                (Some(conn.clone()), Limiter::Redis(conn))
            }
        };
        let writer = tokio::spawn(write_spend_every(
            self.spend_interval,
            self.spend.clone(),
            store.clone(),
            self.cache.clone(),
        ));
        if let Some(old) = self
            .spend_writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .replace(writer)
        {
            old.abort();
        }
        Ok(Backend {
            store,
            redis,
            limiter,
        })
    }

    /// Writes the spend still pending to the database (at shutdown; the writer task does it
    /// every `proxy_batch_write_at` meanwhile).
    pub async fn write_spend(&self) {
        if let Some(b) = self.backend.get() {
            self.spend.write(&b.store, &self.cache).await;
        }
    }

    /// The store, opened on first use.
    pub(crate) async fn store(&self) -> Result<&Store, ApiError> {
        Ok(&self.connect().await?.store)
    }

    /// Whether the database answers (for `/health/readiness`).
    pub async fn ping(&self) -> bool {
        match self.backend.get() {
            Some(b) => b.store.ping().await,
            None => self.connect().await.is_ok(),
        }
    }

    /// The stored key a caller presented: 401 when unknown, expired or blocked. The key itself
    /// is never repeated in a message.
    pub async fn authenticate(&self, presented: &str) -> Result<Arc<KeyInfo>, ApiError> {
        let token = hash_key(presented);
        let info = match self.cache.get(&token) {
            Some(info) => info,
            None => self.load(&token).await?,
        };
        if let Some(expires) = info.expires
            && expires <= duration::now_ms()
        {
            return Err(ApiError::unauthorized(format!(
                "the API key given expired at {}",
                duration::iso8601(expires)
            )));
        }
        if info.blocked {
            return Err(ApiError::unauthorized(
                "the API key given is blocked (it or its team was blocked)",
            ));
        }
        Ok(info)
    }

    /// Reads a key missing from the cache; concurrent misses of one key wait for a single read.
    async fn load(&self, token: &str) -> Result<Arc<KeyInfo>, ApiError> {
        let gate = LoadGate {
            loading: &self.loading,
            token,
            gate: self
                .loading
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(token.to_owned())
                .or_default()
                .clone(),
        };
        let _turn = gate.gate.lock().await;
        // Whoever held the gate before may have filled the cache meanwhile.
        match self.cache.get(token) {
            Some(info) => Ok(info),
            None => self.read(token).await,
        }
    }

    async fn read(&self, token: &str) -> Result<Arc<KeyInfo>, ApiError> {
        let generation = self.cache.generation();
        self.store_reads
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let Some(info) = self.store().await?.resolve(token).await? else {
            return Err(ApiError::unauthorized(
                "the API key given is not valid for this proxy",
            ));
        };
        let info = Arc::new(info);
        self.cache.insert(generation, info.clone());
        Ok(info)
    }

    /// Forgets cached keys here and on every replica: the one `token`, or all of them.
    pub(crate) async fn invalidate(&self, token: Option<&str>) {
        match token {
            Some(t) => self.cache.remove(t),
            None => self.cache.clear(),
        }
        let Some(Some(mut conn)) = self.backend.get().map(|b| b.redis.clone()) else {
            return;
        };
        let message = match token {
            Some(t) => format!("key:{t}"),
            None => "all".to_owned(),
        };
        let sent: Result<i64, _> = redis::cmd("PUBLISH")
            .arg(INVALIDATION_CHANNEL)
            .arg(message)
            .query_async(&mut conn)
            .await;
        if let Err(e) = sent {
            tracing::warn!(
                "key invalidation not sent to other replicas (they notice within the cache TTL): {e}"
            );
        }
    }

    /// Checks a virtual key may make this call: its models and its team's (403, before any
    /// "unknown model"), then its and its team's rpm/tpm limits (429 with `retry-after`).
    /// Returns what meters the call's tokens, when a tpm limit needs them.
    pub async fn admit(
        self: &Arc<Self>,
        info: &KeyInfo,
        model: &str,
        provider_models: &[&str],
    ) -> Result<Option<Meter>, ApiError> {
        if let Err(denied) = access::check(info, model, provider_models) {
            return Err(model_denied(info, model, denied));
        }
        let spend_scopes = info.spend_scopes();
        for (scope, max, spent) in &spend_scopes {
            let Some(max) = max else { continue };
            let current = spent + self.spend.pending(scope);
            if current >= *max {
                return Err(over_budget(scope, current, *max));
            }
        }
        let limiter = &self.connect().await?.limiter;
        let mut scopes = Vec::new();
        if let Err(e) = limiter
            .admit(&info.token, info.rpm_limit, info.tpm_limit)
            .await
        {
            return Err(rate_limited("this key", &e));
        }
        if info.tpm_limit.is_some() {
            scopes.push(info.token.clone());
        }
        if let Some(team) = &info.team_id {
            let scope = format!("team:{team}");
            if let Err(e) = limiter
                .admit(&scope, info.team_rpm_limit, info.team_tpm_limit)
                .await
            {
                return Err(rate_limited(&format!("team {team}"), &e));
            }
            if info.team_tpm_limit.is_some() {
                scopes.push(scope);
            }
        }
        Ok(Some(Meter {
            keys: self.clone(),
            scopes,
            spend: spend_scopes.into_iter().map(|(s, ..)| s).collect(),
            price: None,
        }))
    }
}

/// Follows invalidations from the other replicas; after a dropped connection (when messages may
/// have been missed) it forgets every cached key and subscribes again.
async fn listen(client: redis::Client, first: redis::aio::PubSub, cache: Arc<KeyCache>) {
    let mut pubsub = Some(first);
    loop {
        if let Some(ps) = pubsub.take() {
            let mut messages = ps.into_on_message();
            while let Some(msg) = messages.next().await {
                let Ok(payload) = msg.get_payload::<String>() else {
                    continue;
                };
                match payload.strip_prefix("key:") {
                    Some(token) => cache.remove(token),
                    None => cache.clear(),
                }
            }
            tracing::warn!("lost the Redis key-invalidation subscription; reconnecting");
        }
        cache.clear();
        tokio::time::sleep(Duration::from_secs(1)).await;
        match client.get_async_pubsub().await {
            Ok(mut ps) => match ps.subscribe(INVALIDATION_CHANNEL).await {
                Ok(()) => {
                    cache.clear();
                    pubsub = Some(ps);
                }
                Err(e) => tracing::warn!("cannot subscribe to key invalidations: {e}"),
            },
            Err(e) => tracing::warn!("cannot reach Redis for key invalidations: {e}"),
        }
    }
}

/// The OpenAI `type` of a model refusal, LiteLLM's names. It travels in [`Error::code`] because
/// a `traceway::Error` takes its `type` from its kind; `ApiError` moves it back into `type`.
pub const KEY_MODEL_ACCESS_DENIED: &str = "key_model_access_denied";
/// See [`KEY_MODEL_ACCESS_DENIED`].
pub const TEAM_MODEL_ACCESS_DENIED: &str = "team_model_access_denied";

fn model_denied(info: &KeyInfo, model: &str, denied: access::Denied) -> ApiError {
    let (code, message) = match denied {
        access::Denied::Key => (
            KEY_MODEL_ACCESS_DENIED,
            format!(
                "key not allowed to access model. This key can only access models={:?}. Tried to access {model}",
                info.models
            ),
        ),
        access::Denied::Team => (
            TEAM_MODEL_ACCESS_DENIED,
            format!(
                "team not allowed to access model. Team={} can only access models={:?}. Tried to access {model}",
                info.team_id.as_deref().unwrap_or_default(),
                info.team_models
            ),
        ),
    };
    let mut e = Error::new(ErrorKind::PermissionDenied, message).with_param(Some("model"));
    e.code = Some(code.to_owned());
    ApiError(e)
}

fn rate_limited(whose: &str, e: &limits::Exceeded) -> ApiError {
    let secs = e.retry_after.as_secs_f64().ceil().max(1.0);
    let mut err = Error::new(
        ErrorKind::RateLimited,
        format!(
            "rate limit reached for {whose}: {} is {} per minute; retry in {secs} s",
            e.limit_name, e.limit
        ),
    );
    err.retry_after = Some(e.retry_after.max(Duration::from_secs(1)));
    ApiError(err)
}

/// Writes pending spend and makes due budget resets every `interval`, for as long as the key
/// subsystem lives.
async fn write_spend_every(
    interval: Duration,
    ledger: Arc<SpendLedger>,
    store: Store,
    cache: Arc<KeyCache>,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        ledger.write(&store, &cache).await;
        if let Err(e) = spend::reset_due_budgets(&store, &cache).await {
            tracing::warn!("budget resets not made (tried again next time): {e}");
        }
    }
}

fn over_budget(scope: &Scope, current: f64, max: f64) -> ApiError {
    // LiteLLM's wording; only a key's own budget goes unnamed.
    let whose = match scope {
        Scope::Key(_) => String::new(),
        Scope::Team(id) => format!("Team={id} "),
        Scope::User(id) => format!("User={id} "),
        Scope::Org(id) => format!("Organization={id} "),
    };
    ApiError(Error::new(
        ErrorKind::BudgetExceeded,
        format!("Budget has been exceeded! {whose}Current cost: {current}, Max budget: {max}"),
    ))
}

/// A call's token counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tokens {
    /// Input (prompt) tokens.
    pub input: u64,
    /// Output (completion) tokens.
    pub output: u64,
    /// All of them.
    pub total: u64,
}

/// Counts a call's tokens against the tpm limits that admitted it, and its cost into the
/// spend of its key, team, user and organisation.
pub struct Meter {
    keys: Arc<Keys>,
    scopes: Vec<String>,
    spend: Vec<Scope>,
    price: Option<traceway::deployment::Price>,
}

impl Meter {
    /// The answering deployment's prices (the call's cost is zero without them).
    pub fn priced(&mut self, price: Option<traceway::deployment::Price>) {
        self.price = price;
    }

    /// Adds `tokens` to this minute's usage and their cost to the spend.
    pub async fn record(&self, tokens: Tokens) {
        self.charge(tokens);
        if let Some(b) = self.keys.backend.get() {
            for s in &self.scopes {
                b.limiter.add_tokens(s, tokens.total).await;
            }
        }
    }

    /// Records `tokens` in the background (from a stream that is ending, which cannot wait);
    /// their cost is added at once.
    pub fn record_later(mut self, tokens: Tokens) {
        self.charge(tokens);
        // Charged once: the task below only counts the tokens.
        self.price = None;
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move { self.record(tokens).await });
        }
    }

    /// Adds the cost of `tokens` at the deployment's prices to the spend.
    fn charge(&self, tokens: Tokens) {
        if let Some(price) = self.price {
            self.keys
                .spend
                .add(&self.spend, price.cost(tokens.input, tokens.output));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_hash_as_litellm_and_never_repeat_themselves() {
        // hashlib.sha256(b"sk-1234").hexdigest()
        assert_eq!(
            hash_key("sk-1234"),
            "88dc28d0f030c55ed4ab77ed8faf098196cb1c05df778539800c9f1243fe6b4b"
        );
        assert_eq!(token_of("sk-1234"), hash_key("sk-1234"));
        assert_eq!(token_of("88dc28d0"), "88dc28d0");
        let k = generate_key();
        assert!(k.starts_with("sk-") && k.len() == 35, "{k}");
        assert_ne!(k, generate_key());
        assert_eq!(abbreviate("sk-abcdefgh"), "sk-...efgh");
    }
}
