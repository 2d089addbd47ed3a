//! End-to-end: what a virtual key may do on the LLM routes — expiry, deletion, model lists
//! (exact, wildcard, `all-proxy-models`, team lists), rpm/tpm limits — on SQLite and PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod keys_common;

use keys_common::{
    Api, Db, MASTER, MOCK_MODELS, clear_of_minute_boundary, config, database, error, mock_proxy,
    proxy,
};
use serde_json::{Value, json};
use std::time::Duration;
use traceway_testkit::openai_upstream::OpenAiUpstream;

on_both_databases!(
    expired_deleted_blocked_and_unknown_keys_are_401,
    keys_arrive_in_every_header_litellm_reads,
    a_model_outside_the_keys_list_is_403_before_unknown_model,
    team_model_lists_apply_to_their_keys,
    wildcards_and_all_proxy_models,
    models_lists_only_what_the_key_may_call,
    rpm_limits_answer_429_with_retry_after,
    tpm_limits_count_tokens_of_full_and_streamed_answers,
    streams_stay_lean_under_a_key,
    a_burst_of_cache_misses_reads_the_key_once,
    key_and_team_block_and_unblock_take_effect_at_once,
    a_regenerated_key_replaces_the_old_one_with_its_settings,
    budgets_stop_keys_teams_users_and_organisations_that_spent_them,
    spend_is_stored_for_keys_teams_users_and_organisations,
    budgets_reset_every_budget_duration,
);

/// A deployment `priced` with per-token prices, beside the two free mock groups.
const PRICED: &str = "  - model_name: priced\n    litellm_params:\n      model: mock/p\n      input_cost_per_token: 0.001\n      output_cost_per_token: 0.002\n";

/// A proxy serving `priced` and the free mock groups on `db`, writing spend every 0.1 s.
async fn priced_proxy(db: &keys_common::TestDb) -> traceway_proxy::app::RunningProxy {
    proxy(
        &config(
            &format!("{PRICED}{MOCK_MODELS}"),
            "  proxy_batch_write_at: 0.1\n",
        ),
        &[("DATABASE_URL", &db.url)],
    )
    .await
}

/// What a chat answer cost at `priced`'s prices.
fn cost_of(answer: &Value) -> f64 {
    let usage = &answer["usage"];
    usage["prompt_tokens"].as_f64().unwrap() * 0.001
        + usage["completion_tokens"].as_f64().unwrap() * 0.002
}

