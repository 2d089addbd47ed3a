//! End-to-end: the management API over HTTP — `/key/*`, `/team/*`, `/user/*`,
//! `/organization/*` with LiteLLM's request and response bodies — on SQLite and on PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod keys_common;

use keys_common::{Api, Db, MASTER, MOCK_MODELS, config, database, error, hash, mock_proxy, proxy};
use serde_json::{Value, json};

on_both_databases!(
    keys_are_generated_read_updated_listed_and_deleted,
    key_info_is_self_service_and_writes_are_for_admins,
    bad_key_input_is_a_4xx_that_names_the_problem,
    unknown_fields_and_nulls_are_accepted,
    key_aliases_are_unique_even_when_created_concurrently,
    teams_have_members_and_take_their_keys_with_them,
    team_and_organization_aliases_need_not_be_unique,
    users_get_keys_and_proxy_admins_manage_the_proxy,
    organizations_are_created_read_and_listed,
    users_are_listed_and_deleted_with_their_keys,
    organizations_are_updated_and_deleted_once_empty,
);

fn str_of<'a>(v: &'a Value, field: &str) -> &'a str {
    v[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field} missing: {v}"))
}

async fn keys_are_generated_read_updated_listed_and_deleted(db: Db) {
    let db = database(db).await;
    let p = mock_proxy(&db).await;
    let admin = Api::new(&p.url(), MASTER);

    let g = admin
        .generate(json!({
            "key_alias": "ci-key",
            "user_id": "alice",
            "models": ["m"],
            "metadata": {"env": "ci"},
            "duration": "30d",
            "rpm_limit": 100,
            "tpm_limit": 10000,
            "max_budget": 5.5,
        }))
        .await;
    let key = str_of(&g, "key").to_owned();
    assert!(key.starts_with("sk-"));
    assert_eq!(str_of(&g, "token"), hash(&key), "token is the SHA-256 hex");
    assert_eq!(str_of(&g, "token_id"), hash(&key));
    assert_eq!(g["key_alias"], "ci-key");
    assert_eq!(g["user_id"], "alice");
    assert_eq!(g["models"], json!(["m"]));
    assert_eq!(g["metadata"], json!({"env": "ci"}));
    assert_eq!(g["rpm_limit"], 100);
    assert_eq!(g["tpm_limit"], 10000);
    assert_eq!(g["max_budget"], 5.5);
    assert_eq!(g["duration"], "30d");
    assert_eq!(
        str_of(&g, "key_name"),
        format!("sk-...{}", &key[key.len() - 4..])
    );
    for field in ["expires", "created_at", "updated_at"] {
        let t = str_of(&g, field);
        assert!(
            t.len() >= 20 && t.ends_with('Z') && t.contains('T'),
            "{field}: {t}"
        );
    }
    assert!(str_of(&g, "expires") > str_of(&g, "created_at"));

    // The key works, and /key/info answers for it by key or by hash.
    assert_eq!(admin.as_key(&key).chat("m").await.0, 200);
    for asked in [key.clone(), hash(&key)] {
        let (s, info) = admin.get(&format!("/key/info?key={asked}")).await;
        assert_eq!(s, 200, "{info}");
        assert_eq!(info["key"], asked.as_str());
        assert_eq!(info["info"]["key_alias"], "ci-key");
        assert_eq!(info["info"]["models"], json!(["m"]));
        assert!(
            info["info"].get("token").is_none(),
            "the hash is not repeated in info"
        );
    }

    // /key/update answers the updated key object.
    let (s, u) = admin
        .post(
            "/key/update",
            json!({"key": key, "models": ["m", "m2"], "key_alias": "ci-key-2", "metadata": {"env": "prod"}}),
        )
        .await;
    assert_eq!(s, 200, "{u}");
    assert_eq!(u["key"], key.as_str());
    assert_eq!(u["models"], json!(["m", "m2"]));
    assert_eq!(u["key_alias"], "ci-key-2");
    assert_eq!(u["metadata"], json!({"env": "prod"}));
    assert_eq!(u["rpm_limit"], 100, "fields not named are kept");
    assert_eq!(
        admin.as_key(&key).chat("m2").await.0,
        200,
        "the update took effect at once"
    );

    // /key/list: hashes by default, objects on request, filters and pages.
    let other = admin.key(json!({"user_id": "bob"})).await;
    let (s, l) = admin.get("/key/list").await;
    assert_eq!(s, 200, "{l}");
    assert_eq!(l["total_count"], 2);
    assert_eq!(l["current_page"], 1);
    assert_eq!(l["total_pages"], 1);
    assert_eq!(l["keys"], json!([hash(&key), hash(&other)]));
    let (_, l) = admin
        .get("/key/list?user_id=bob&return_full_object=true")
        .await;
    assert_eq!(l["total_count"], 1);
    assert_eq!(l["keys"][0]["user_id"], "bob");
    let (_, l) = admin.get("/key/list?size=1&page=2").await;
    assert_eq!(
        (
            l["total_pages"].as_i64(),
            l["keys"].as_array().unwrap().len()
        ),
        (Some(2), 1)
    );
    assert_eq!(l["keys"][0], hash(&other));

    // /key/delete by key and by alias.
    let (s, d) = admin
        .post("/key/delete", json!({"keys": [key], "key_aliases": []}))
        .await;
    assert_eq!(s, 200, "{d}");
    assert_eq!(d, json!({"deleted_keys": [key]}));
    error(&admin.as_key(&key).chat("m").await, 401);
    error(&admin.get(&format!("/key/info?key={key}")).await, 404);
    admin
        .post("/key/update", json!({"key": other, "key_alias": "bobs"}))
        .await;
    let (s, d) = admin
        .post("/key/delete", json!({"key_aliases": ["bobs"]}))
        .await;
    assert_eq!((s, d), (200, json!({"deleted_keys": ["bobs"]})));
    let (_, l) = admin.get("/key/list").await;
    assert_eq!(l["total_count"], 0);
    let e = error(
        &admin.post("/key/delete", json!({"keys": [other]})).await,
        404,
    )
    .clone();
    assert!(e["message"].as_str().unwrap().contains("do not exist"));
    assert!(
        !e.to_string().contains(&other),
        "a key is never repeated in an error"
    );
}

