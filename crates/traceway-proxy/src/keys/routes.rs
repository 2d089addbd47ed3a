//! The management API, with LiteLLM's paths, request fields and response bodies: `/key/*`,
//! `/team/*`, `/user/*`, `/organization/*`. Writes take the master key or a `proxy_admin` key;
//! a virtual key may read its own key, user and team.

use super::body::{Body, Kind};
use super::duration::{self, iso8601, now_ms};
use super::spend::Scope;
use super::store::{
    JsonMap, KeyFilter, KeyRow, Member, OrgRow, Store, StoreError, TeamRow, UserRow,
};
use super::{
    Caller, Keys, ROLE_PROXY_ADMIN, ROLE_PROXY_ADMIN_VIEWER, abbreviate, generate_key, hash_key,
    token_of,
};
use crate::auth;
use crate::error::ApiError;
use crate::server::AppState;
use axum::Json;
use axum::Router;
use axum::body::Body as HttpBody;
use axum::extract::State;
use axum::http::{HeaderMap, Uri};
use axum::routing::{delete, get, patch, post};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use traceway::{Error, ErrorKind};

/// Largest management request body.
const MAX_BODY: usize = 1024 * 1024;
/// `/key/list` page size when none is asked for, and the most one may ask for.
const DEFAULT_PAGE_SIZE: i64 = 10;
const MAX_PAGE_SIZE: i64 = 100;

/// LiteLLM key fields stored and echoed back, not acted on yet.
const KEY_EXTRAS: &[(&str, Kind)] = &[
    ("aliases", Kind::Obj),
    ("config", Kind::Obj),
    ("permissions", Kind::Obj),
    ("budget_duration", Kind::Str),
    ("max_parallel_requests", Kind::Int),
    ("soft_budget", Kind::Num),
    ("tags", Kind::StrList),
    ("allowed_cache_controls", Kind::List),
    ("model_max_budget", Kind::Obj),
    ("model_rpm_limit", Kind::Obj),
    ("model_tpm_limit", Kind::Obj),
    ("guardrails", Kind::StrList),
    ("enforced_params", Kind::StrList),
    ("allowed_routes", Kind::List),
    ("budget_id", Kind::Str),
    ("key_type", Kind::Str),
];
/// LiteLLM team fields stored and echoed back, not acted on yet.
const TEAM_EXTRAS: &[(&str, Kind)] = &[
    ("budget_duration", Kind::Str),
    ("soft_budget", Kind::Num),
    ("max_parallel_requests", Kind::Int),
    ("tags", Kind::List),
    ("model_aliases", Kind::Obj),
    ("guardrails", Kind::StrList),
    ("team_member_permissions", Kind::StrList),
    ("router_settings", Kind::Obj),
];
/// LiteLLM user fields stored and echoed back, not acted on yet.
const USER_EXTRAS: &[(&str, Kind)] = &[("budget_duration", Kind::Str), ("sso_user_id", Kind::Str)];
/// LiteLLM organisation fields stored and echoed back, not acted on yet.
const ORG_EXTRAS: &[(&str, Kind)] = &[
    ("budget_id", Kind::Str),
    ("budget_duration", Kind::Str),
    ("tpm_limit", Kind::Int),
    ("rpm_limit", Kind::Int),
    ("max_parallel_requests", Kind::Int),
    ("soft_budget", Kind::Num),
    ("tags", Kind::List),
];
/// The roles `/user/new` and `/user/update` accept (LiteLLM's).
const USER_ROLES: &[&str] = &[
    ROLE_PROXY_ADMIN,
    ROLE_PROXY_ADMIN_VIEWER,
    "internal_user",
    "internal_user_viewer",
];

/// The management routes.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/key/generate", post(key_generate))
        .route("/key/info", get(key_info))
        .route("/key/update", post(key_update))
        .route("/key/delete", post(key_delete))
        .route("/key/list", get(key_list))
        .route("/key/block", post(key_block))
        .route("/key/regenerate", post(key_regenerate))
        .route("/key/{key}/regenerate", post(key_regenerate_path))
        .route("/key/unblock", post(key_unblock))
        .route("/team/new", post(team_new))
        .route("/team/info", get(team_info))
        .route("/team/update", post(team_update))
        .route("/team/delete", post(team_delete))
        .route("/team/list", get(team_list))
        .route("/team/block", post(team_block))
        .route("/team/unblock", post(team_unblock))
        .route("/team/member_add", post(team_member_add))
        .route("/team/member_delete", post(team_member_delete))
        .route("/user/new", post(user_new))
        .route("/user/info", get(user_info))
        .route("/user/update", post(user_update))
        .route("/organization/new", post(org_new))
        .route("/organization/info", get(org_info))
        .route("/organization/list", get(org_list))
        .route("/organization/update", patch(org_update).post(org_update))
        .route("/organization/delete", delete(org_delete).post(org_delete))
        .route("/user/list", get(user_list))
        .route("/user/delete", post(user_delete))
}

// ---- plumbing ----

type Answer = Result<Json<Value>, ApiError>;

fn forbidden(message: impl Into<String>) -> ApiError {
    ApiError(Error::new(ErrorKind::PermissionDenied, message))
}

fn not_found(message: impl Into<String>) -> ApiError {
    ApiError(Error::new(ErrorKind::NotFound, message))
}

/// The key subsystem and the authenticated caller (401 for a missing or bad key).
async fn caller<'a>(
    state: &'a AppState,
    headers: &HeaderMap,
) -> Result<(Caller, &'a Arc<Keys>), ApiError> {
    let Some(keys) = state.keys.as_ref() else {
        return Err(forbidden(
            "the management API is off: set general_settings.master_key (or LITELLM_MASTER_KEY) to create and manage virtual keys",
        ));
    };
    let caller = auth::authenticate(state, headers).await?;
    Ok((caller, keys))
}

fn require_admin(caller: &Caller, route: &str) -> Result<(), ApiError> {
    if caller.is_admin() {
        Ok(())
    } else {
        Err(forbidden(format!(
            "only the master key or a key of a proxy_admin user may call {route}"
        )))
    }
}

/// An admin's request to `route`: the key store and the body read (403 for anyone else).
async fn admin_body<'a>(
    state: &'a AppState,
    headers: &HeaderMap,
    body: HttpBody,
    route: &'static str,
) -> Result<(&'a Arc<Keys>, Body), ApiError> {
    let (caller, keys) = caller(state, headers).await?;
    require_admin(&caller, route)?;
    Ok((keys, read(body, route).await?))
}

async fn read(body: HttpBody, route: &'static str) -> Result<Body, ApiError> {
    let bytes = axum::body::to_bytes(body, MAX_BODY).await.map_err(|_| {
        ApiError(Error::new(
            ErrorKind::PayloadTooLarge,
            format!("the request body is larger than {MAX_BODY} bytes, or could not be read"),
        ))
    })?;
    Body::parse(&bytes, route)
}

fn query(uri: &Uri) -> HashMap<String, String> {
    url::form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
        .into_owned()
        .collect()
}

