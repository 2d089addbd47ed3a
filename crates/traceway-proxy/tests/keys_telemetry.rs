//! End-to-end: the caller's identity on the spans of virtual-key requests (TELEMETRY.md §4) —
//! on success, on an upstream failure, on a 403/429 refusal, and its absence on a 401 — over
//! real OTLP to the testkit receiver, on SQLite and PostgreSQL. Every captured span, error body
//! and log line is searched for the master key, the provider key and every virtual key.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod keys_common;

use keys_common::{Api, Db, MASTER, config, database, hash};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use traceway_proxy::app::{App, RunningProxy};
use traceway_proxy::config::ProxyConfig;
use traceway_testkit::otlp::{OtlpReceiver, ReceivedSpan, Status};
use traceway_testkit::span_tree::SpanTree;

on_both_databases!(
    identity_is_on_successes_failures_and_refusals_but_not_on_401s,
    in_nested_mode_identity_moves_to_litellm_request,
    a_teams_turn_off_message_logging_covers_its_keys_and_request_metadata_wins,
    a_spent_budget_fails_the_request_span_as_budget_exceeded,
);

const PROVIDER_KEY: &str = "sk-provider-secret-keys";
const IDENTITY: [&str; 6] = [
    "metadata.user_api_key_hash",
    "metadata.user_api_key_alias",
    "metadata.user_api_key_user_id",
    "metadata.user_api_key_team_id",
    "metadata.user_api_key_team_alias",
    "metadata.user_api_key_org_id",
];

/// Every log line of this test binary, at debug level.
fn logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        struct W(Arc<Mutex<Vec<u8>>>);
        impl Write for W {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let sink = buf.clone();
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("debug"))
            .with_writer(move || W(sink.clone()))
            .with_ansi(false)
            .try_init();
        buf
    })
    .clone()
}

fn models() -> String {
    "  - model_name: m\n    litellm_params:\n      model: mock/m\n  - model_name: m2\n    litellm_params:\n      model: mock/m2\n  - model_name: broken\n    litellm_params:\n      model: mock/broken\n      mock_response: \"error:500:the mock is down\"\n      api_key: PROVIDER\n  - model_name: priced\n    litellm_params:\n      model: mock/p\n      input_cost_per_token: 0.001\n"
        .replace("PROVIDER", PROVIDER_KEY)
}

async fn traced(db: &str, rx: &OtlpReceiver, nested: bool) -> RunningProxy {
    logs();
    let endpoint = rx.http_endpoint();
    let mut vars: HashMap<String, String> = [
        ("OTEL_EXPORTER", "otlp_http"),
        ("OTEL_ENDPOINT", endpoint.as_str()),
        ("OTEL_BSP_SCHEDULE_DELAY", "50"),
        ("DATABASE_URL", db),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    if nested {
        vars.insert("USE_OTEL_LITELLM_REQUEST_SPAN".into(), "true".into());
    }
    traceway::client::install_crypto_provider();
    let cfg = config(&models(), "litellm_settings:\n  callbacks: [\"otel\"]\n");
    let cfg = ProxyConfig::parse(&cfg, "test.yaml", Arc::new(vars)).unwrap();
    App::build(cfg, false)
        .unwrap()
        .spawn("127.0.0.1:0")
        .await
        .unwrap()
}

/// Stops the proxy, checks no secret reached a span or a log line, and returns the roots in
/// the order the requests were made.
async fn flushed(p: RunningProxy, rx: &OtlpReceiver, secrets: &[&str]) -> SpanTree {
    p.shutdown().await;
    assert!(
        rx.duplicate_key_errors().is_empty(),
        "duplicate attribute keys: {:?}",
        rx.duplicate_key_errors()
    );
    let spans = rx.spans();
    let everything = format!("{spans:?} {:?}", rx.exports());
    let log = String::from_utf8_lossy(&logs().lock().unwrap()).into_owned();
    for s in secrets {
        assert!(!everything.contains(s), "a secret reached the spans");
        assert!(!log.contains(s), "a secret reached the log");
    }
    SpanTree::build(&spans).unwrap()
}

fn roots(tree: &SpanTree) -> Vec<&ReceivedSpan> {
    let mut r = tree.roots();
    r.sort_by_key(|s| s.start_unix_nanos);
    r
}

fn child_names<'a>(tree: &'a SpanTree, span: &ReceivedSpan) -> Vec<&'a str> {
    tree.children_of(span)
        .iter()
        .map(|c| c.name.as_str())
        .collect()
}

fn assert_identity(span: &ReceivedSpan, key: &str, what: &str) {
    let expected = [
        hash(key),
        "checkout".to_owned(),
        "alice".to_owned(),
        "team-1".to_owned(),
        "Payments".to_owned(),
        "org-1".to_owned(),
    ];
    for (attr, want) in IDENTITY.iter().zip(&expected) {
        assert_eq!(
            span.attr_str(attr),
            Some(want.as_str()),
            "{what}: {attr} on {}",
            span.name
        );
    }
}