async fn key_info_is_self_service_and_writes_are_for_admins(db: Db) {
    let db = database(db).await;
    let p = mock_proxy(&db).await;
    let admin = Api::new(&p.url(), MASTER);
    let key = admin.key(json!({"key_alias": "mine"})).await;
    let stranger = admin.key(json!({})).await;
    let me = admin.as_key(&key);

    let (s, own) = me.get(&format!("/key/info?key={key}")).await;
    assert_eq!((s, own["info"]["key_alias"].as_str()), (200, Some("mine")));
    let (s, own) = me.get("/key/info").await;
    assert_eq!(s, 200, "no query means the caller's own key: {own}");
    assert_eq!(own["info"]["key_alias"], "mine");
    let e = error(
        &admin
            .as_key(&stranger)
            .get(&format!("/key/info?key={key}"))
            .await,
        403,
    )
    .clone();
    assert_eq!(e["type"], "permission_error");

    for (path, body) in [
        ("/key/generate", json!({})),
        ("/key/update", json!({"key": key, "models": []})),
        ("/key/delete", json!({"keys": [stranger]})),
        ("/team/new", json!({"team_alias": "x"})),
        ("/user/new", json!({"user_id": "x"})),
        ("/organization/new", json!({"organization_alias": "x"})),
    ] {
        error(&me.post(path, body).await, 403);
    }
    error(&me.get("/key/list").await, 403);
    error(&me.get("/team/list").await, 403);

    // No key, or a bad one: 401, and the bad one is not repeated.
    let (s, b) = Api::new(&p.url(), "").get("/key/list").await;
    assert_eq!(s, 401, "{b}");
    let nope = "sk-not-a-real-key-123";
    let a = admin.as_key(nope).get("/key/info").await;
    assert!(!error(&a, 401).to_string().contains(nope));
}