fn ts(ms: i64) -> Value {
    Value::String(iso8601(ms))
}

fn opt_ts(ms: Option<i64>) -> Value {
    ms.map_or(Value::Null, ts)
}

/// When a budget given this `budget_duration` (in `extra`) next resets; a malformed one is a 400.
fn reset_at(extra: &JsonMap, now: i64) -> Result<Option<i64>, ApiError> {
    super::spend::budget_reset_at(extra, now).map_err(|e| {
        ApiError::bad_request(format!("budget_duration: {e}"), Some("budget_duration"))
    })
}

/// After an update: when `extra`'s `budget_duration` is not `before`, counts `budget_reset_at`
/// again from `now`; whether it did (the stored reset time then needs writing).
fn recount_reset(
    before: Option<Value>,
    extra: &JsonMap,
    now: i64,
    budget_reset_at: &mut Option<i64>,
) -> Result<bool, ApiError> {
    if extra.get("budget_duration") == before.as_ref() {
        return Ok(false);
    }
    *budget_reset_at = reset_at(extra, now)?;
    Ok(true)
}

fn duplicate(e: StoreError) -> ApiError {
    match e {
        StoreError::Duplicate("key_alias") => ApiError::bad_request(
            "key_alias must be unique: another key already has this alias",
            Some("key_alias"),
        ),
        StoreError::Duplicate(what) => {
            ApiError::bad_request(format!("{what} already exists"), Some(what))
        }
        other => other.into(),
    }
}

/// The named columns, then the stored extras, then LiteLLM's defaults for extras never given.
fn with_extras(mut obj: JsonMap, extra: &JsonMap, defaults: &[(&str, Value)]) -> Value {
    for (k, v) in extra {
        obj.entry(k.clone()).or_insert_with(|| v.clone());
    }
    for (k, v) in defaults {
        obj.entry((*k).to_owned()).or_insert_with(|| v.clone());
    }
    Value::Object(obj)
}

fn object(v: Value) -> JsonMap {
    match v {
        Value::Object(m) => m,
        _ => JsonMap::new(),
    }
}

// ---- response objects ----

fn key_object(k: &KeyRow) -> Value {
    let base = object(json!({
        "token": k.token,
        "key_name": k.key_name,
        "key_alias": k.key_alias,
        "user_id": k.user_id,
        "team_id": k.team_id,
        "organization_id": k.organization_id,
        "models": k.models,
        "metadata": k.metadata,
        "expires": opt_ts(k.expires),
        "rpm_limit": k.rpm_limit,
        "tpm_limit": k.tpm_limit,
        "max_budget": k.max_budget,
        "spend": k.spend,
        "budget_reset_at": opt_ts(k.budget_reset_at),
        "blocked": k.blocked,
        "created_by": k.created_by,
        "created_at": ts(k.created_at),
        "updated_at": ts(k.updated_at),
    }));
    with_extras(
        base,
        &k.extra,
        &[
            ("aliases", json!({})),
            ("config", json!({})),
            ("permissions", json!({})),
            ("budget_duration", Value::Null),
            ("max_parallel_requests", Value::Null),
            ("soft_budget", Value::Null),
            ("tags", Value::Null),
        ],
    )
}

fn member_object(m: &Member) -> Value {
    json!({"role": m.role, "user_id": m.user_id, "user_email": m.user_email})
}

fn team_object(t: &TeamRow, members: &[Member]) -> Value {
    let base = object(json!({
        "team_id": t.team_id,
        "team_alias": t.team_alias,
        "organization_id": t.organization_id,
        "models": t.models,
        "metadata": t.metadata,
        "members_with_roles": members.iter().map(member_object).collect::<Vec<_>>(),
        "admins": members.iter().filter(|m| m.role == "admin").map(|m| m.user_id.clone()).collect::<Vec<_>>(),
        "members": members.iter().filter(|m| m.role != "admin").map(|m| m.user_id.clone()).collect::<Vec<_>>(),
        "rpm_limit": t.rpm_limit,
        "tpm_limit": t.tpm_limit,
        "max_budget": t.max_budget,
        "spend": t.spend,
        "budget_reset_at": opt_ts(t.budget_reset_at),
        "blocked": t.blocked,
        "created_at": ts(t.created_at),
        "updated_at": ts(t.updated_at),
    }));
    with_extras(
        base,
        &t.extra,
        &[
            ("budget_duration", Value::Null),
            ("max_parallel_requests", Value::Null),
        ],
    )
}

fn user_object(u: &UserRow, teams: &[TeamRow]) -> Value {
    let base = object(json!({
        "user_id": u.user_id,
        "user_email": u.user_email,
        "user_alias": u.user_alias,
        "user_role": u.user_role,
        "models": u.models,
        "metadata": u.metadata,
        "max_budget": u.max_budget,
        "spend": u.spend,
        "budget_reset_at": opt_ts(u.budget_reset_at),
        "teams": teams.iter().map(|t| t.team_id.clone()).collect::<Vec<_>>(),
        "created_at": ts(u.created_at),
        "updated_at": ts(u.updated_at),
    }));
    with_extras(base, &u.extra, &[("budget_duration", Value::Null)])
}

fn org_object(o: &OrgRow) -> Value {
    let base = object(json!({
        "organization_id": o.organization_id,
        "organization_alias": o.organization_alias,
        "models": o.models,
        "metadata": o.metadata,
        "max_budget": o.max_budget,
        "spend": o.spend,
        "created_by": o.created_by,
        "updated_by": o.created_by,
        "created_at": ts(o.created_at),
        "updated_at": ts(o.updated_at),
    }));
    with_extras(base, &o.extra, &[("budget_id", Value::Null)])
}

async fn team_with_members(store: &Store, t: &TeamRow) -> Result<Value, ApiError> {
    let members = store.members(&t.team_id).await?;
    Ok(team_object(t, &members))
}

// ---- keys ----

/// The fields of `/key/generate` (and the key half of `/user/new`).
#[derive(Debug, Default)]
struct KeyInput {
    key: Option<String>,
    key_alias: Option<String>,
    user_id: Option<String>,
    team_id: Option<String>,
    organization_id: Option<String>,
    models: Option<Vec<String>>,
    metadata: Option<JsonMap>,
    duration: Option<String>,
    rpm_limit: Option<i64>,
    tpm_limit: Option<i64>,
    max_budget: Option<f64>,
    spend: Option<f64>,
    blocked: Option<bool>,
    extra: JsonMap,
}

fn read_key_input(b: &mut Body) -> Result<KeyInput, ApiError> {
    let mut input = KeyInput {
        key: b.string("key")?,
        key_alias: b.string("key_alias")?,
        user_id: b.string("user_id")?,
        team_id: b.string("team_id")?,
        organization_id: b.string("organization_id")?,
        models: b.strings("models")?,
        metadata: b.object("metadata")?,
        duration: b.string("duration")?,
        rpm_limit: b.count("rpm_limit")?,
        tpm_limit: b.count("tpm_limit")?,
        max_budget: b.amount("max_budget")?,
        spend: b.amount("spend")?,
        blocked: b.boolean("blocked")?,
        extra: JsonMap::new(),
    };
    b.extras(KEY_EXTRAS, &mut input.extra)?;
    Ok(input)
}