async fn a_teams_turn_off_message_logging_covers_its_keys_and_request_metadata_wins(db: Db) {
    keys_common::clear_of_minute_boundary().await;
    let db = database(db).await;
    let rx = OtlpReceiver::start().await;
    let p = traced(&db.url, &rx, false).await;
    let admin = Api::new(&p.url(), MASTER);
    let (s, b) = admin
        .post(
            "/team/new",
            json!({"team_id": "team-quiet", "team_alias": "Quiet", "metadata": {"turn_off_message_logging": true}}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let key = admin.key(json!({"team_id": "team-quiet"})).await;
    let api = admin.as_key(&key);
    assert_eq!(chat(&api, "m", json!({})).await.0, 200);
    // Rule 1 (the request's own metadata) comes before the team's setting.
    assert_eq!(
        chat(&api, "m", json!({"metadata": {"mask_input": false}}))
            .await
            .0,
        200
    );
    let tree = flushed(p, &rx, &[&key, MASTER, PROVIDER_KEY]).await;
    let r = roots(&tree);
    let [team_rule, metadata_rule] = &r[r.len() - 2..] else {
        unreachable!()
    };
    assert_eq!(
        team_rule.attr_str("gen_ai.prompt.0.content"),
        Some("redacted-by-traceway")
    );
    assert_eq!(
        team_rule.attr_str("gen_ai.completion.0.content"),
        Some("redacted-by-traceway")
    );
    assert_eq!(
        team_rule.attr_str("metadata.user_api_key_team_id"),
        Some("team-quiet")
    );
    assert_eq!(
        metadata_rule.attr_str("gen_ai.prompt.0.content"),
        Some("Hello")
    );
}

/// An organisation, a team in it, and a key of user `alice` in the team, limited to `m` and
/// two requests a minute.
async fn setup(p: &RunningProxy) -> (Api, String) {
    let admin = Api::new(&p.url(), MASTER);
    let (s, b) = admin
        .post(
            "/organization/new",
            json!({"organization_id": "org-1", "organization_alias": "Acme"}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = admin
        .post(
            "/team/new",
            json!({"team_id": "team-1", "team_alias": "Payments", "organization_id": "org-1"}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let key = admin
        .key(
            json!({"key_alias": "checkout", "user_id": "alice", "team_id": "team-1",
                     "models": ["m", "broken"], "rpm_limit": 2}),
        )
        .await;
    (admin, key)
}

async fn chat(api: &Api, model: &str, extra: Value) -> (u16, Value) {
    let mut body = json!({"model": model, "user": "end-user-9", "messages": [{"role": "user", "content": "Hello"}]});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    api.post("/v1/chat/completions", body).await
}

async fn identity_is_on_successes_failures_and_refusals_but_not_on_401s(db: Db) {
    keys_common::clear_of_minute_boundary().await;
    let db = database(db).await;
    let rx = OtlpReceiver::start().await;
    let p = traced(&db.url, &rx, false).await;
    let (admin, key) = setup(&p).await;
    let api = admin.as_key(&key);
    let bad = "sk-wrong-and-secret-99";
    let mut bodies = Vec::new();
    // 1 success (the body's metadata cannot forge an identity key), 2 upstream failure,
    // 3 model refusal, 4 rate-limit refusal, 5 unknown key, 6 the master key.
    let forged = json!({"metadata": {"user_api_key_hash": "forged", "tag": "t1"}});
    bodies.push(chat(&api, "m", forged).await);
    bodies.push(chat(&api, "broken", json!({})).await);
    bodies.push(chat(&api, "m2", json!({})).await);
    bodies.push(chat(&api, "m", json!({})).await);
    bodies.push(chat(&admin.as_key(bad), "m", json!({})).await);
    bodies.push(chat(&admin, "m", json!({})).await);
    let statuses: Vec<u16> = bodies.iter().map(|b| b.0).collect();
    assert_eq!(statuses, [200, 500, 403, 429, 401, 200]);
    for (_, b) in &bodies {
        let text = b.to_string();
        for s in [key.as_str(), MASTER, PROVIDER_KEY, bad] {
            assert!(!text.contains(s), "a secret reached a response body");
        }
    }

    let tree = flushed(p, &rx, &[&key, MASTER, PROVIDER_KEY, bad]).await;
    let r = roots(&tree);
    // Management calls made spans of their own only if traced; LLM calls are the last six.
    let r = &r[r.len() - 6..];
    let [ok, upstream, denied, limited, unauth, master] = r else {
        unreachable!()
    };
    assert_identity(ok, &key, "success");
    assert_eq!(
        ok.attr_str("metadata.user_api_key_end_user_id"),
        Some("end-user-9")
    );
    assert_eq!(ok.attr_str("metadata.tag"), Some("t1"));
    assert_eq!(ok.status, Status::Unset);

    assert_identity(upstream, &key, "upstream failure");
    assert_eq!(upstream.attr_str("error.type"), Some("upstream_error"));
    assert_eq!(
        child_names(&tree, upstream),
        ["raw_gen_ai_request", "Failed Proxy Server Request"]
    );

    for (span, class) in [(denied, "permission_denied"), (limited, "rate_limited")] {
        assert_identity(span, &key, class);
        assert_eq!(span.attr_str("error.type"), Some(class));
        assert_eq!(
            span.attr_str("metadata.user_api_key_end_user_id"),
            Some("end-user-9")
        );
        assert!(matches!(span.status, Status::Error { .. }));
        assert_eq!(
            child_names(&tree, span),
            ["Failed Proxy Server Request"],
            "{class}: refused before any upstream attempt"
        );
    }
    assert_eq!(denied.attr_str("litellm.model_group"), Some("m2"));
    assert_eq!(denied.attr_i64("http.response.status_code"), Some(403));
    assert_eq!(limited.attr_i64("http.response.status_code"), Some(429));

    assert_eq!(unauth.attr_str("error.type"), Some("auth_error"));
    for attr in IDENTITY
        .iter()
        .chain(["metadata.user_api_key_end_user_id"].iter())
    {
        assert!(!unauth.has_attr(attr), "401 span has {attr}");
    }

    assert_eq!(
        master.attr_str("metadata.user_api_key_hash"),
        Some(hash(MASTER).as_str())
    );
    assert_eq!(
        master.attr_str("metadata.user_api_key_user_id"),
        Some("default_user_id")
    );
    assert!(!master.has_attr("metadata.user_api_key_team_id"));
}

async fn in_nested_mode_identity_moves_to_litellm_request(db: Db) {
    keys_common::clear_of_minute_boundary().await;
    let db = database(db).await;
    let rx = OtlpReceiver::start().await;
    let p = traced(&db.url, &rx, true).await;
    let (admin, key) = setup(&p).await;
    let api = admin.as_key(&key);
    let quiet = admin
        .key(json!({"metadata": {"turn_off_message_logging": true}}))
        .await;
    assert_eq!(chat(&api, "m", json!({})).await.0, 200);
    assert_eq!(chat(&api, "m2", json!({})).await.0, 403);
    assert_eq!(chat(&admin.as_key(&quiet), "m", json!({})).await.0, 200);

    let tree = flushed(p, &rx, &[&key, &quiet, MASTER, PROVIDER_KEY]).await;
    let r = roots(&tree);
    let [ok, denied, redacted] = &r[r.len() - 3..] else {
        unreachable!()
    };
    let llm = tree.children_of(ok)[0];
    assert_eq!(llm.name, "litellm_request");
    assert_identity(llm, &key, "nested success");
    assert_eq!(
        llm.attr_str("metadata.user_api_key_end_user_id"),
        Some("end-user-9")
    );
    for attr in IDENTITY {
        assert!(!ok.has_attr(attr), "the SERVER span does not repeat {attr}");
    }
    assert_identity(
        denied,
        &key,
        "nested refusal: no litellm_request, the SERVER span",
    );

    // The key's turn_off_message_logging keeps its content out of the spans.
    let llm = tree.children_of(redacted)[0];
    assert_eq!(
        llm.attr_str("gen_ai.prompt.0.content"),
        Some("redacted-by-traceway")
    );
    assert_eq!(
        llm.attr_str("metadata.user_api_key_hash"),
        Some(hash(&quiet).as_str())
    );
}

/// A call refused for a spent budget is a failed SERVER span like any refusal: `error.type`
/// `budget_exceeded`, status 400, the caller's identity, a `Failed Proxy Server Request` child
/// and no upstream attempt.
async fn a_spent_budget_fails_the_request_span_as_budget_exceeded(db: Db) {
    let db = database(db).await;
    let rx = OtlpReceiver::start().await;
    let p = traced(&db.url, &rx, false).await;
    let admin = Api::new(&p.url(), MASTER);
    let key = admin
        .key(json!({"key_alias": "thrifty", "max_budget": 0.000001}))
        .await;
    let api = admin.as_key(&key);
    assert_eq!(chat(&api, "priced", json!({})).await.0, 200);
    let (status, body) = chat(&api, "priced", json!({})).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["type"], "budget_exceeded");

    let tree = flushed(p, &rx, &[&key, MASTER]).await;
    let r = roots(&tree);
    let (answered, refused) = (r[r.len() - 2], r[r.len() - 1]);
    assert_eq!(answered.status, Status::Unset);
    assert_eq!(
        child_names(&tree, answered),
        ["raw_gen_ai_request"],
        "the first call went upstream"
    );
    assert_eq!(
        refused.attr_str("metadata.user_api_key_hash"),
        Some(hash(&key).as_str())
    );
    assert_eq!(
        refused.attr_str("metadata.user_api_key_alias"),
        Some("thrifty")
    );
    assert_eq!(refused.attr_str("error.type"), Some("budget_exceeded"));
    assert_eq!(refused.attr_i64("http.response.status_code"), Some(400));
    assert_eq!(refused.attr_str("litellm.model_group"), Some("priced"));
    assert!(matches!(refused.status, Status::Error { .. }));
    assert_eq!(
        child_names(&tree, refused),
        ["Failed Proxy Server Request"],
        "refused before any upstream attempt"
    );
}