async fn bad_key_input_is_a_4xx_that_names_the_problem(db: Db) {
    let db = database(db).await;
    let p = mock_proxy(&db).await;
    let admin = Api::new(&p.url(), MASTER);
    admin.key(json!({"key_alias": "taken"})).await;
    assert_eq!(
        admin.key(json!({"key": "sk-custom-dup"})).await,
        "sk-custom-dup",
        "a key of one's own"
    );
    let cases: Vec<(&str, Value, u16, Option<&str>, &str)> = vec![
        (
            "/key/generate",
            json!({"duration": "30x"}),
            400,
            Some("duration"),
            "not a duration",
        ),
        (
            "/key/generate",
            json!({"duration": "soon"}),
            400,
            Some("duration"),
            "30d",
        ),
        (
            "/key/generate",
            json!({"team_id": "no-such-team"}),
            400,
            Some("team_id"),
            "does not exist",
        ),
        (
            "/key/generate",
            json!({"organization_id": "no-such-org"}),
            400,
            Some("organization_id"),
            "does not exist",
        ),
        (
            "/key/generate",
            json!({"key_alias": "taken"}),
            400,
            Some("key_alias"),
            "unique",
        ),
        (
            "/key/generate",
            json!({"models": "m"}),
            400,
            Some("models"),
            "list of strings",
        ),
        (
            "/key/generate",
            json!({"models": ["m", 3]}),
            400,
            Some("models"),
            "list of strings",
        ),
        (
            "/key/generate",
            json!({"rpm_limit": "5"}),
            400,
            Some("rpm_limit"),
            "whole number",
        ),
        (
            "/key/generate",
            json!({"rpm_limit": -1}),
            400,
            Some("rpm_limit"),
            "0 or more",
        ),
        (
            "/key/generate",
            json!({"metadata": ["x"]}),
            400,
            Some("metadata"),
            "object",
        ),
        (
            "/key/generate",
            json!({"max_budget": "lots"}),
            400,
            Some("max_budget"),
            "number",
        ),
        (
            "/key/generate",
            json!({"key_alias": 7}),
            400,
            Some("key_alias"),
            "string",
        ),
        (
            "/key/generate",
            json!({"tags": "a"}),
            400,
            Some("tags"),
            "list of strings",
        ),
        (
            "/key/generate",
            json!({"key": "not-sk"}),
            400,
            Some("key"),
            "sk-",
        ),
        (
            "/key/generate",
            json!({"key": "sk-custom-dup"}),
            400,
            Some("key"),
            "already exists",
        ),
        (
            "/key/update",
            json!({"models": []}),
            400,
            Some("key"),
            "required",
        ),
        (
            "/key/update",
            json!({"key": "sk-unknown-key"}),
            404,
            None,
            "no such key",
        ),
        (
            "/key/update",
            json!({"key": "sk-unknown-key", "duration": "1y"}),
            400,
            Some("duration"),
            "duration",
        ),
        ("/key/delete", json!({}), 400, Some("keys"), "at least one"),
        (
            "/key/delete",
            json!({"keys": "sk-x"}),
            400,
            Some("keys"),
            "list of strings",
        ),
        (
            "/team/new",
            json!({"organization_id": "nope"}),
            400,
            Some("organization_id"),
            "does not exist",
        ),
        (
            "/team/new",
            json!({"members_with_roles": [{"role": "owner", "user_id": "u"}]}),
            400,
            Some("members_with_roles[0].role"),
            "admin",
        ),
        (
            "/team/new",
            json!({"members_with_roles": [{"role": "user"}]}),
            400,
            Some("members_with_roles[0]"),
            "user_id or a user_email",
        ),
        (
            "/team/new",
            json!({"members_with_roles": ["u1"]}),
            400,
            Some("members_with_roles[0]"),
            "object",
        ),
        (
            "/team/update",
            json!({"team_alias": "x"}),
            400,
            Some("team_id"),
            "required",
        ),
        (
            "/team/update",
            json!({"team_id": "nope"}),
            404,
            None,
            "does not exist",
        ),
        ("/team/delete", json!({}), 400, Some("team_ids"), "team_ids"),
        (
            "/team/delete",
            json!({"team_ids": ["nope"]}),
            404,
            None,
            "does not exist",
        ),
        (
            "/user/new",
            json!({"user_role": "emperor"}),
            400,
            Some("user_role"),
            "proxy_admin",
        ),
        (
            "/user/new",
            json!({"team_id": "nope"}),
            400,
            Some("team_id"),
            "does not exist",
        ),
        (
            "/user/update",
            json!({"user_alias": "x"}),
            400,
            Some("user_id"),
            "required",
        ),
        (
            "/organization/new",
            json!({}),
            400,
            Some("organization_alias"),
            "required",
        ),
        (
            "/organization/new",
            json!({"organization_alias": ["x"]}),
            400,
            Some("organization_alias"),
            "string",
        ),
    ];
    for (path, body, status, param, words) in cases {
        let a = admin.post(path, body.clone()).await;
        let e = error(&a, status);
        assert_eq!(e["param"].as_str(), param, "{path} {body}: {e}");
        let msg = e["message"].as_str().unwrap();
        assert!(
            msg.contains(words),
            "{path} {body}: \"{msg}\" lacks \"{words}\""
        );
    }
    for (path, raw) in [("/key/generate", "{oops"), ("/team/new", "[1, 2]")] {
        let e = error(&admin.post_raw(path, raw).await, 400).clone();
        assert!(e["message"].as_str().unwrap().contains("JSON"), "{e}");
    }
    for path in [
        "/team/info",
        "/user/info",
        "/organization/info",
        "/key/info",
        "/team/info?team_id=nope",
        "/user/info?user_id=nope",
        "/organization/info?organization_id=nope",
        "/key/list?page=0",
        "/key/list?size=1000",
    ] {
        let (s, b) = admin.get(path).await;
        assert!(s == 400 || s == 404, "{path}: {s} {b}");
        error(&(s, b), s);
    }
    let (_, l) = admin.get("/key/list").await;
    assert_eq!(l["total_count"], 2, "no bad request stored anything");
}