/// Expiry for `duration`, Unix ms.
fn expiry(duration: &str) -> Result<i64, ApiError> {
    let d = duration::parse(duration)
        .map_err(|e| ApiError::bad_request(e.to_string(), Some("duration")))?;
    Ok(now_ms().saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)))
}

async fn require_team(store: &Store, team_id: &str) -> Result<TeamRow, ApiError> {
    store.team(team_id).await?.ok_or_else(|| {
        ApiError::bad_request(
            format!("team_id \"{team_id}\" does not exist; create it with /team/new first"),
            Some("team_id"),
        )
    })
}

async fn require_org(store: &Store, org_id: &str) -> Result<OrgRow, ApiError> {
    store.org(org_id).await?.ok_or_else(|| {
        ApiError::bad_request(
            format!("organization_id \"{org_id}\" does not exist; create it with /organization/new first"),
            Some("organization_id"),
        )
    })
}

fn new_user(user_id: &str, email: Option<String>, now: i64) -> UserRow {
    UserRow {
        user_id: user_id.to_owned(),
        user_email: email,
        user_role: Some("internal_user".to_owned()),
        created_at: now,
        updated_at: now,
        ..UserRow::default()
    }
}

/// Validates and stores a new key; returns the key itself (shown once) and its row.
async fn create_key(
    store: &Store,
    caller: &Caller,
    input: KeyInput,
) -> Result<(String, KeyRow), ApiError> {
    let key = match input.key {
        Some(k) if !k.starts_with("sk-") => {
            return Err(ApiError::bad_request(
                "a key given in \"key\" must start with \"sk-\"",
                Some("key"),
            ));
        }
        Some(k) => k,
        None => generate_key(),
    };
    let expires = input.duration.as_deref().map(expiry).transpose()?;
    if let Some(t) = &input.team_id {
        require_team(store, t).await?;
    }
    if let Some(o) = &input.organization_id {
        require_org(store, o).await?;
    }
    let now = now_ms();
    let budget_reset_at = reset_at(&input.extra, now)?;
    if let Some(u) = &input.user_id
        && store.user(u).await?.is_none()
    {
        // As LiteLLM: a key for a user not stored yet creates the user.
        store.insert_user(&new_user(u, None, now)).await?;
    }
    let row = KeyRow {
        token: hash_key(&key),
        key_name: Some(abbreviate(&key)),
        key_alias: input.key_alias,
        user_id: input.user_id,
        team_id: input.team_id,
        organization_id: input.organization_id,
        models: input.models.unwrap_or_default(),
        metadata: input.metadata.unwrap_or_default(),
        expires,
        rpm_limit: input.rpm_limit,
        tpm_limit: input.tpm_limit,
        max_budget: input.max_budget,
        spend: input.spend.unwrap_or(0.0),
        blocked: input.blocked.unwrap_or(false),
        extra: input.extra,
        created_by: caller.user_id().map(str::to_owned),
        created_at: now,
        updated_at: now,
        budget_reset_at,
    };
    store.insert_key(&row).await.map_err(duplicate)?;
    Ok((key, row))
}

fn generated(key: &str, row: &KeyRow, duration: Option<&str>) -> Value {
    let mut obj = object(key_object(row));
    obj.insert("key".into(), json!(key));
    obj.insert("token_id".into(), json!(row.token));
    obj.insert("duration".into(), json!(duration));
    Value::Object(obj)
}

async fn key_generate(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: HttpBody,
) -> Answer {
    let (caller, keys) = caller(&state, &headers).await?;
    require_admin(&caller, "/key/generate")?;
    let mut b = read(body, "/key/generate").await?;
    let input = read_key_input(&mut b)?;
    b.finish();
    let duration = input.duration.clone();
    let store = keys.store().await?;
    let (key, row) = create_key(store, &caller, input).await?;
    Ok(Json(generated(&key, &row, duration.as_deref())))
}

async fn key_info(State(state): State<Arc<AppState>>, headers: HeaderMap, uri: Uri) -> Answer {
    let (caller, keys) = caller(&state, &headers).await?;
    let q = query(&uri);
    let asked = q.get("key").filter(|k| !k.is_empty()).cloned();
    let token = match (&asked, &caller) {
        (Some(k), _) => token_of(k),
        (None, Caller::Key(info)) => info.token.clone(),
        (None, _) => {
            return Err(ApiError::bad_request(
                "key is required: /key/info?key=sk-…",
                Some("key"),
            ));
        }
    };
    if !caller.is_admin_reader() && caller.key().map(|k| k.token.as_str()) != Some(token.as_str()) {
        return Err(forbidden("a key may only read its own /key/info"));
    }
    let row = keys
        .store()
        .await?
        .key(&token)
        .await?
        .ok_or_else(|| not_found("no such key"))?;
    let mut info = object(key_object(&row));
    info.remove("token");
    Ok(Json(json!({"key": asked.unwrap_or(token), "info": info})))
}

async fn key_update(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: HttpBody,
) -> Answer {
    let (keys, mut b) = admin_body(&state, &headers, body, "/key/update").await?;
    let given = b.required_string("key")?;
    let input = read_key_input(&mut b)?;
    b.finish();
    let expires = input.duration.as_deref().map(expiry).transpose()?;
    let store = keys.store().await?;
    let token = token_of(&given);
    let mut row = store
        .key(&token)
        .await?
        .ok_or_else(|| not_found("no such key"))?;
    if expires.is_some() {
        row.expires = expires;
    }
    if let Some(t) = &input.team_id {
        require_team(store, t).await?;
        row.team_id = Some(t.clone());
    }
    if let Some(o) = &input.organization_id {
        require_org(store, o).await?;
        row.organization_id = Some(o.clone());
    }
    if let Some(u) = input.user_id {
        if store.user(&u).await?.is_none() {
            store.insert_user(&new_user(&u, None, now_ms())).await?;
        }
        row.user_id = Some(u);
    }
    if input.key_alias.is_some() {
        row.key_alias = input.key_alias;
    }
    if let Some(m) = input.models {
        row.models = m;
    }
    if let Some(m) = input.metadata {
        row.metadata = m;
    }
    if input.rpm_limit.is_some() {
        row.rpm_limit = input.rpm_limit;
    }
    if input.tpm_limit.is_some() {
        row.tpm_limit = input.tpm_limit;
    }
    if input.max_budget.is_some() {
        row.max_budget = input.max_budget;
    }
    if let Some(s) = input.spend {
        row.spend = s;
    }
    let set_spend = input.spend;
    if let Some(b) = input.blocked {
        row.blocked = b;
    }
    let before = row.extra.get("budget_duration").cloned();
    row.extra.extend(input.extra);
    row.updated_at = now_ms();
    let reset_changed =
        recount_reset(before, &row.extra, row.updated_at, &mut row.budget_reset_at)?;
    store.update_key(&row).await.map_err(duplicate)?;
    let scope = Scope::Key(token.clone());
    if let Some(value) = set_spend {
        store.set_spend(&scope, value).await?;
    }
    if reset_changed {
        store.set_budget_reset(&scope, row.budget_reset_at).await?;
    }
    keys.invalidate(Some(&token)).await;
    let mut obj = object(key_object(&row));
    obj.insert("key".into(), json!(given));
    Ok(Json(Value::Object(obj)))
}