/// LiteLLM's `max_budget` on a key, its team, its user and its organisation: the call that
/// reaches the budget is answered, the next is a 400 `budget_exceeded` naming whose budget it
/// was; free deployments cost nothing, so a spent budget does not stop what is free.
async fn budgets_stop_keys_teams_users_and_organisations_that_spent_them(db: Db) {
    let db = database(db).await;
    let p = priced_proxy(&db).await;
    let admin = Api::new(&p.url(), MASTER);
    let tiny = 0.000_001;

    let key = admin.as_key(&admin.key(json!({"max_budget": tiny})).await);
    let (s, first) = key.chat("priced").await;
    assert_eq!(s, 200, "{first}");
    assert!(cost_of(&first) > tiny, "{first}");
    let e = error(&key.chat("priced").await, 400).clone();
    assert_eq!(e["type"], "budget_exceeded");
    let message = e["message"].as_str().unwrap();
    assert!(
        message.starts_with("Budget has been exceeded! Current cost: ")
            && message.ends_with(&format!("Max budget: {tiny}")),
        "{message}"
    );
    for _ in 0..3 {
        assert_eq!(key.chat("m").await.0, 400, "the budget stops every call");
    }
    let free = admin.as_key(&admin.key(json!({"max_budget": tiny})).await);
    for _ in 0..3 {
        assert_eq!(free.chat("m").await.0, 200, "free calls spend nothing");
    }

    let (s, team) = admin
        .post(
            "/team/new",
            json!({"team_alias": "thrifty", "max_budget": tiny}),
        )
        .await;
    assert_eq!(s, 200, "{team}");
    let team_id = team["team_id"].as_str().unwrap().to_owned();
    let (s, user) = admin
        .post(
            "/user/new",
            json!({"user_id": "spender", "max_budget": tiny}),
        )
        .await;
    assert_eq!(s, 200, "{user}");
    let (s, org) = admin
        .post(
            "/organization/new",
            json!({"organization_alias": "frugal", "max_budget": tiny}),
        )
        .await;
    assert_eq!(s, 200, "{org}");
    let org_id = org["organization_id"].as_str().unwrap().to_owned();
    for (body, whose) in [
        (json!({"team_id": team_id}), format!("Team={team_id} ")),
        (json!({"user_id": "spender"}), "User=spender ".to_owned()),
        (
            json!({"organization_id": org_id}),
            format!("Organization={org_id} "),
        ),
    ] {
        // Two keys share the budget: what one spent stops the other.
        let one = admin.as_key(&admin.key(body.clone()).await);
        let other = admin.as_key(&admin.key(body).await);
        assert_eq!(one.chat("priced").await.0, 200, "{whose}");
        let e = error(&other.chat("priced").await, 400).clone();
        assert_eq!(e["type"], "budget_exceeded");
        assert!(
            e["message"]
                .as_str()
                .unwrap()
                .starts_with(&format!("Budget has been exceeded! {whose}Current cost: ")),
            "{e}"
        );
    }
    p.shutdown().await;
}

/// Each answered call's cost, full or streamed, is added to the stored spend of its key, team,
/// user and organisation (every `proxy_batch_write_at`, and at shutdown), where `/key/info`,
/// `/team/info`, `/user/info` and `/organization/info` show it.
async fn spend_is_stored_for_keys_teams_users_and_organisations(db: Db) {
    let db = database(db).await;
    let p = priced_proxy(&db).await;
    let admin = Api::new(&p.url(), MASTER);
    let (_, team) = admin.post("/team/new", json!({"team_alias": "t"})).await;
    let team_id = team["team_id"].as_str().unwrap().to_owned();
    let (_, org) = admin
        .post("/organization/new", json!({"organization_alias": "o"}))
        .await;
    let org_id = org["organization_id"].as_str().unwrap().to_owned();
    admin.post("/user/new", json!({"user_id": "payer"})).await;
    let key = admin
        .key(json!({"team_id": team_id, "user_id": "payer", "organization_id": org_id}))
        .await;
    let caller = admin.as_key(&key);
    let mut expected = 0.0;
    for _ in 0..2 {
        let (s, answer) = caller.chat("priced").await;
        assert_eq!(s, 200);
        expected += cost_of(&answer);
    }
    // A stream's cost comes from its usage chunk, which this client did not ask for.
    let streamed = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", p.url()))
        .bearer_auth(&key)
        .json(&json!({"model": "priced", "stream": true, "messages": [{"role": "user", "content": "Hello there"}]}))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!streamed.contains("\"usage\":{"), "{streamed}");
    let (s, answer) = caller.chat("m").await;
    assert_eq!(s, 200, "{answer}");

    let spent = |v: &Value| v.as_f64().unwrap_or(-1.0);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    // The stream's cost lands when it ends; the writer runs every 0.1 s.
    let key_spend = loop {
        tokio::time::sleep(Duration::from_millis(150)).await;
        let (_, info) = admin.get(&format!("/key/info?key={key}")).await;
        let now = spent(&info["info"]["spend"]);
        if now > expected + 1e-9 || std::time::Instant::now() > deadline {
            break now;
        }
    };
    assert!(key_spend > expected + 1e-9, "{key_spend} vs {expected}");
    let (_, t) = admin.get(&format!("/team/info?team_id={team_id}")).await;
    let (_, u) = admin.get("/user/info?user_id=payer").await;
    let (_, o) = admin
        .get(&format!("/organization/info?organization_id={org_id}"))
        .await;
    for (whose, value) in [
        ("team", spent(&t["team_info"]["spend"])),
        ("user", spent(&u["user_info"]["spend"])),
        ("organization", spent(&o["spend"])),
    ] {
        assert!(
            (value - key_spend).abs() < 1e-9,
            "{whose}: {value} vs {key_spend}"
        );
    }

    // Updates leave the stored spend alone unless they set it.
    let (s, _) = admin
        .post(
            "/key/update",
            json!({"key": key, "models": ["priced", "m"]}),
        )
        .await;
    assert_eq!(s, 200);
    let (_, info) = admin.get(&format!("/key/info?key={key}")).await;
    assert!(
        (spent(&info["info"]["spend"]) - key_spend).abs() < 1e-9,
        "{info}"
    );
    let (s, v) = admin
        .post("/key/update", json!({"key": key, "spend": 0.0}))
        .await;
    assert_eq!(s, 200, "{v}");
    admin
        .post("/user/update", json!({"user_id": "payer", "spend": 0.5}))
        .await;
    let (_, info) = admin.get(&format!("/key/info?key={key}")).await;
    assert_eq!(spent(&info["info"]["spend"]), 0.0, "{info}");
    let (_, u) = admin.get("/user/info?user_id=payer").await;
    assert_eq!(spent(&u["user_info"]["spend"]), 0.5, "{u}");
    p.shutdown().await;
}