async fn unknown_fields_and_nulls_are_accepted(db: Db) {
    let db = database(db).await;
    let p = mock_proxy(&db).await;
    let admin = Api::new(&p.url(), MASTER);
    // As LiteLLM's own end-to-end tests send them.
    let g = admin
        .generate(json!({
            "models": ["m", "azure-models", "beta-access-group"],
            "aliases": {"mistral-7b": "gpt-3.5-turbo"},
            "duration": null,
            "max_budget": null,
            "budget_duration": "30d",
            "max_parallel_requests": 5,
            "soft_budget": 1.5,
            "tags": ["a", "b"],
            "members_with_roles": [],
            "config": {},
            "permissions": {"x": 1},
            "send_invite_email": false,
            "some_future_field": {"nested": true},
            "team_id": null,
        }))
        .await;
    assert_eq!(g["expires"], Value::Null);
    assert_eq!(g["max_budget"], Value::Null);
    assert_eq!(g["aliases"], json!({"mistral-7b": "gpt-3.5-turbo"}));
    assert_eq!(g["budget_duration"], "30d");
    assert_eq!(g["max_parallel_requests"], 5);
    assert_eq!(g["tags"], json!(["a", "b"]));
    assert!(g.get("some_future_field").is_none());
    let key = str_of(&g, "key");
    let (_, info) = admin.get(&format!("/key/info?key={key}")).await;
    assert_eq!(
        info["info"]["permissions"],
        json!({"x": 1}),
        "stored, and read back"
    );
    assert_eq!(admin.as_key(key).chat("m").await.0, 200);

    let (s, t) = admin
        .post(
            "/team/new",
            json!({"team_alias": "t", "models": null, "metadata": null, "tpm_limit": null,
                   "budget_duration": "1d", "tags": ["x"], "model_aliases": {"cheap": "m"},
                   "admins": [], "members": [], "unknown_thing": 1}),
        )
        .await;
    assert_eq!(s, 200, "{t}");
    assert_eq!(t["budget_duration"], "1d");
    let (s, u) = admin
        .post(
            "/user/new",
            json!({"user_email": null, "aliases": {}, "duration": null, "max_budget": null,
                   "budget_duration": null, "models": ["azure-models"], "whatever": [1]}),
        )
        .await;
    assert_eq!(s, 200, "{u}");
    let (s, o) = admin
        .post(
            "/organization/new",
            json!({"organization_alias": "o", "models": ["azure-models"], "max_budget": null, "budget_id": null}),
        )
        .await;
    assert_eq!(s, 200, "{o}");
}