async fn key_regenerate(state: State<Arc<AppState>>, headers: HeaderMap, body: HttpBody) -> Answer {
    regenerate(state, headers, None, body).await
}

async fn key_regenerate_path(
    state: State<Arc<AppState>>,
    headers: HeaderMap,
    axum::extract::Path(key): axum::extract::Path<String>,
    body: HttpBody,
) -> Answer {
    regenerate(state, headers, Some(key), body).await
}

/// `/key/regenerate` and `/key/{key}/regenerate` (LiteLLM's): a new key (or `new_key`) takes the
/// old one's place with all its settings; the old key stops working at once. Answered with the
/// key object and the new `key`, shown this once.
async fn regenerate(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    in_path: Option<String>,
    body: HttpBody,
) -> Answer {
    let (keys, mut b) = admin_body(&state, &headers, body, "/key/regenerate").await?;
    let given = match in_path {
        Some(k) => {
            // The body may repeat it; the path names the key.
            let _ = b.string("key")?;
            k
        }
        None => b.required_string("key")?,
    };
    let new_key = match b.string("new_key")? {
        Some(k) if !k.starts_with("sk-") => {
            return Err(ApiError::bad_request(
                "a key given in \"new_key\" must start with \"sk-\"",
                Some("new_key"),
            ));
        }
        Some(k) => k,
        None => generate_key(),
    };
    b.finish();
    let store = keys.store().await?;
    let old = token_of(&given);
    let new = hash_key(&new_key);
    if !store
        .rekey(&old, &new, &abbreviate(&new_key), now_ms())
        .await
        .map_err(duplicate)?
    {
        return Err(not_found("no such key"));
    }
    keys.invalidate(Some(&old)).await;
    let row = store
        .key(&new)
        .await?
        .ok_or_else(|| not_found("no such key"))?;
    let mut obj = object(key_object(&row));
    obj.insert("key".into(), json!(new_key));
    Ok(Json(Value::Object(obj)))
}

async fn key_block(state: State<Arc<AppState>>, headers: HeaderMap, body: HttpBody) -> Answer {
    set_key_blocked(state, headers, body, "/key/block", true).await
}

async fn key_unblock(state: State<Arc<AppState>>, headers: HeaderMap, body: HttpBody) -> Answer {
    set_key_blocked(state, headers, body, "/key/unblock", false).await
}

/// `/key/block` and `/key/unblock` (LiteLLM's): `{"key": "sk-…" or its hash}`, answered with the
/// key's record. A blocked key is refused with a 401 on every replica within the cache TTL.
async fn set_key_blocked(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: HttpBody,
    route: &'static str,
    blocked: bool,
) -> Answer {
    let (keys, mut b) = admin_body(&state, &headers, body, route).await?;
    let given = b.required_string("key")?;
    b.finish();
    let store = keys.store().await?;
    let token = token_of(&given);
    let mut row = store
        .key(&token)
        .await?
        .ok_or_else(|| not_found("no such key"))?;
    row.blocked = blocked;
    row.updated_at = now_ms();
    store.update_key(&row).await.map_err(duplicate)?;
    keys.invalidate(Some(&token)).await;
    Ok(Json(key_object(&row)))
}

async fn key_delete(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: HttpBody,
) -> Answer {
    let (keys, mut b) = admin_body(&state, &headers, body, "/key/delete").await?;
    let given = b.strings("keys")?.unwrap_or_default();
    let aliases = b.strings("key_aliases")?.unwrap_or_default();
    b.finish();
    if given.is_empty() && aliases.is_empty() {
        return Err(ApiError::bad_request(
            "at least one of \"keys\" or \"key_aliases\" must be given",
            Some("keys"),
        ));
    }
    let store = keys.store().await?;
    let mut tokens: Vec<String> = given.iter().map(|k| token_of(k)).collect();
    let mut missing = 0usize;
    for t in &tokens {
        if store.key(t).await?.is_none() {
            missing += 1;
        }
    }
    for a in &aliases {
        match store.token_for_alias(a).await? {
            Some(t) => tokens.push(t),
            None => missing += 1,
        }
    }
    if missing > 0 {
        return Err(not_found(format!(
            "{missing} of the {} keys given do not exist; nothing was deleted",
            given.len() + aliases.len()
        )));
    }
    store.delete_keys(&tokens).await?;
    for t in &tokens {
        keys.invalidate(Some(t)).await;
    }
    let mut deleted = given;
    deleted.extend(aliases);
    Ok(Json(json!({"deleted_keys": deleted})))
}

fn page_param(
    q: &HashMap<String, String>,
    name: &str,
    default: i64,
    max: i64,
) -> Result<i64, ApiError> {
    match q.get(name) {
        None => Ok(default),
        Some(v) => match v.parse::<i64>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(ApiError::bad_request(
                format!("{name} must be a whole number from 1 to {max}"),
                Some(name),
            )),
        },
    }
}

async fn key_list(State(state): State<Arc<AppState>>, headers: HeaderMap, uri: Uri) -> Answer {
    let (caller, keys) = caller(&state, &headers).await?;
    if !caller.is_admin_reader() {
        return Err(forbidden(
            "only the master key or a key of a proxy_admin user may call /key/list",
        ));
    }
    let q = query(&uri);
    let page = page_param(&q, "page", 1, i64::from(u32::MAX))?;
    let size = page_param(&q, "size", DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)?;
    let full = matches!(
        q.get("return_full_object").map(String::as_str),
        Some("true" | "True" | "1")
    );
    let filter = KeyFilter {
        user_id: q.get("user_id").cloned(),
        team_id: q.get("team_id").cloned(),
        key_alias: q.get("key_alias").cloned(),
        organization_id: q.get("organization_id").cloned(),
    };
    let (rows, total) = keys
        .store()
        .await?
        .list_keys(&filter, (page - 1).saturating_mul(size), size)
        .await?;
    let listed: Vec<Value> = rows
        .iter()
        .map(|k| if full { key_object(k) } else { json!(k.token) })
        .collect();
    Ok(Json(json!({
        "keys": listed,
        "total_count": total,
        "current_page": page,
        "total_pages": (total + size - 1) / size,
    })))
}

// ---- teams ----

