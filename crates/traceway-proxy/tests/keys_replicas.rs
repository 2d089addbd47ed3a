//! End-to-end: two proxy instances behind one PostgreSQL and one Redis, as replicas behind a
//! load balancer — a rate limit and a key deletion hold across both. Without Redis, limits are
//! per instance and a deletion reaches the other instance when its key cache expires.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod keys_common;

use keys_common::{
    Api, Db, MASTER, MOCK_MODELS, clear_of_minute_boundary, config, database, error, proxy,
    redis_url,
};
use serde_json::json;
use std::time::{Duration, Instant};

/// Polls `f` until it answers `status`, for up to `within`.
async fn eventually(api: &Api, model: &str, status: u16, within: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let got = api.chat(model).await.0;
        if got == status {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "still {got}, not {status}, after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limit_and_a_deletion_hold_across_replicas_sharing_postgres_and_redis() {
    clear_of_minute_boundary().await;
    let db = database(Db::Postgres).await;
    let redis = redis_url().await;
    // A cache TTL far longer than the test: only Redis can make the deletion reach replica B.
    let cfg = config(MOCK_MODELS, "  user_api_key_cache_ttl: 600\n");
    let vars = [
        ("DATABASE_URL", db.url.as_str()),
        ("REDIS_URL", redis.as_str()),
    ];
    let a = proxy(&cfg, &vars).await;
    let b = proxy(&cfg, &vars).await;
    let admin = Api::new(&a.url(), MASTER);

    // rpm_limit 3, spread over both replicas: the fourth call is refused on either.
    let key = admin.key(json!({"rpm_limit": 3})).await;
    let (on_a, on_b) = (Api::new(&a.url(), &key), Api::new(&b.url(), &key));
    assert_eq!(on_a.chat("m").await.0, 200);
    assert_eq!(on_b.chat("m").await.0, 200);
    assert_eq!(on_a.chat("m").await.0, 200);
    error(&on_b.chat("m").await, 429);
    error(&on_a.chat("m").await, 429);

    // A key replica B has cached is deleted through replica A: B refuses it promptly.
    let doomed = admin.key(json!({})).await;
    let doomed_on_b = Api::new(&b.url(), &doomed);
    assert_eq!(doomed_on_b.chat("m").await.0, 200);
    let (s, _) = admin.post("/key/delete", json!({"keys": [doomed]})).await;
    assert_eq!(s, 200);
    eventually(&doomed_on_b, "m", 401, Duration::from_secs(3)).await;

    // So does a change of its models, and of its team's.
    let narrowed = admin.key(json!({"models": ["m"]})).await;
    let narrowed_on_b = Api::new(&b.url(), &narrowed);
    assert_eq!(narrowed_on_b.chat("m").await.0, 200);
    admin
        .post("/key/update", json!({"key": narrowed, "models": ["m2"]}))
        .await;
    eventually(&narrowed_on_b, "m", 403, Duration::from_secs(3)).await;
    let (_, t) = admin.post("/team/new", json!({"models": ["m"]})).await;
    let team = t["team_id"].as_str().unwrap().to_owned();
    let member = Api::new(&b.url(), &admin.key(json!({"team_id": team})).await);
    assert_eq!(member.chat("m").await.0, 200);
    admin
        .post("/team/update", json!({"team_id": team, "models": ["m2"]}))
        .await;
    eventually(&member, "m", 403, Duration::from_secs(3)).await;

    // Both replicas read the same store: a key made on B is known to A.
    let from_b = Api::new(&b.url(), MASTER).key(json!({})).await;
    assert_eq!(Api::new(&a.url(), &from_b).chat("m").await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_limits_are_per_instance_and_deletions_wait_for_the_cache_ttl() {
    clear_of_minute_boundary().await;
    let db = database(Db::Postgres).await;
    let cfg = config(MOCK_MODELS, "  user_api_key_cache_ttl: 1\n");
    let vars = [("DATABASE_URL", db.url.as_str())];
    let a = proxy(&cfg, &vars).await;
    let b = proxy(&cfg, &vars).await;
    let admin = Api::new(&a.url(), MASTER);
    let key = admin.key(json!({"rpm_limit": 1})).await;
    let (on_a, on_b) = (Api::new(&a.url(), &key), Api::new(&b.url(), &key));
    assert_eq!(on_a.chat("m").await.0, 200);
    assert_eq!(on_b.chat("m").await.0, 200, "each instance counts alone");
    error(&on_a.chat("m").await, 429);

    let doomed = admin.key(json!({})).await;
    let doomed_on_b = Api::new(&b.url(), &doomed);
    assert_eq!(doomed_on_b.chat("m").await.0, 200);
    admin.post("/key/delete", json!({"keys": [doomed]})).await;
    let took = eventually(&doomed_on_b, "m", 401, Duration::from_secs(4)).await;
    assert!(
        took <= Duration::from_millis(1500),
        "within the 1 s TTL: {took:?}"
    );
}

/// Redis over TLS (`rediss://`, or `REDIS_HOST` with `REDIS_SSL=true`), verified with
/// `REDIS_SSL_CA_CERTS`: two replicas still share a limit and a deletion through it; without
/// the CA, a replica does not start and says Redis is why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_limits_through_a_tls_redis() {
    use traceway_testkit::tls_front::{FrontOptions, TlsFront, material};
    clear_of_minute_boundary().await;
    let db = database(Db::Postgres).await;
    let redis = redis_url().await;
    let backend = url::Url::parse(&redis).unwrap();
    let backend = std::net::SocketAddr::new(
        backend.host_str().unwrap().parse().unwrap(),
        backend.port().unwrap_or(6379),
    );
    let front = TlsFront::start(backend, FrontOptions::default()).await;
    let ca = material("ca.pem").to_str().unwrap().to_owned();
    let cfg = config(MOCK_MODELS, "  user_api_key_cache_ttl: 600\n");
    let tls_url = format!("rediss://127.0.0.1:{}", front.port());
    let a = proxy(
        &cfg,
        &[
            ("DATABASE_URL", db.url.as_str()),
            ("REDIS_URL", tls_url.as_str()),
            ("REDIS_SSL_CA_CERTS", ca.as_str()),
        ],
    )
    .await;
    let port = front.port().to_string();
    let b = proxy(
        &cfg,
        &[
            ("DATABASE_URL", db.url.as_str()),
            ("REDIS_HOST", "127.0.0.1"),
            ("REDIS_PORT", port.as_str()),
            ("REDIS_SSL", "true"),
            ("REDIS_SSL_CA_CERTS", ca.as_str()),
        ],
    )
    .await;
    assert!(
        front.accepted() >= 2,
        "both replicas reached Redis through TLS"
    );

    let admin = Api::new(&a.url(), MASTER);
    let key = admin.key(json!({"rpm_limit": 2})).await;
    let (on_a, on_b) = (Api::new(&a.url(), &key), Api::new(&b.url(), &key));
    assert_eq!(on_a.chat("m").await.0, 200);
    assert_eq!(on_b.chat("m").await.0, 200);
    error(&on_a.chat("m").await, 429);
    error(&on_b.chat("m").await, 429);
    let doomed = admin.key(json!({})).await;
    let doomed_on_b = Api::new(&b.url(), &doomed);
    assert_eq!(doomed_on_b.chat("m").await.0, 200);
    admin.post("/key/delete", json!({"keys": [doomed]})).await;
    eventually(&doomed_on_b, "m", 401, Duration::from_secs(3)).await;

    // The system's roots do not know the test CA: start-up stops on Redis.
    traceway::client::install_crypto_provider();
    let vars: std::collections::HashMap<String, String> = [
        ("DATABASE_URL", db.url.as_str()),
        ("REDIS_URL", tls_url.as_str()),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let parsed =
        traceway_proxy::config::ProxyConfig::parse(&cfg, "test.yaml", std::sync::Arc::new(vars))
            .unwrap();
    let refused = traceway_proxy::app::App::build(parsed, false)
        .unwrap()
        .spawn("127.0.0.1:0")
        .await;
    let message = match refused {
        Ok(_) => panic!("a replica started on a Redis it cannot verify"),
        Err(e) => e.to_string(),
    };
    assert!(message.contains("Redis"), "{message}");
    assert!(front.refused() >= 1);
}