async fn key_aliases_are_unique_even_when_created_concurrently(db: Db) {
    let db = database(db).await;
    let p = mock_proxy(&db).await;
    let admin = Api::new(&p.url(), MASTER);
    let tasks: Vec<_> = (0..6)
        .map(|_| {
            let a = admin.clone();
            tokio::spawn(async move {
                a.post("/key/generate", json!({"key_alias": "only-one"}))
                    .await
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for t in tasks {
        let (s, b) = t.await.unwrap();
        if s != 200 {
            assert_eq!(error(&(s, b.clone()), 400)["param"], "key_alias");
        }
        statuses.push(s);
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    // Several keys without an alias are fine.
    admin.key(json!({})).await;
    admin.key(json!({"key_alias": null})).await;
    // An update onto a taken alias is refused too.
    let k = admin.key(json!({"key_alias": "free"})).await;
    let e = error(
        &admin
            .post("/key/update", json!({"key": k, "key_alias": "only-one"}))
            .await,
        400,
    )
    .clone();
    assert_eq!(e["param"], "key_alias");
}

async fn teams_have_members_and_take_their_keys_with_them(db: Db) {
    let db = database(db).await;
    let p = mock_proxy(&db).await;
    let admin = Api::new(&p.url(), MASTER);
    let (s, org) = admin
        .post("/organization/new", json!({"organization_alias": "acme"}))
        .await;
    assert_eq!(s, 200, "{org}");
    let org_id = str_of(&org, "organization_id").to_owned();
    let (s, u) = admin
        .post(
            "/user/new",
            json!({"user_id": "ann", "user_email": "ann@example.com"}),
        )
        .await;
    assert_eq!(s, 200, "{u}");
    let (s, team) = admin
        .post(
            "/team/new",
            json!({
                "team_alias": "core",
                "organization_id": org_id,
                "models": ["m"],
                "metadata": {"cost_center": 7},
                "rpm_limit": 1000,
                "members_with_roles": [
                    {"role": "admin", "user_id": "ann"},
                    {"role": "user", "user_email": "ben@example.com"},
                ],
            }),
        )
        .await;
    assert_eq!(s, 200, "{team}");
    let team_id = str_of(&team, "team_id").to_owned();
    assert_eq!(team["team_alias"], "core");
    assert_eq!(team["organization_id"], org_id.as_str());
    assert_eq!(team["models"], json!(["m"]));
    assert_eq!(team["metadata"], json!({"cost_center": 7}));
    let members = team["members_with_roles"].as_array().unwrap();
    assert_eq!(members.len(), 2, "{team}");
    assert_eq!(members[0]["user_id"], "ann");
    assert_eq!(members[0]["role"], "admin");
    assert_eq!(members[1]["user_email"], "ben@example.com");

    // Team info: the admin, the team's key, a member's own key; not a stranger.
    let team_key = admin
        .key(json!({"team_id": team_id, "key_alias": "team-key"}))
        .await;
    let ann_key = admin.key(json!({"user_id": "ann"})).await;
    let stranger = admin.key(json!({})).await;
    for k in [MASTER, team_key.as_str(), ann_key.as_str()] {
        let (s, info) = admin
            .as_key(k)
            .get(&format!("/team/info?team_id={team_id}"))
            .await;
        assert_eq!(s, 200, "{info}");
        assert_eq!(info["team_id"], team_id.as_str());
        assert_eq!(info["team_info"]["team_alias"], "core");
        assert_eq!(
            info["team_info"]["members_with_roles"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
        assert_eq!(info["keys"][0]["key_alias"], "team-key");
    }
    error(
        &admin
            .as_key(&stranger)
            .get(&format!("/team/info?team_id={team_id}"))
            .await,
        403,
    );

    // Update answers {team_id, data}; members can be added and removed.
    let (s, up) = admin
        .post(
            "/team/update",
            json!({"team_id": team_id, "team_alias": "core-2", "models": ["m", "m2"]}),
        )
        .await;
    assert_eq!(s, 200, "{up}");
    assert_eq!(up["team_id"], team_id.as_str());
    assert_eq!(up["data"]["team_alias"], "core-2");
    assert_eq!(up["data"]["models"], json!(["m", "m2"]));
    assert_eq!(up["data"]["metadata"], json!({"cost_center": 7}), "kept");
    assert_eq!(
        up["data"]["members_with_roles"].as_array().unwrap().len(),
        2,
        "kept"
    );
    let (s, t) = admin
        .post(
            "/team/member_add",
            json!({"team_id": team_id, "member": {"role": "user", "user_id": "cat"}}),
        )
        .await;
    assert_eq!(s, 200, "{t}");
    assert_eq!(t["members_with_roles"].as_array().unwrap().len(), 3);
    let (s, t) = admin
        .post(
            "/team/member_delete",
            json!({"team_id": team_id, "user_id": "cat"}),
        )
        .await;
    assert_eq!(s, 200, "{t}");
    assert_eq!(t["members_with_roles"].as_array().unwrap().len(), 2);
    let (_, list) = admin.get("/team/list").await;
    assert_eq!(list.as_array().unwrap().len(), 1);

    // The user sees the team; after the team is deleted, neither it nor its keys remain.
    let (_, ui) = admin.get("/user/info?user_id=ann").await;
    assert_eq!(ui["teams"][0]["team_id"], team_id.as_str());
    assert_eq!(admin.as_key(&team_key).chat("m").await.0, 200);
    let (s, d) = admin
        .post("/team/delete", json!({"team_ids": [team_id]}))
        .await;
    assert_eq!((s, d), (200, json!({"deleted_teams": [team_id]})));
    error(
        &admin.get(&format!("/team/info?team_id={team_id}")).await,
        404,
    );
    let (_, ui) = admin.get("/user/info?user_id=ann").await;
    assert_eq!(ui["teams"], json!([]), "a deleted team disappears");
    error(&admin.as_key(&team_key).chat("m").await, 401);
    error(&admin.get(&format!("/key/info?key={team_key}")).await, 404);
}

async fn team_and_organization_aliases_need_not_be_unique(db: Db) {
    let db = database(db).await;
    let p = mock_proxy(&db).await;
    let admin = Api::new(&p.url(), MASTER);
    for (path, body, id) in [
        ("/team/new", json!({"team_alias": "same"}), "team_id"),
        (
            "/organization/new",
            json!({"organization_alias": "same"}),
            "organization_id",
        ),
    ] {
        let tasks: Vec<_> = (0..5)
            .map(|_| {
                let (a, b) = (admin.clone(), body.clone());
                tokio::spawn(async move { a.post(path, b).await })
            })
            .collect();
        let mut ids = std::collections::HashSet::new();
        for t in tasks {
            let (s, b) = t.await.unwrap();
            assert_eq!(s, 200, "{path}: {b}");
            ids.insert(str_of(&b, id).to_owned());
        }
        assert_eq!(ids.len(), 5, "{path}: each got its own id");
    }
    assert_eq!(
        admin.post("/team/new", json!({"team_id": "fixed"})).await.0,
        200
    );
    let e = error(
        &admin.post("/team/new", json!({"team_id": "fixed"})).await,
        400,
    )
    .clone();
    assert_eq!(e["param"], "team_id", "an id (not an alias) is unique");
}

async fn users_get_keys_and_proxy_admins_manage_the_proxy(db: Db) {
    let db = database(db).await;
    let p = mock_proxy(&db).await;
    let admin = Api::new(&p.url(), MASTER);

    let (s, u) = admin
        .post(
            "/user/new",
            json!({"user_id": "dana", "user_email": "dana@example.com", "user_role": "internal_user",
                   "models": ["m"], "key_alias": "dana-key"}),
        )
        .await;
    assert_eq!(s, 200, "{u}");
    assert_eq!(u["user_id"], "dana");
    assert_eq!(u["user_email"], "dana@example.com");
    assert_eq!(u["user_role"], "internal_user");
    assert_eq!(u["key_alias"], "dana-key");
    let dana = str_of(&u, "key").to_owned();
    assert_eq!(str_of(&u, "token"), hash(&dana));
    let (s, anon) = admin.post("/user/new", json!({})).await;
    assert_eq!(s, 200, "{anon}");
    assert_eq!(str_of(&anon, "user_id").len(), 36, "a generated id");

    // User info: the admin and the user; not another user.
    let me = admin.as_key(&dana);
    for who in [&admin, &me] {
        let (s, info) = who.get("/user/info?user_id=dana").await;
        assert_eq!(s, 200, "{info}");
        assert_eq!(info["user_id"], "dana");
        assert_eq!(info["user_info"]["user_email"], "dana@example.com");
        assert_eq!(info["keys"][0]["key_alias"], "dana-key");
        assert_eq!(info["teams"], json!([]));
    }
    let (s, own) = me.get("/user/info").await;
    assert_eq!((s, own["user_id"].as_str()), (200, Some("dana")));
    let other = str_of(&anon, "key");
    error(
        &admin.as_key(other).get("/user/info?user_id=dana").await,
        403,
    );
    error(&me.post("/key/generate", json!({})).await, 403);

    // /user/update answers 200 for a user not stored yet, creating it.
    let (s, up) = admin
        .post("/user/update", json!({"user_id": "newcomer", "user_alias": "New", "user_role": "internal_user_viewer"}))
        .await;
    assert_eq!(s, 200, "{up}");
    assert_eq!(up["user_id"], "newcomer");
    assert_eq!(up["data"]["user_alias"], "New");
    let (s, _) = admin.get("/user/info?user_id=newcomer").await;
    assert_eq!(s, 200);

    // A proxy_admin's key may call the whole management API.
    let (s, boss) = admin
        .post(
            "/user/new",
            json!({"user_id": "boss", "user_role": "proxy_admin"}),
        )
        .await;
    assert_eq!(s, 200, "{boss}");
    let boss = admin.as_key(str_of(&boss, "key"));
    let k = boss.key(json!({"key_alias": "made-by-boss"})).await;
    let (s, info) = boss.get(&format!("/key/info?key={k}")).await;
    assert_eq!(
        (s, info["info"]["created_by"].as_str()),
        (200, Some("boss"))
    );
    let (s, t) = boss
        .post("/team/new", json!({"team_alias": "boss-team"}))
        .await;
    assert_eq!(s, 200, "{t}");
    assert_eq!(boss.get("/key/list").await.0, 200);
    assert_eq!(boss.get("/user/info?user_id=dana").await.0, 200);
    assert_eq!(boss.post("/key/delete", json!({"keys": [k]})).await.0, 200);

    // Demoted, the same key is an ordinary key at once (on this instance).
    let (s, _) = admin
        .post(
            "/user/update",
            json!({"user_id": "boss", "user_role": "internal_user"}),
        )
        .await;
    assert_eq!(s, 200);
    error(&boss.post("/key/generate", json!({})).await, 403);
}

async fn organizations_are_created_read_and_listed(db: Db) {
    let db = database(db).await;
    // The database named in the config file this time, not in DATABASE_URL.
    let p = proxy(
        &config(MOCK_MODELS, &format!("  database_url: \"{}\"\n", db.url)),
        &[],
    )
    .await;
    let admin = Api::new(&p.url(), MASTER);
    let (s, o) = admin
        .post(
            "/organization/new",
            json!({"organization_alias": "Acme", "models": ["m"], "metadata": {"tier": "gold"}}),
        )
        .await;
    assert_eq!(s, 200, "{o}");
    assert_eq!(o["organization_alias"], "Acme");
    let org_id = str_of(&o, "organization_id").to_owned();
    let (s, t) = admin
        .post(
            "/team/new",
            json!({"team_alias": "t", "organization_id": org_id}),
        )
        .await;
    assert_eq!(s, 200, "{t}");
    let (s, info) = admin
        .get(&format!("/organization/info?organization_id={org_id}"))
        .await;
    assert_eq!(s, 200, "{info}");
    assert_eq!(info["organization_alias"], "Acme");
    assert_eq!(info["metadata"], json!({"tier": "gold"}));
    assert_eq!(info["teams"][0]["team_alias"], "t");
    let (s, list) = admin.get("/organization/list").await;
    assert_eq!(s, 200);
    assert_eq!(list.as_array().unwrap().len(), 1);
    let key = admin.key(json!({"organization_id": org_id})).await;
    let (s, _) = admin
        .as_key(&key)
        .get(&format!("/organization/info?organization_id={org_id}"))
        .await;
    assert_eq!(s, 200, "a key reads its own organisation");
    let stranger = admin.key(json!({})).await;
    error(
        &admin
            .as_key(&stranger)
            .get(&format!("/organization/info?organization_id={org_id}"))
            .await,
        403,
    );
}

#[tokio::test]
async fn the_management_api_is_off_without_a_master_key() {
    let p = proxy(&format!("model_list:\n{MOCK_MODELS}"), &[]).await;
    let anyone = Api::new(&p.url(), "sk-anything");
    for (path, body) in [
        ("/key/generate", json!({})),
        ("/team/new", json!({})),
        ("/user/new", json!({})),
    ] {
        let e = error(&anyone.post(path, body).await, 403).clone();
        assert!(e["message"].as_str().unwrap().contains("master_key"), "{e}");
    }
    error(&anyone.get("/key/list").await, 403);
    assert_eq!(anyone.chat("m").await.0, 200, "the LLM routes stay open");
}

/// LiteLLM's `/user/list` (pages, role filter) and `/user/delete` (the users' keys and team
/// memberships go with them; an unknown id deletes nothing); admin only.
async fn users_are_listed_and_deleted_with_their_keys(db: Db) {
    let db = database(db).await;
    let p = mock_proxy(&db).await;
    let admin = Api::new(&p.url(), MASTER);
    for (id, role) in [
        ("u1", "internal_user"),
        ("u2", "proxy_admin_viewer"),
        ("u3", "internal_user"),
    ] {
        let (s, v) = admin
            .post(
                "/user/new",
                json!({"user_id": id, "user_role": role, "auto_create_key": false}),
            )
            .await;
        assert_eq!(s, 200, "{v}");
    }
    let (s, page) = admin.get("/user/list?page=1&page_size=2").await;
    assert_eq!(s, 200, "{page}");
    let ids = |v: &Value| -> Vec<String> {
        v["users"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| str_of(u, "user_id").to_owned())
            .collect()
    };
    assert_eq!(ids(&page), ["u1", "u2"]);
    assert_eq!(
        (
            &page["total"],
            &page["page"],
            &page["page_size"],
            &page["total_pages"]
        ),
        (&json!(3), &json!(1), &json!(2), &json!(2))
    );
    let (_, second) = admin.get("/user/list?page=2&page_size=2").await;
    assert_eq!(ids(&second), ["u3"]);
    let (_, internal) = admin.get("/user/list?role=internal_user").await;
    assert_eq!(ids(&internal), ["u1", "u3"]);
    error(&admin.get("/user/list?role=wizard").await, 400);
    error(&admin.get("/user/list?page_size=0").await, 400);

    let (_, team) = admin.post("/team/new", json!({"team_alias": "t"})).await;
    let team_id = str_of(&team, "team_id").to_owned();
    admin
        .post(
            "/team/member_add",
            json!({"team_id": team_id, "member": {"role": "user", "user_id": "u1"}}),
        )
        .await;
    let key = admin.key(json!({"user_id": "u1"})).await;
    assert_eq!(admin.as_key(&key).chat("m").await.0, 200);
    let viewer = admin.key(json!({"user_id": "u2"})).await;
    error(
        &admin
            .as_key(&viewer)
            .post("/user/delete", json!({"user_ids": ["u1"]}))
            .await,
        403,
    );
    error(
        &admin
            .post("/user/delete", json!({"user_ids": ["u1", "nobody"]}))
            .await,
        404,
    );
    let (s, d) = admin
        .post("/user/delete", json!({"user_ids": ["u1"]}))
        .await;
    assert_eq!((s, d), (200, json!({"deleted_users": ["u1"]})));
    error(&admin.get("/user/info?user_id=u1").await, 404);
    error(&admin.as_key(&key).chat("m").await, 401);
    let (_, t) = admin.get(&format!("/team/info?team_id={team_id}")).await;
    assert_eq!(t["team_info"]["members_with_roles"], json!([]), "{t}");
    let (_, left) = admin.get("/user/list").await;
    assert_eq!(ids(&left), ["u2", "u3"]);
}

/// LiteLLM's `PATCH /organization/update` and `DELETE /organization/delete`: an update keeps
/// what it does not name; an organisation with teams or keys is not deleted (400, nothing
/// deleted), an empty one is, and answers with what was deleted.
async fn organizations_are_updated_and_deleted_once_empty(db: Db) {
    let db = database(db).await;
    let p = mock_proxy(&db).await;
    let admin = Api::new(&p.url(), MASTER);
    let (_, org) = admin
        .post(
            "/organization/new",
            json!({"organization_alias": "Acme", "models": ["m"], "max_budget": 10.0}),
        )
        .await;
    let org_id = str_of(&org, "organization_id").to_owned();
    let (s, updated) = admin
        .send(
            reqwest::Method::PATCH,
            "/organization/update",
            json!({"organization_id": org_id, "organization_alias": "Acme Corp", "spend": 1.5}),
        )
        .await;
    assert_eq!(s, 200, "{updated}");
    assert_eq!(updated["organization_alias"], "Acme Corp");
    assert_eq!(updated["models"], json!(["m"]));
    assert_eq!(updated["max_budget"], 10.0);
    let (_, read) = admin
        .get(&format!("/organization/info?organization_id={org_id}"))
        .await;
    assert_eq!(
        (&read["organization_alias"], &read["spend"]),
        (&json!("Acme Corp"), &json!(1.5))
    );
    error(
        &admin
            .post("/organization/update", json!({"organization_id": "nope"}))
            .await,
        404,
    );

    let (_, team) = admin
        .post(
            "/team/new",
            json!({"team_alias": "t", "organization_id": org_id}),
        )
        .await;
    let team_id = str_of(&team, "team_id").to_owned();
    let e = error(
        &admin
            .send(
                reqwest::Method::DELETE,
                "/organization/delete",
                json!({"organization_ids": [org_id]}),
            )
            .await,
        400,
    )
    .clone();
    assert!(str_of(&e, "message").contains("still has 1 team(s)"), "{e}");
    admin
        .post("/team/delete", json!({"team_ids": [team_id]}))
        .await;
    let (s, deleted) = admin
        .send(
            reqwest::Method::DELETE,
            "/organization/delete",
            json!({"organization_ids": [org_id]}),
        )
        .await;
    assert_eq!(s, 200, "{deleted}");
    assert_eq!(deleted[0]["organization_id"], org_id.as_str());
    error(
        &admin
            .get(&format!("/organization/info?organization_id={org_id}"))
            .await,
        404,
    );
    let (_, list) = admin.get("/organization/list").await;
    assert_eq!(list, json!([]));
}