/// Reads `members_with_roles` (or `/team/member_add`'s `member`): each needs a `user_id` or a
/// `user_email`; a user not stored yet is created.
async fn members_input(
    store: &Store,
    field: &str,
    items: Vec<Value>,
) -> Result<Vec<(String, String)>, ApiError> {
    let mut out = Vec::new();
    let now = now_ms();
    for (i, item) in items.into_iter().enumerate() {
        let param = format!("{field}[{i}]");
        let Value::Object(mut m) = item else {
            return Err(ApiError::bad_request(
                format!(
                    "{param} must be an object like {{\"role\": \"user\", \"user_id\": \"…\"}}"
                ),
                Some(&param),
            ));
        };
        let text = |m: &mut JsonMap, k: &str| -> Result<Option<String>, ApiError> {
            match m.remove(k) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s)),
                Some(_) => Err(ApiError::bad_request(
                    format!("{param}.{k} must be a string"),
                    Some(&format!("{param}.{k}")),
                )),
            }
        };
        let role = text(&mut m, "role")?.unwrap_or_else(|| "user".to_owned());
        if role != "admin" && role != "user" {
            return Err(ApiError::bad_request(
                format!("{param}.role must be \"admin\" or \"user\""),
                Some(&format!("{param}.role")),
            ));
        }
        let user_id = text(&mut m, "user_id")?;
        let email = text(&mut m, "user_email")?;
        let user_id = match (user_id, email) {
            (Some(id), email) => {
                if store.user(&id).await?.is_none() {
                    store.insert_user(&new_user(&id, email, now)).await?;
                }
                id
            }
            (None, Some(email)) => match store.user_by_email(&email).await? {
                Some(u) => u.user_id,
                None => {
                    let id = uuid::Uuid::new_v4().to_string();
                    store.insert_user(&new_user(&id, Some(email), now)).await?;
                    id
                }
            },
            (None, None) => {
                return Err(ApiError::bad_request(
                    format!("{param} needs a user_id or a user_email"),
                    Some(&param),
                ));
            }
        };
        out.push((user_id, role));
    }
    Ok(out)
}

/// The team fields shared by `/team/new` and `/team/update`, applied onto `t`.
async fn read_team_fields(store: &Store, b: &mut Body, t: &mut TeamRow) -> Result<(), ApiError> {
    if let Some(a) = b.string("team_alias")? {
        t.team_alias = Some(a);
    }
    if let Some(o) = b.string("organization_id")? {
        require_org(store, &o).await?;
        t.organization_id = Some(o);
    }
    if let Some(m) = b.strings("models")? {
        t.models = m;
    }
    if let Some(m) = b.object("metadata")? {
        t.metadata = m;
    }
    if let Some(v) = b.count("rpm_limit")? {
        t.rpm_limit = Some(v);
    }
    if let Some(v) = b.count("tpm_limit")? {
        t.tpm_limit = Some(v);
    }
    if let Some(v) = b.amount("max_budget")? {
        t.max_budget = Some(v);
    }
    if let Some(v) = b.boolean("blocked")? {
        t.blocked = v;
    }
    b.extras(TEAM_EXTRAS, &mut t.extra)
}

async fn team_new(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: HttpBody,
) -> Answer {
    let (keys, mut b) = admin_body(&state, &headers, body, "/team/new").await?;
    let store = keys.store().await?;
    let now = now_ms();
    let mut team = TeamRow {
        team_id: b
            .string("team_id")?
            .filter(|s| !s.trim().is_empty())
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
        created_at: now,
        updated_at: now,
        ..TeamRow::default()
    };
    read_team_fields(store, &mut b, &mut team).await?;
    team.budget_reset_at = reset_at(&team.extra, now)?;
    let members = b.list("members_with_roles")?.unwrap_or_default();
    b.finish();
    let members = members_input(store, "members_with_roles", members).await?;
    store.insert_team(&team).await.map_err(duplicate)?;
    // Members are listed in join order: each joins a millisecond after the one before.
    for (i, (user_id, role)) in (0i64..).zip(&members) {
        store
            .upsert_member(&team.team_id, user_id, role, now + i)
            .await?;
    }
    Ok(Json(team_with_members(store, &team).await?))
}

/// May `caller` read `team_id`: admins, its keys, and its members' keys.
async fn may_read_team(store: &Store, caller: &Caller, team_id: &str) -> Result<bool, ApiError> {
    if caller.is_admin_reader() {
        return Ok(true);
    }
    let Some(k) = caller.key() else {
        return Ok(false);
    };
    if k.team_id.as_deref() == Some(team_id) {
        return Ok(true);
    }
    match &k.user_id {
        Some(u) => Ok(store.is_member(team_id, u).await?),
        None => Ok(false),
    }
}

async fn team_info(State(state): State<Arc<AppState>>, headers: HeaderMap, uri: Uri) -> Answer {
    let (caller, keys) = caller(&state, &headers).await?;
    let q = query(&uri);
    let team_id = match (q.get("team_id").filter(|t| !t.is_empty()), caller.key()) {
        (Some(t), _) => t.clone(),
        (None, Some(k)) if k.team_id.is_some() => k.team_id.clone().unwrap_or_default(),
        _ => {
            return Err(ApiError::bad_request(
                "team_id is required: /team/info?team_id=…",
                Some("team_id"),
            ));
        }
    };
    let store = keys.store().await?;
    if !may_read_team(store, &caller, &team_id).await? {
        return Err(forbidden("a key may only read /team/info of its own team"));
    }
    let team = store
        .team(&team_id)
        .await?
        .ok_or_else(|| not_found(format!("team \"{team_id}\" does not exist")))?;
    let filter = KeyFilter {
        team_id: Some(team_id.clone()),
        ..KeyFilter::default()
    };
    let (team_keys, _) = store.list_keys(&filter, 0, 1000).await?;
    Ok(Json(json!({
        "team_id": team_id,
        "team_info": team_with_members(store, &team).await?,
        "keys": team_keys.iter().map(key_object).collect::<Vec<_>>(),
        "team_memberships": [],
    })))
}

async fn team_update(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: HttpBody,
) -> Answer {
    let (keys, mut b) = admin_body(&state, &headers, body, "/team/update").await?;
    let team_id = b.required_string("team_id")?;
    let store = keys.store().await?;
    let mut team = store
        .team(&team_id)
        .await?
        .ok_or_else(|| not_found(format!("team \"{team_id}\" does not exist")))?;
    let before = team.extra.get("budget_duration").cloned();
    read_team_fields(store, &mut b, &mut team).await?;
    let members = b.list("members_with_roles")?;
    b.finish();
    let now = now_ms();
    let reset_changed = recount_reset(before, &team.extra, now, &mut team.budget_reset_at)?;
    if let Some(members) = members {
        let members = members_input(store, "members_with_roles", members).await?;
        store.clear_members(&team_id).await?;
        for (i, (user_id, role)) in (0i64..).zip(&members) {
            store
                .upsert_member(&team_id, user_id, role, now + i)
                .await?;
        }
    }
    team.updated_at = now;
    store.update_team(&team).await?;
    if reset_changed {
        store
            .set_budget_reset(&Scope::Team(team_id.clone()), team.budget_reset_at)
            .await?;
    }
    keys.invalidate(None).await;
    Ok(Json(json!({
        "team_id": team_id,
        "data": team_with_members(store, &team).await?,
    })))
}