/// LiteLLM's `/key/regenerate` and `/key/{key}/regenerate`: the new key works with the old one's
/// settings, the old one is refused at once (even though it was cached), admin only.
async fn a_regenerated_key_replaces_the_old_one_with_its_settings(db: Db) {
    let db = database(db).await;
    let p = mock_proxy(&db).await;
    let admin = Api::new(&p.url(), MASTER);
    let old = admin
        .key(json!({"key_alias": "rotating", "models": ["m"]}))
        .await;
    assert_eq!(admin.as_key(&old).chat("m").await.0, 200, "cached now");
    let (status, v) = admin.post("/key/regenerate", json!({"key": old})).await;
    assert_eq!(status, 200, "{v}");
    let new = v["key"].as_str().unwrap().to_owned();
    assert!(new.starts_with("sk-") && new != old);
    assert_eq!(v["key_alias"], "rotating");
    assert_eq!(v["models"], json!(["m"]));
    assert_eq!(admin.as_key(&new).chat("m").await.0, 200);
    error(&admin.as_key(&new).chat("m2").await, 403);
    error(&admin.as_key(&old).chat("m").await, 401);

    // In the path, to a key of the caller's choosing.
    let (status, v) = admin
        .post(
            &format!("/key/{new}/regenerate"),
            json!({"new_key": "sk-rotated-by-hand-0001"}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["key"], "sk-rotated-by-hand-0001");
    assert_eq!(
        admin.as_key("sk-rotated-by-hand-0001").chat("m").await.0,
        200
    );
    error(&admin.as_key(&new).chat("m").await, 401);

    let other = admin.key(json!({})).await;
    error(
        &admin
            .as_key(&other)
            .post("/key/regenerate", json!({"key": other}))
            .await,
        403,
    );
    error(
        &admin
            .post("/key/regenerate", json!({"key": "sk-never-issued"}))
            .await,
        404,
    );
    error(
        &admin
            .post("/key/regenerate", json!({"key": other, "new_key": "plain"}))
            .await,
        400,
    );
    // Onto a key that exists already: refused, both keys unchanged.
    let (status, _) = admin
        .post(
            "/key/regenerate",
            json!({"key": other, "new_key": "sk-rotated-by-hand-0001"}),
        )
        .await;
    assert!((400..500).contains(&status), "{status}");
    assert_eq!(admin.as_key(&other).chat("m").await.0, 200);
    assert_eq!(
        admin.as_key("sk-rotated-by-hand-0001").chat("m").await.0,
        200
    );
}

/// LiteLLM's `/key/block`, `/key/unblock` (by the key or its hash), `/team/block` and
/// `/team/unblock`: admin-only, answered with the record, effective on the next request.
async fn key_and_team_block_and_unblock_take_effect_at_once(db: Db) {
    let db = database(db).await;
    let p = mock_proxy(&db).await;
    let admin = Api::new(&p.url(), MASTER);
    let key = admin.key(json!({})).await;
    let user = admin.as_key(&key);
    assert_eq!(user.chat("m").await.0, 200, "cached now");
    let (status, record) = admin.post("/key/block", json!({"key": key})).await;
    assert_eq!(status, 200, "{record}");
    assert_eq!(record["blocked"], true);
    let token = record["token"].as_str().unwrap().to_owned();
    assert!(
        !record.to_string().contains(&key),
        "the key is never echoed: {record}"
    );
    let refused = user.chat("m").await;
    let e = error(&refused, 401);
    assert!(e["message"].as_str().unwrap().contains("blocked"), "{e}");
    // By its hash, as LiteLLM accepts.
    let (status, record) = admin.post("/key/unblock", json!({"key": token})).await;
    assert_eq!(status, 200, "{record}");
    assert_eq!(record["blocked"], false);
    assert_eq!(user.chat("m").await.0, 200);

    // A key may not block keys; an unknown key is a 404; no key is a 400.
    error(&user.post("/key/block", json!({"key": key})).await, 403);
    error(
        &admin
            .post("/key/block", json!({"key": "sk-never-issued"}))
            .await,
        404,
    );
    error(&admin.post("/key/block", json!({})).await, 400);

    let (_, team) = admin
        .post("/team/new", json!({"team_alias": "blockable"}))
        .await;
    let team_id = team["team_id"].as_str().unwrap().to_owned();
    let member = admin.key(json!({"team_id": team_id})).await;
    assert_eq!(admin.as_key(&member).chat("m").await.0, 200);
    let (status, t) = admin.post("/team/block", json!({"team_id": team_id})).await;
    assert_eq!(status, 200, "{t}");
    assert_eq!(t["blocked"], true);
    error(&admin.as_key(&member).chat("m").await, 401);
    let (status, t) = admin
        .post("/team/unblock", json!({"team_id": team_id}))
        .await;
    assert_eq!(status, 200, "{t}");
    assert_eq!(t["blocked"], false);
    assert_eq!(admin.as_key(&member).chat("m").await.0, 200);
    error(
        &admin
            .post("/team/block", json!({"team_id": "no-such-team"}))
            .await,
        404,
    );
}

async fn a_burst_of_cache_misses_reads_the_key_once(db: Db) {
    let db = database(db).await;
    let p = proxy(
        &config(MOCK_MODELS, "  user_api_key_cache_ttl: 0.3\n"),
        &[("DATABASE_URL", &db.url)],
    )
    .await;
    let keys = p.app.state.keys.clone().unwrap();
    let admin = Api::new(&p.url(), MASTER);
    let key = admin.key(json!({})).await;
    let user = admin.as_key(&key);
    for round in 0..2 {
        // Round 0: never seen; round 1: its cache entry has expired (a hot key's steady state).
        tokio::time::sleep(Duration::from_millis(400)).await;
        let before = keys.store_reads();
        let burst: Vec<_> = (0..24)
            .map(|_| {
                let user = user.clone();
                tokio::spawn(async move { user.chat("m").await.0 })
            })
            .collect();
        for call in burst {
            assert_eq!(call.await.unwrap(), 200);
        }
        assert_eq!(
            keys.store_reads() - before,
            1,
            "round {round}: 24 concurrent misses of one key, one read of the store"
        );
    }
    // Unknown keys are not cached: each one is read (and refused) again.
    let stranger = admin.as_key("sk-never-issued");
    let before = keys.store_reads();
    for _ in 0..3 {
        error(&stranger.chat("m").await, 401);
    }
    assert_eq!(keys.store_reads() - before, 3);
}

async fn expired_deleted_blocked_and_unknown_keys_are_401(db: Db) {
    let db = database(db).await;
    let p = mock_proxy(&db).await;
    let admin = Api::new(&p.url(), MASTER);
    let short = admin.key(json!({"duration": "1s"})).await;
    assert_eq!(admin.as_key(&short).chat("m").await.0, 200);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let e = error(&admin.as_key(&short).chat("m").await, 401).clone();
    assert!(e["message"].as_str().unwrap().contains("expired"), "{e}");
    assert_eq!(e["type"], "authentication_error");

    let gone = admin.key(json!({})).await;
    assert_eq!(admin.as_key(&gone).chat("m").await.0, 200, "cached now");
    admin.post("/key/delete", json!({"keys": [gone]})).await;
    error(&admin.as_key(&gone).chat("m").await, 401);

    let blocked = admin.key(json!({"blocked": true})).await;
    error(&admin.as_key(&blocked).chat("m").await, 401);
    let unblock = admin.key(json!({})).await;
    admin
        .post("/key/update", json!({"key": unblock, "blocked": true}))
        .await;
    error(&admin.as_key(&unblock).chat("m").await, 401);

    for bad in ["sk-never-issued", "not-even-sk", &format!("{short}x")] {
        let a = admin.as_key(bad).chat("m").await;
        assert!(!error(&a, 401).to_string().contains(bad), "{bad} repeated");
    }
    error(&Api::new(&p.url(), "").chat("m").await, 401);
    assert_eq!(
        admin.chat("m").await.0,
        200,
        "the master key calls everything"
    );
}

async fn keys_arrive_in_every_header_litellm_reads(db: Db) {
    let db = database(db).await;
    let p = mock_proxy(&db).await;
    let key = Api::new(&p.url(), MASTER).key(json!({})).await;
    let http = reqwest::Client::new();
    for (h, v) in [
        ("authorization", format!("Bearer {key}")),
        ("x-litellm-api-key", key.clone()),
        ("api-key", key.clone()),
    ] {
        let r = http
            .post(format!("{}/v1/chat/completions", p.url()))
            .header(h, v)
            .json(&json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{h}");
    }
}

async fn a_model_outside_the_keys_list_is_403_before_unknown_model(db: Db) {
    let db = database(db).await;
    let p = mock_proxy(&db).await;
    let admin = Api::new(&p.url(), MASTER);
    let key = admin.as_key(&admin.key(json!({"models": ["m"]})).await);
    assert_eq!(key.chat("m").await.0, 200);
    for model in ["m2", "no-such-model"] {
        let a = key.chat(model).await;
        let e = error(&a, 403);
        assert_eq!(e["type"], "key_model_access_denied", "{model}");
        assert_eq!(e["param"], "model");
        assert_eq!(e["code"], "403");
        assert!(e["message"].as_str().unwrap().contains(model), "{e}");
    }
    for path in ["/v1/completions", "/v1/embeddings"] {
        let (s, _) = key
            .post(path, json!({"model": "m2", "prompt": "x", "input": "x"}))
            .await;
        assert_eq!(s, 403, "{path}");
    }
    // With every model allowed, an unknown one is still a 404.
    let open = admin.as_key(&admin.key(json!({})).await);
    error(&open.chat("no-such-model").await, 404);
    // Access-group names the config does not serve are accepted in `models`.
    let grouped = admin.as_key(&admin.key(json!({"models": ["beta-models", "m2"]})).await);
    assert_eq!(grouped.chat("m2").await.0, 200);
    error(&grouped.chat("m").await, 403);
}

async fn team_model_lists_apply_to_their_keys(db: Db) {
    let db = database(db).await;
    let p = mock_proxy(&db).await;
    let admin = Api::new(&p.url(), MASTER);
    let (_, t) = admin
        .post("/team/new", json!({"team_alias": "t", "models": ["m"]}))
        .await;
    let team = t["team_id"].as_str().unwrap();
    let key = admin.as_key(&admin.key(json!({"team_id": team})).await);
    assert_eq!(key.chat("m").await.0, 200);
    let a = key.chat("m2").await;
    let e = error(&a, 403);
    assert_eq!(e["type"], "team_model_access_denied");
    assert_eq!(e["param"], "model");
    // The key's own list cannot widen the team's.
    let wide = admin.as_key(
        &admin
            .key(json!({"team_id": team, "models": ["m", "m2"]}))
            .await,
    );
    assert_eq!(
        error(&wide.chat("m2").await, 403)["type"],
        "team_model_access_denied"
    );
    let inherits = admin.as_key(
        &admin
            .key(json!({"team_id": team, "models": ["all-team-models"]}))
            .await,
    );
    assert_eq!(inherits.chat("m").await.0, 200);
    error(&inherits.chat("m2").await, 403);
    // A team update reaches its keys at once.
    admin
        .post(
            "/team/update",
            json!({"team_id": team, "models": ["m", "m2"]}),
        )
        .await;
    assert_eq!(key.chat("m2").await.0, 200);
}

async fn wildcards_and_all_proxy_models(db: Db) {
    let up = OpenAiUpstream::start().await;
    let db = database(db).await;
    let models = format!(
        "{MOCK_MODELS}  - model_name: gpt\n    litellm_params:\n      model: openai/gpt-4o-mini\n      api_base: {}\n      api_key: sk-provider-secret\n",
        up.api_base()
    );
    let p = proxy(&config(&models, ""), &[("DATABASE_URL", &db.url)]).await;
    let admin = Api::new(&p.url(), MASTER);
    let openai = admin.as_key(&admin.key(json!({"models": ["openai/*"]})).await);
    assert_eq!(
        openai.chat("gpt").await.0,
        200,
        "matches the group's provider/model"
    );
    assert_eq!(
        error(&openai.chat("m").await, 403)["type"],
        "key_model_access_denied"
    );
    let mocks = admin.as_key(&admin.key(json!({"models": ["m*"]})).await);
    assert_eq!(mocks.chat("m").await.0, 200);
    assert_eq!(mocks.chat("m2").await.0, 200);
    error(&mocks.chat("gpt").await, 403);
    let all = admin.as_key(&admin.key(json!({"models": ["all-proxy-models"]})).await);
    for m in ["m", "m2", "gpt"] {
        assert_eq!(all.chat(m).await.0, 200, "{m}");
    }
}

async fn models_lists_only_what_the_key_may_call(db: Db) {
    let db = database(db).await;
    let p = mock_proxy(&db).await;
    let admin = Api::new(&p.url(), MASTER);
    let ids = |v: &Value| -> Vec<String> {
        let mut ids: Vec<String> = v["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap().to_owned())
            .collect();
        ids.sort();
        ids
    };
    let (s, all) = admin.get("/v1/models").await;
    assert_eq!(s, 200);
    assert_eq!(ids(&all), ["m", "m2"]);
    let one = admin.as_key(&admin.key(json!({"models": ["m2"]})).await);
    for path in ["/v1/models", "/models"] {
        let (s, listed) = one.get(path).await;
        assert_eq!(s, 200);
        assert_eq!(ids(&listed), ["m2"], "{path}");
    }
    let (_, listed) = admin
        .as_key(&admin.key(json!({})).await)
        .get("/v1/models")
        .await;
    assert_eq!(ids(&listed), ["m", "m2"]);
    error(&Api::new(&p.url(), "sk-bogus").get("/v1/models").await, 401);

    // `/model/info` follows the same rule, deployment by deployment.
    let groups = |v: &Value| -> Vec<String> {
        let mut names: Vec<String> = v["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["model_name"].as_str().unwrap().to_owned())
            .collect();
        names.sort();
        names
    };
    let (s, all) = admin.get("/model/info").await;
    assert_eq!(s, 200);
    assert_eq!(groups(&all), ["m", "m2"]);
    let (s, mine) = one.get("/v1/model/info").await;
    assert_eq!(s, 200);
    assert_eq!(groups(&mine), ["m2"]);
    let hidden = all["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["model_name"] == "m")
        .unwrap()["model_info"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (s, found) = admin
        .get(&format!("/model/info?litellm_model_id={hidden}"))
        .await;
    assert_eq!((s, groups(&found)), (200, vec!["m".to_owned()]));
    // Another key's deployment is not there for this key, as if it did not exist.
    error(
        &one.get(&format!("/model/info?litellm_model_id={hidden}"))
            .await,
        400,
    );
    error(
        &Api::new(&p.url(), "sk-bogus").get("/model/info").await,
        401,
    );

    // `/health` probes only what the key may call.
    let (s, report) = one.get("/health").await;
    assert_eq!(s, 200);
    assert_eq!(report["healthy_count"], 1, "{report}");
    let (_, report) = admin.get("/health").await;
    assert_eq!(report["healthy_count"], 2, "{report}");
    error(&Api::new(&p.url(), "sk-bogus").get("/health").await, 401);
}

async fn rpm_limits_answer_429_with_retry_after(db: Db) {
    clear_of_minute_boundary().await;
    let db = database(db).await;
    let p = mock_proxy(&db).await;
    let admin = Api::new(&p.url(), MASTER);
    let key = admin.as_key(&admin.key(json!({"rpm_limit": 2})).await);
    assert_eq!(key.chat("m").await.0, 200);
    assert_eq!(key.chat("m").await.0, 200);
    let resp = key.chat_response("m").await;
    assert_eq!(resp.status(), 429);
    let after: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&after), "{after}");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["type"], "rate_limit_error");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("rpm_limit")
    );
    // Other keys have their own counters; the master key has none.
    let other = admin.as_key(&admin.key(json!({"rpm_limit": 2})).await);
    assert_eq!(other.chat("m").await.0, 200);
    assert_eq!(admin.chat("m").await.0, 200);

    // A team's limit covers all its keys.
    let (_, t) = admin
        .post("/team/new", json!({"team_alias": "t", "rpm_limit": 1}))
        .await;
    let team = t["team_id"].as_str().unwrap();
    let a = admin.as_key(&admin.key(json!({"team_id": team})).await);
    let b = admin.as_key(&admin.key(json!({"team_id": team})).await);
    assert_eq!(a.chat("m").await.0, 200);
    let e = error(&b.chat("m").await, 429).clone();
    assert!(e["message"].as_str().unwrap().contains("team"), "{e}");
}

async fn tpm_limits_count_tokens_of_full_and_streamed_answers(db: Db) {
    clear_of_minute_boundary().await;
    let db = database(db).await;
    let p = mock_proxy(&db).await;
    let admin = Api::new(&p.url(), MASTER);
    let key = admin.as_key(&admin.key(json!({"tpm_limit": 5})).await);
    assert_eq!(key.chat("m").await.0, 200, "nothing used yet");
    let e = error(&key.chat("m").await, 429).clone();
    assert!(e["message"].as_str().unwrap().contains("tpm_limit"), "{e}");

    // A stream's usage counts too, also when the client did not ask to see it.
    let streamer = admin.as_key(&admin.key(json!({"tpm_limit": 5})).await);
    let r = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", p.url()))
        .bearer_auth(&streamer.key)
        .json(&json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "count these words please"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(
        !text.contains("\"usage\""),
        "usage kept from the client: {text}"
    );
    for _ in 0..50 {
        if streamer.chat("m").await.0 == 429 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the stream's tokens were not counted");
}

async fn streams_stay_lean_under_a_key(db: Db) {
    let db = database(db).await;
    let p = mock_proxy(&db).await;
    let admin = Api::new(&p.url(), MASTER);
    let key = admin
        .key(json!({"tpm_limit": 100000, "key_alias": "lean"}))
        .await;
    for include_usage in [false, true] {
        let mut body = json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "one two three"}]});
        if include_usage {
            body["stream_options"] = json!({"include_usage": true});
        }
        let r = reqwest::Client::new()
            .post(format!("{}/v1/chat/completions", p.url()))
            .bearer_auth(&key)
            .json(&body)
            .send()
            .await
            .unwrap();
        let header_bytes: usize = r
            .headers()
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len() + 4)
            .sum();
        assert!(header_bytes < 4096, "{header_bytes} bytes of headers");
        let text = r.text().await.unwrap();
        let chunks: Vec<Value> = text
            .split("\n\n")
            .filter_map(|e| e.strip_prefix("data: "))
            .filter(|e| *e != "[DONE]")
            .map(|e| serde_json::from_str(e).unwrap())
            .collect();
        let empty = chunks
            .iter()
            .filter(|c| c["choices"].as_array().unwrap().is_empty())
            .count();
        assert_eq!(empty, usize::from(include_usage), "{text}");
        if include_usage {
            assert!(
                chunks.last().unwrap()["usage"]["total_tokens"]
                    .as_u64()
                    .unwrap()
                    > 0
            );
        }
    }
}