async fn team_block(state: State<Arc<AppState>>, headers: HeaderMap, body: HttpBody) -> Answer {
    set_team_blocked(state, headers, body, "/team/block", true).await
}

async fn team_unblock(state: State<Arc<AppState>>, headers: HeaderMap, body: HttpBody) -> Answer {
    set_team_blocked(state, headers, body, "/team/unblock", false).await
}

/// `/team/block` and `/team/unblock` (LiteLLM's): `{"team_id": …}`, answered with the team; every
/// key of a blocked team is refused with a 401.
async fn set_team_blocked(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: HttpBody,
    route: &'static str,
    blocked: bool,
) -> Answer {
    let (keys, mut b) = admin_body(&state, &headers, body, route).await?;
    let team_id = b.required_string("team_id")?;
    b.finish();
    let store = keys.store().await?;
    let mut team = store
        .team(&team_id)
        .await?
        .ok_or_else(|| not_found(format!("team \"{team_id}\" does not exist")))?;
    team.blocked = blocked;
    team.updated_at = now_ms();
    store.update_team(&team).await?;
    keys.invalidate(None).await;
    Ok(Json(team_with_members(store, &team).await?))
}

/// The ids a delete route's `field` lists (the whole body); none is a 400.
fn ids_to_delete(mut b: Body, field: &str, what: &str) -> Result<Vec<String>, ApiError> {
    let ids = b.strings(field)?.unwrap_or_default();
    b.finish();
    if ids.is_empty() {
        return Err(ApiError::bad_request(
            format!("{field} must list the {what} to delete"),
            Some(field),
        ));
    }
    Ok(ids)
}

async fn team_delete(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: HttpBody,
) -> Answer {
    let (keys, b) = admin_body(&state, &headers, body, "/team/delete").await?;
    let ids = ids_to_delete(b, "team_ids", "teams")?;
    let store = keys.store().await?;
    for id in &ids {
        if store.team(id).await?.is_none() {
            return Err(not_found(format!(
                "team \"{id}\" does not exist; nothing was deleted"
            )));
        }
    }
    // A team's keys go with it, as in LiteLLM.
    store.delete_teams(&ids).await?;
    keys.invalidate(None).await;
    Ok(Json(json!({"deleted_teams": ids})))
}

async fn team_list(State(state): State<Arc<AppState>>, headers: HeaderMap, uri: Uri) -> Answer {
    let (caller, keys) = caller(&state, &headers).await?;
    if !caller.is_admin_reader() {
        return Err(forbidden(
            "only the master key or a key of a proxy_admin user may call /team/list",
        ));
    }
    let q = query(&uri);
    let store = keys.store().await?;
    let teams = store
        .teams(q.get("organization_id").map(String::as_str))
        .await?;
    let mut out = Vec::with_capacity(teams.len());
    for t in &teams {
        out.push(team_with_members(store, t).await?);
    }
    Ok(Json(Value::Array(out)))
}

async fn team_member_add(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: HttpBody,
) -> Answer {
    let (keys, mut b) = admin_body(&state, &headers, body, "/team/member_add").await?;
    let team_id = b.required_string("team_id")?;
    let members = match b.raw("member") {
        Some(Value::Array(items)) => items,
        Some(one) => vec![one],
        None => Vec::new(),
    };
    b.finish();
    if members.is_empty() {
        return Err(ApiError::bad_request(
            "member must be a member object, or a list of them",
            Some("member"),
        ));
    }
    let store = keys.store().await?;
    let team = store
        .team(&team_id)
        .await?
        .ok_or_else(|| not_found(format!("team \"{team_id}\" does not exist")))?;
    let now = now_ms();
    let members = members_input(store, "member", members).await?;
    for (i, (user_id, role)) in (0i64..).zip(&members) {
        store
            .upsert_member(&team_id, user_id, role, now + i)
            .await?;
    }
    keys.invalidate(None).await;
    Ok(Json(team_with_members(store, &team).await?))
}

async fn team_member_delete(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: HttpBody,
) -> Answer {
    let (keys, mut b) = admin_body(&state, &headers, body, "/team/member_delete").await?;
    let team_id = b.required_string("team_id")?;
    let user_id = b.string("user_id")?;
    let email = b.string("user_email")?;
    b.finish();
    let store = keys.store().await?;
    let team = store
        .team(&team_id)
        .await?
        .ok_or_else(|| not_found(format!("team \"{team_id}\" does not exist")))?;
    let user_id = match (user_id, email) {
        (Some(id), _) => id,
        (None, Some(email)) => store
            .user_by_email(&email)
            .await?
            .map(|u| u.user_id)
            .ok_or_else(|| not_found(format!("no user has the email \"{email}\"")))?,
        (None, None) => {
            return Err(ApiError::bad_request(
                "user_id or user_email is required",
                Some("user_id"),
            ));
        }
    };
    if !store.delete_member(&team_id, &user_id).await? {
        return Err(not_found(format!(
            "user \"{user_id}\" is not a member of team \"{team_id}\""
        )));
    }
    keys.invalidate(None).await;
    Ok(Json(team_with_members(store, &team).await?))
}

// ---- users ----

fn read_role(b: &mut Body) -> Result<Option<String>, ApiError> {
    match b.string("user_role")? {
        None => Ok(None),
        Some(r) if USER_ROLES.contains(&r.as_str()) => Ok(Some(r)),
        Some(r) => Err(ApiError::bad_request(
            format!("user_role \"{r}\" is not one of {USER_ROLES:?}"),
            Some("user_role"),
        )),
    }
}

/// `teams` as LiteLLM takes it: team ids, or `{"team_id", "user_role"}` objects.
fn read_teams(b: &mut Body) -> Result<Vec<(String, String)>, ApiError> {
    let mut out = Vec::new();
    for (i, t) in b.list("teams")?.unwrap_or_default().into_iter().enumerate() {
        match t {
            Value::String(id) => out.push((id, "user".to_owned())),
            Value::Object(m) => {
                let id = m.get("team_id").and_then(Value::as_str);
                let role = m.get("user_role").and_then(Value::as_str).unwrap_or("user");
                match id {
                    Some(id) => out.push((id.to_owned(), role.to_owned())),
                    None => {
                        return Err(ApiError::bad_request(
                            format!("teams[{i}] needs a team_id"),
                            Some(&format!("teams[{i}]")),
                        ));
                    }
                }
            }
            _ => {
                return Err(ApiError::bad_request(
                    format!("teams[{i}] must be a team id or an object with a team_id"),
                    Some(&format!("teams[{i}]")),
                ));
            }
        }
    }
    Ok(out)
}

async fn user_new(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: HttpBody,
) -> Answer {
    let (caller, keys) = caller(&state, &headers).await?;
    require_admin(&caller, "/user/new")?;
    let mut b = read(body, "/user/new").await?;
    let user_email = b.string("user_email")?;
    let user_alias = b.string("user_alias")?;
    let user_role = read_role(&mut b)?;
    let mut teams = read_teams(&mut b)?;
    let auto_create_key = b.boolean("auto_create_key")?.unwrap_or(true);
    let mut user_extra = JsonMap::new();
    b.extras(USER_EXTRAS, &mut user_extra)?;
    let mut input = read_key_input(&mut b)?;
    b.finish();
    let user_id = input
        .user_id
        .clone()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    input.user_id = Some(user_id.clone());
    if let Some(t) = &input.team_id {
        teams.push((t.clone(), "user".to_owned()));
    }
    let store = keys.store().await?;
    for (t, _) in &teams {
        require_team(store, t).await?;
    }
    let now = now_ms();
    let mut user = match store.user(&user_id).await? {
        Some(u) => u,
        None => new_user(&user_id, None, now),
    };
    if user_email.is_some() {
        user.user_email = user_email;
    }
    if user_alias.is_some() {
        user.user_alias = user_alias;
    }
    if user_role.is_some() {
        user.user_role = user_role;
    }
    if let Some(m) = &input.models {
        user.models = m.clone();
    }
    if let Some(m) = &input.metadata {
        user.metadata = m.clone();
    }
    if input.max_budget.is_some() {
        user.max_budget = input.max_budget;
    }
    let before = user.extra.get("budget_duration").cloned();
    user.extra.extend(user_extra);
    user.updated_at = now;
    let reset_changed = recount_reset(before, &user.extra, now, &mut user.budget_reset_at)?;
    store.insert_user(&user).await?;
    store.update_user(&user).await?;
    if reset_changed {
        store
            .set_budget_reset(&Scope::User(user_id.clone()), user.budget_reset_at)
            .await?;
    }
    for (t, role) in &teams {
        let role = if role == "admin" { "admin" } else { "user" };
        store.upsert_member(t, &user_id, role, now).await?;
    }
    // The role may have changed for keys already cached.
    keys.invalidate(None).await;
    let duration = input.duration.clone();
    let mut out = if auto_create_key {
        let (key, row) = create_key(store, &caller, input).await?;
        object(generated(&key, &row, duration.as_deref()))
    } else {
        object(json!({"key": null}))
    };
    let user_teams = store.teams_of_user(&user_id).await?;
    if let Value::Object(u) = user_object(&user, &user_teams) {
        out.extend(u);
    }
    Ok(Json(Value::Object(out)))
}

async fn user_info(State(state): State<Arc<AppState>>, headers: HeaderMap, uri: Uri) -> Answer {
    let (caller, keys) = caller(&state, &headers).await?;
    let q = query(&uri);
    let user_id = match (q.get("user_id").filter(|u| !u.is_empty()), caller.key()) {
        (Some(u), _) => u.clone(),
        (None, Some(k)) if k.user_id.is_some() => k.user_id.clone().unwrap_or_default(),
        _ => {
            return Err(ApiError::bad_request(
                "user_id is required: /user/info?user_id=…",
                Some("user_id"),
            ));
        }
    };
    if !caller.is_admin_reader()
        && caller.key().and_then(|k| k.user_id.as_deref()) != Some(user_id.as_str())
    {
        return Err(forbidden("a key may only read /user/info of its own user"));
    }
    let store = keys.store().await?;
    let user = store
        .user(&user_id)
        .await?
        .ok_or_else(|| not_found(format!("user \"{user_id}\" does not exist")))?;
    let teams = store.teams_of_user(&user_id).await?;
    let filter = KeyFilter {
        user_id: Some(user_id.clone()),
        ..KeyFilter::default()
    };
    let (user_keys, _) = store.list_keys(&filter, 0, 1000).await?;
    let mut team_objects = Vec::with_capacity(teams.len());
    for t in &teams {
        team_objects.push(team_with_members(store, t).await?);
    }
    Ok(Json(json!({
        "user_id": user_id,
        "user_info": user_object(&user, &teams),
        "keys": user_keys.iter().map(key_object).collect::<Vec<_>>(),
        "teams": team_objects,
    })))
}

async fn user_update(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: HttpBody,
) -> Answer {
    let (keys, mut b) = admin_body(&state, &headers, body, "/user/update").await?;
    let user_id = b.string("user_id")?;
    let user_email = b.string("user_email")?;
    let user_alias = b.string("user_alias")?;
    let user_role = read_role(&mut b)?;
    let models = b.strings("models")?;
    let metadata = b.object("metadata")?;
    let max_budget = b.amount("max_budget")?;
    let spend = b.amount("spend")?;
    let mut extra = JsonMap::new();
    b.extras(USER_EXTRAS, &mut extra)?;
    b.finish();
    let store = keys.store().await?;
    let now = now_ms();
    let existing = match (&user_id, &user_email) {
        (Some(id), _) => store.user(id).await?,
        (None, Some(email)) => store.user_by_email(email).await?,
        (None, None) => {
            return Err(ApiError::bad_request(
                "user_id or user_email is required",
                Some("user_id"),
            ));
        }
    };
    // As LiteLLM: updating a user not stored yet creates it.
    let mut user = match existing {
        Some(u) => u,
        None => {
            let id = user_id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
            let u = new_user(&id, None, now);
            store.insert_user(&u).await?;
            u
        }
    };
    if user_email.is_some() {
        user.user_email = user_email;
    }
    if user_alias.is_some() {
        user.user_alias = user_alias;
    }
    if user_role.is_some() {
        user.user_role = user_role;
    }
    if let Some(m) = models {
        user.models = m;
    }
    if let Some(m) = metadata {
        user.metadata = m;
    }
    if max_budget.is_some() {
        user.max_budget = max_budget;
    }
    if let Some(s) = spend {
        user.spend = s;
    }
    let before = user.extra.get("budget_duration").cloned();
    user.extra.extend(extra);
    user.updated_at = now;
    let reset_changed = recount_reset(before, &user.extra, now, &mut user.budget_reset_at)?;
    store.update_user(&user).await?;
    let scope = Scope::User(user.user_id.clone());
    if let Some(value) = spend {
        store.set_spend(&scope, value).await?;
    }
    if reset_changed {
        store.set_budget_reset(&scope, user.budget_reset_at).await?;
    }
    keys.invalidate(None).await;
    let teams = store.teams_of_user(&user.user_id).await?;
    Ok(Json(json!({
        "user_id": user.user_id,
        "data": user_object(&user, &teams),
    })))
}

// ---- organisations ----