/// Polls a chat call to `model` until it answers `status`, for up to five seconds.
async fn until_status(api: &Api, model: &str, status: u16) {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let got = api.chat(model).await.0;
        if got == status {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still {got}, not {status}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// LiteLLM's `budget_duration`: a key's (or team's, or user's) spend returns to 0 when the
/// duration has run out, and the next reset is a duration later; `budget_reset_at` says when.
/// A malformed duration is a 400 naming it.
async fn budgets_reset_every_budget_duration(db: Db) {
    let db = database(db).await;
    let p = priced_proxy(&db).await;
    let admin = Api::new(&p.url(), MASTER);
    let tiny = 0.000_001;

    let made = admin
        .generate(json!({"max_budget": tiny, "budget_duration": "1s"}))
        .await;
    assert_eq!(made["budget_duration"], "1s");
    let first_reset = made["budget_reset_at"].as_str().unwrap().to_owned();
    let key = admin.as_key(made["key"].as_str().unwrap());
    assert_eq!(key.chat("priced").await.0, 200);
    error(&key.chat("priced").await, 400);
    until_status(&key, "priced", 200).await;
    let (_, info) = admin
        .get(&format!("/key/info?key={}", made["key"].as_str().unwrap()))
        .await;
    let next_reset = info["info"]["budget_reset_at"].as_str().unwrap().to_owned();
    assert!(next_reset > first_reset, "{next_reset} after {first_reset}");

    let (s, team) = admin
        .post(
            "/team/new",
            json!({"max_budget": tiny, "budget_duration": "1s"}),
        )
        .await;
    assert_eq!(s, 200, "{team}");
    assert!(team["budget_reset_at"].is_string(), "{team}");
    let member = admin.as_key(&admin.key(json!({"team_id": team["team_id"]})).await);
    assert_eq!(member.chat("priced").await.0, 200);
    error(&member.chat("priced").await, 400);
    until_status(&member, "priced", 200).await;

    let e = error(
        &admin
            .post("/key/generate", json!({"budget_duration": "soon"}))
            .await,
        400,
    )
    .clone();
    assert_eq!(e["param"], "budget_duration");
    p.shutdown().await;
}