async fn org_new(State(state): State<Arc<AppState>>, headers: HeaderMap, body: HttpBody) -> Answer {
    let (caller, keys) = caller(&state, &headers).await?;
    require_admin(&caller, "/organization/new")?;
    let mut b = read(body, "/organization/new").await?;
    let alias = b.required_string("organization_alias")?;
    let now = now_ms();
    let mut org = OrgRow {
        organization_id: b
            .string("organization_id")?
            .filter(|s| !s.trim().is_empty())
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
        organization_alias: Some(alias),
        models: b.strings("models")?.unwrap_or_default(),
        metadata: b.object("metadata")?.unwrap_or_default(),
        max_budget: b.amount("max_budget")?,
        created_by: caller.user_id().map(str::to_owned),
        created_at: now,
        updated_at: now,
        ..OrgRow::default()
    };
    b.extras(ORG_EXTRAS, &mut org.extra)?;
    b.finish();
    keys.store()
        .await?
        .insert_org(&org)
        .await
        .map_err(duplicate)?;
    Ok(Json(org_object(&org)))
}

async fn org_info(State(state): State<Arc<AppState>>, headers: HeaderMap, uri: Uri) -> Answer {
    let (caller, keys) = caller(&state, &headers).await?;
    let q = query(&uri);
    let Some(org_id) = q.get("organization_id").filter(|o| !o.is_empty()) else {
        return Err(ApiError::bad_request(
            "organization_id is required: /organization/info?organization_id=…",
            Some("organization_id"),
        ));
    };
    let own = caller.key().and_then(|k| k.organization_id.as_deref()) == Some(org_id.as_str());
    if !caller.is_admin_reader() && !own {
        return Err(forbidden(
            "a key may only read /organization/info of its own organisation",
        ));
    }
    let store = keys.store().await?;
    let org = store
        .org(org_id)
        .await?
        .ok_or_else(|| not_found(format!("organization \"{org_id}\" does not exist")))?;
    let teams = store.teams(Some(org_id)).await?;
    let mut obj = object(org_object(&org));
    let mut team_objects = Vec::with_capacity(teams.len());
    for t in &teams {
        team_objects.push(team_with_members(store, t).await?);
    }
    obj.insert("teams".into(), Value::Array(team_objects));
    obj.insert("members".into(), json!([]));
    Ok(Json(Value::Object(obj)))
}

async fn org_list(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Answer {
    let (caller, keys) = caller(&state, &headers).await?;
    if !caller.is_admin_reader() {
        return Err(forbidden(
            "only the master key or a key of a proxy_admin user may call /organization/list",
        ));
    }
    let orgs = keys.store().await?.orgs().await?;
    Ok(Json(Value::Array(orgs.iter().map(org_object).collect())))
}

/// LiteLLM's `/user/list?page=&page_size=&role=`: users by creation, a page at a time.
async fn user_list(State(state): State<Arc<AppState>>, headers: HeaderMap, uri: Uri) -> Answer {
    let (caller, keys) = caller(&state, &headers).await?;
    if !caller.is_admin_reader() {
        return Err(forbidden(
            "only the master key or a key of a proxy_admin user may call /user/list",
        ));
    }
    let q = query(&uri);
    let page = page_param(&q, "page", 1, i64::from(u32::MAX))?;
    let size = page_param(&q, "page_size", 25, MAX_PAGE_SIZE)?;
    let role = q.get("role").filter(|r| !r.is_empty());
    if let Some(r) = role
        && !USER_ROLES.contains(&r.as_str())
    {
        return Err(ApiError::bad_request(
            format!("role \"{r}\" is not one of {USER_ROLES:?}"),
            Some("role"),
        ));
    }
    let store = keys.store().await?;
    let (users, total) = store
        .list_users(
            role.map(String::as_str),
            (page - 1).saturating_mul(size),
            size,
        )
        .await?;
    let mut listed = Vec::with_capacity(users.len());
    for u in &users {
        listed.push(user_object(u, &store.teams_of_user(&u.user_id).await?));
    }
    Ok(Json(json!({
        "users": listed,
        "total": total,
        "page": page,
        "page_size": size,
        "total_pages": (total + size - 1) / size,
    })))
}

/// LiteLLM's `/user/delete {"user_ids": [...]}`: the users go with their keys and team
/// memberships; an unknown id deletes nothing and is a 404.
async fn user_delete(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: HttpBody,
) -> Answer {
    let (keys, b) = admin_body(&state, &headers, body, "/user/delete").await?;
    let ids = ids_to_delete(b, "user_ids", "users")?;
    let store = keys.store().await?;
    for id in &ids {
        if store.user(id).await?.is_none() {
            return Err(not_found(format!(
                "user \"{id}\" does not exist; nothing was deleted"
            )));
        }
    }
    store.delete_users(&ids).await?;
    keys.invalidate(None).await;
    Ok(Json(json!({"deleted_users": ids})))
}

/// LiteLLM's `PATCH /organization/update` (POST too): alias, models, metadata, budget.
async fn org_update(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: HttpBody,
) -> Answer {
    let (keys, mut b) = admin_body(&state, &headers, body, "/organization/update").await?;
    let org_id = b.required_string("organization_id")?;
    let store = keys.store().await?;
    let mut org = store
        .org(&org_id)
        .await?
        .ok_or_else(|| not_found(format!("organization \"{org_id}\" does not exist")))?;
    if let Some(a) = b.string("organization_alias")? {
        org.organization_alias = Some(a);
    }
    if let Some(m) = b.strings("models")? {
        org.models = m;
    }
    if let Some(m) = b.object("metadata")? {
        org.metadata = m;
    }
    if let Some(v) = b.amount("max_budget")? {
        org.max_budget = Some(v);
    }
    let spend = b.amount("spend")?;
    b.extras(ORG_EXTRAS, &mut org.extra)?;
    b.finish();
    org.updated_at = now_ms();
    store.update_org(&org).await?;
    if let Some(value) = spend {
        store.set_spend(&Scope::Org(org_id.clone()), value).await?;
        org.spend = value;
    }
    // Keys carry their organisation's budget in the cache.
    keys.invalidate(None).await;
    Ok(Json(org_object(&org)))
}

/// LiteLLM's `DELETE /organization/delete {"organization_ids": [...]}` (POST too): answers the
/// deleted organisations. One that still has teams or keys is a 400 and nothing is deleted, so
/// that no team or key is left pointing at a missing organisation.
async fn org_delete(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: HttpBody,
) -> Answer {
    let (keys, b) = admin_body(&state, &headers, body, "/organization/delete").await?;
    let ids = ids_to_delete(b, "organization_ids", "organisations")?;
    let store = keys.store().await?;
    let mut deleted = Vec::with_capacity(ids.len());
    for id in &ids {
        let org = store.org(id).await?.ok_or_else(|| {
            not_found(format!(
                "organization \"{id}\" does not exist; nothing was deleted"
            ))
        })?;
        let (teams, org_keys) = store.org_members(id).await?;
        if teams > 0 || org_keys > 0 {
            return Err(ApiError::bad_request(
                format!(
                    "organization \"{id}\" still has {teams} team(s) and {org_keys} key(s); delete or move them first (nothing was deleted)"
                ),
                Some("organization_ids"),
            ));
        }
        deleted.push(org_object(&org));
    }
    store.delete_orgs(&ids).await?;
    keys.invalidate(None).await;
    Ok(Json(Value::Array(deleted)))
}
