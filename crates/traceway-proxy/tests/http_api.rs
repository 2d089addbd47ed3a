//! End-to-end: the proxy's OpenAI-compatible routes over real HTTP, against the testkit's
//! OpenAI upstream and the built-in mock provider.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{http, openai_config, proxy, sse_events};
use serde_json::{Value, json};
use std::time::Duration;
use traceway_testkit::openai_upstream::{self, OpenAiUpstream, Reply, StreamEnd};

fn chat_body(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "Hello"}]})
}

#[tokio::test]
async fn chat_round_trips_the_official_wire_format_both_ways() {
    let up = OpenAiUpstream::start().await;
    let p = proxy(&openai_config(&up.api_base(), ""), &[]).await;
    let mut body = chat_body("gpt");
    body["reasoning_effort"] = json!("low");
    body["some_future_field"] = json!({"nested": [1, 2]});
    body["metadata"] = json!({"tag": "t1"});
    body["temperature"] = json!(0);
    let resp = http()
        .post(format!("{}/v1/chat/completions", p.url()))
        .header("x-request-id", "req-123")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-request-id"], "req-123");
    assert_eq!(resp.headers()["x-litellm-model-group"], "gpt");
    let deployment_id = p.app.state.client.deployments().next().unwrap().id.clone();
    assert_eq!(resp.headers()["x-litellm-model-id"], deployment_id.as_str());
    let got: Value = resp.json().await.unwrap();
    let fixture: Value = serde_json::from_str(openai_upstream::CHAT_COMPLETION).unwrap();
    assert_eq!(
        got, fixture,
        "the upstream's response reaches the client whole, unknown fields included"
    );

    let sent = up.last_request();
    assert_eq!(sent.path, "/v1/chat/completions");
    assert_eq!(sent.headers["authorization"], "Bearer sk-provider-secret");
    assert_eq!(sent.body["model"], "gpt-4o-mini");
    assert_eq!(sent.body["reasoning_effort"], "low");
    assert_eq!(sent.body["some_future_field"], json!({"nested": [1, 2]}));
    assert_eq!(sent.body["temperature"], 0.0);
    assert!(
        sent.body.get("metadata").is_none(),
        "gateway metadata is not sent upstream"
    );
}

#[tokio::test]
async fn unprefixed_routes_and_generated_request_ids() {
    let up = OpenAiUpstream::start().await;
    let p = proxy(&openai_config(&up.api_base(), ""), &[]).await;
    let resp = http()
        .post(format!("{}/chat/completions", p.url()))
        .json(&chat_body("gpt"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
    let uuid = uuid::Uuid::parse_str(&id).unwrap();
    assert_eq!(
        (id.len(), uuid.get_version_num()),
        (36, 4),
        "a v4 UUID is generated when none is given: {id}"
    );
    assert_eq!(id, id.to_lowercase(), "written in lower case");
    let next = http()
        .post(format!("{}/chat/completions", p.url()))
        .json(&chat_body("gpt"))
        .send()
        .await
        .unwrap();
    assert_ne!(
        next.headers()["x-request-id"],
        id.as_str(),
        "one per request"
    );
}

#[tokio::test]
async fn streams_pass_through_and_the_usage_chunk_only_when_asked() {
    let up = OpenAiUpstream::start().await;
    let p = proxy(&openai_config(&up.api_base(), ""), &[]).await;
    let mut body = chat_body("gpt");
    body["stream"] = json!(true);
    let resp = http()
        .post(format!("{}/v1/chat/completions", p.url()))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let events = sse_events(&resp.text().await.unwrap());
    assert_eq!(events.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    assert_eq!(
        chunks.len(),
        5,
        "role, three content chunks, finish; no usage chunk: {chunks:?}"
    );
    assert!(
        chunks
            .iter()
            .all(|c| c.get("usage").is_none() && !c["choices"].as_array().unwrap().is_empty())
    );
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "Hello! How can I help?");
    assert_eq!(
        chunks[0]["service_tier"], "default",
        "unknown chunk fields are kept"
    );
    assert_eq!(
        up.last_request().body["stream_options"]["include_usage"],
        true,
        "usage is always asked of the upstream"
    );

    body["stream_options"] = json!({"include_usage": true});
    let resp = http()
        .post(format!("{}/v1/chat/completions", p.url()))
        .json(&body)
        .send()
        .await
        .unwrap();
    let events = sse_events(&resp.text().await.unwrap());
    let usage: Value = serde_json::from_str(&events[events.len() - 2]).unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["total_tokens"], 15);
}

/// Embedding vectors reach the client as the upstream wrote them: their numbers are not parsed
/// and written again (which would turn `0.10000000000000001` into `0.1` and `-1E-7` into
/// `-1e-7`), and a base64 vector passes as it came.
#[tokio::test]
async fn embedding_vectors_pass_through_as_written() {
    let up = OpenAiUpstream::start().await;
    let p = proxy(&openai_config(&up.api_base(), ""), &[]).await;
    let floats = "[0.10000000000000001, -1E-7,\n 3.0]";
    up.push(Reply::ok(&format!(
        r#"{{"object":"list","data":[{{"object":"embedding","index":0,"embedding":{floats}}},
            {{"object":"embedding","index":1,"embedding":"AAAAPw=="}}],
            "model":"text-embedding-3-small","usage":{{"prompt_tokens":2,"total_tokens":2}}}}"#
    )));
    let text = http()
        .post(format!("{}/v1/embeddings", p.url()))
        .json(&json!({"model": "gpt", "input": ["a", "b"]}))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains(&format!(r#""embedding":{floats}"#)), "{text}");
    assert!(text.contains(r#""embedding":"AAAAPw==""#), "{text}");
    let e: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(e["usage"]["total_tokens"], 2);
    assert_eq!(e["data"][0]["embedding"][2], 3.0);
}

#[tokio::test]
async fn completions_and_embeddings_reach_their_endpoints() {
    let up = OpenAiUpstream::start().await;
    let p = proxy(&openai_config(&up.api_base(), ""), &[]).await;
    let c: Value = http()
        .post(format!("{}/v1/completions", p.url()))
        .json(&json!({"model": "gpt", "prompt": "Say this is a test", "max_tokens": 7}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        c,
        serde_json::from_str::<Value>(openai_upstream::COMPLETION).unwrap()
    );
    assert_eq!(up.last_request().path, "/v1/completions");
    let e: Value = http()
        .post(format!("{}/v1/embeddings", p.url()))
        .json(&json!({"model": "gpt", "input": "The food was delicious"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        e,
        serde_json::from_str::<Value>(openai_upstream::EMBEDDING).unwrap()
    );
    assert_eq!(up.last_request().path, "/v1/embeddings");
    let mut body = json!({"model": "gpt", "prompt": "x", "stream": true});
    let events = sse_events(
        &http()
            .post(format!("{}/v1/completions", p.url()))
            .json(&body)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    );
    assert_eq!(events.len(), 3, "two text chunks and [DONE]: {events:?}");
    body["stream_options"] = json!({"include_usage": true});
    let events = sse_events(
        &http()
            .post(format!("{}/v1/completions", p.url()))
            .json(&body)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    );
    assert_eq!(events.len(), 4);
}

#[tokio::test]
async fn the_mock_model_echoes_streams_embeds_and_fails_on_cue() {
    let p = proxy(
        "model_list:\n  - model_name: mock\n    litellm_params:\n      model: mock/m\n  - model_name: broken\n    litellm_params:\n      model: mock/m\n      mock_response: \"error:503:the mock is down\"\n",
        &[],
    )
    .await;
    let url = format!("{}/v1/chat/completions", p.url());
    let r: Value = http()
        .post(&url)
        .json(&chat_body("mock"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["choices"][0]["message"]["content"], "Hello");
    assert_eq!(
        r["usage"]["total_tokens"],
        r["usage"]["prompt_tokens"].as_u64().unwrap()
            + r["usage"]["completion_tokens"].as_u64().unwrap()
    );
    let mut body = chat_body("mock");
    body["mock_response"] = json!("canned answer here");
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let events = sse_events(
        &http()
            .post(&url)
            .json(&body)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    );
    let chunks: Vec<Value> = events
        .iter()
        .filter(|e| *e != "[DONE]")
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "canned answer here");
    assert!(chunks.len() >= 5);
    assert!(
        chunks.last().unwrap()["usage"]["completion_tokens"]
            .as_u64()
            .unwrap()
            > 0
    );

    let resp = http()
        .post(&url)
        .json(&chat_body("broken"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    let e: Value = resp.json().await.unwrap();
    assert_eq!(e["error"]["message"], "the mock is down");

    let emb: Value = http()
        .post(format!("{}/v1/embeddings", p.url()))
        .json(&json!({"model": "mock", "input": ["a", "b"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(emb["data"].as_array().unwrap().len(), 2);
    let comp: Value = http()
        .post(format!("{}/v1/completions", p.url()))
        .json(&json!({"model": "mock", "prompt": "echo me"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(comp["choices"][0]["text"], "echo me");
}

/// `GET url`, answered.
async fn get(url: impl reqwest::IntoUrl) -> reqwest::Response {
    http().get(url).send().await.unwrap()
}

async fn error_of(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap();
    for field in ["message", "type", "param", "code"] {
        assert!(
            body["error"].get(field).is_some(),
            "error body lacks {field}: {body}"
        );
    }
    (status, body)
}

#[tokio::test]
async fn upstream_errors_keep_their_status_message_and_retry_after() {
    let up = OpenAiUpstream::start().await;
    // Six failures in a row would cool the one deployment down; this test is about each error.
    let p = proxy(
        &openai_config(
            &up.api_base(),
            "router_settings:\n  disable_cooldowns: true\n",
        ),
        &[],
    )
    .await;
    let url = format!("{}/v1/chat/completions", p.url());
    up.push(Reply::Json {
        status: 429,
        body: openai_upstream::ERROR_429.into(),
        headers: vec![("retry-after".into(), "3".into())],
    });
    let resp = http()
        .post(&url)
        .json(&chat_body("gpt"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["retry-after"], "3");
    let (status, body) = error_of(resp).await;
    assert_eq!(status, 429);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Rate limit reached")
    );
    assert_eq!(body["error"]["code"], "rate_limit_exceeded");

    for (fixture, status) in [
        (openai_upstream::ERROR_401, 401),
        (openai_upstream::ERROR_400, 400),
        (openai_upstream::ERROR_500, 500),
    ] {
        up.push(Reply::error(status, fixture));
        let (got, body) = error_of(
            http()
                .post(&url)
                .json(&chat_body("gpt"))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(got, status, "{body}");
        assert!(
            !body.to_string().contains("sk-provider-secret"),
            "the provider key never reaches the client"
        );
    }
    up.push(Reply::error(502, "<html>bad gateway</html>"));
    let (status, body) = error_of(
        http()
            .post(&url)
            .json(&chat_body("gpt"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 502);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not an OpenAI error")
    );

    up.push(Reply::ok("{\"this is\": \"not a completion\"}"));
    let (status, body) = error_of(
        http()
            .post(&url)
            .json(&chat_body("gpt"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 502, "{body}");
}

#[tokio::test]
async fn timeouts_are_504_and_unreachable_upstreams_502() {
    let up = OpenAiUpstream::start().await;
    let cfg = format!(
        "{}  - model_name: dead\n    litellm_params:\n      model: openai/x\n      api_base: http://127.0.0.1:9/v1\n",
        openai_config(&up.api_base(), "").replace(
            "api_key: sk-provider-secret",
            "api_key: sk-provider-secret\n      timeout: 0.3"
        )
    );
    let p = proxy(&cfg, &[]).await;
    let url = format!("{}/v1/chat/completions", p.url());
    up.push(Reply::Delay(
        Duration::from_secs(3),
        Box::new(Reply::Fixture),
    ));
    let (status, body) = error_of(
        http()
            .post(&url)
            .json(&chat_body("gpt"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 504, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("did not answer within")
    );
    let (status, body) = error_of(
        http()
            .post(&url)
            .json(&chat_body("dead"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 502, "{body}");

    // A stream that stalls after its first event times out between chunks and ends with an error event.
    up.push(Reply::Sse {
        events: vec![r#"{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"par"},"finish_reason":null}]}"#.into()],
        gap: Duration::ZERO,
        end: StreamEnd::Hang,
    });
    let mut body = chat_body("gpt");
    body["stream"] = json!(true);
    let events = sse_events(
        &http()
            .post(&url)
            .json(&body)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    );
    assert_eq!(events.len(), 2, "{events:?}");
    let last: Value = serde_json::from_str(&events[1]).unwrap();
    assert_eq!(last["error"]["type"], "timeout_error");
}

#[tokio::test]
async fn bad_input_gets_openai_errors_that_name_the_problem() {
    let p = proxy("model_list:\n  - model_name: mock\n    litellm_params:\n      model: mock/m\ngeneral_settings:\n  max_request_size_mb: 0.01\n", &[]).await;
    let url = format!("{}/v1/chat/completions", p.url());
    let send = |body: String| {
        http()
            .post(&url)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };

    let (s, b) = error_of(send("{not json".into()).await.unwrap()).await;
    assert_eq!(
        (s, b["error"]["type"].as_str().unwrap()),
        (400, "invalid_request_error")
    );
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not valid JSON")
    );

    let (s, b) = error_of(
        send(r#"{"messages":[{"role":"user","content":"x"}]}"#.into())
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, b["error"]["param"].as_str()), (400, Some("model")));

    let (s, b) = error_of(
        send(
            r#"{"model":"mock","messages":[{"role":"user","content":"x"}],"temperature":"hot"}"#
                .into(),
        )
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(
        (s, b["error"]["param"].as_str()),
        (400, Some("temperature"))
    );

    let (s, b) = error_of(
        send(r#"{"model":"mock","messages":[]}"#.into())
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, b["error"]["param"].as_str()), (400, Some("messages")));

    let (s, b) = error_of(
        send(r#"{"model":"nope","messages":[{"role":"user","content":"x"}]}"#.into())
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 404);
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("available models: mock")
    );

    let big = format!(
        r#"{{"model":"mock","messages":[{{"role":"user","content":"{}"}}]}}"#,
        "x".repeat(20_000)
    );
    let (s, b) = error_of(send(big).await.unwrap()).await;
    assert_eq!(s, 413, "{b}");

    let (s, _) = error_of(get(format!("{}/v1/nothing", p.url())).await).await;
    assert_eq!(s, 404);

    // The server is still fine after all that.
    let ok = send(r#"{"model":"mock","messages":[{"role":"user","content":"x"}]}"#.into())
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
}

#[tokio::test]
async fn the_master_key_guards_llm_routes_but_not_health() {
    let p = proxy("model_list:\n  - model_name: mock\n    litellm_params:\n      model: mock/m\ngeneral_settings:\n  master_key: sk-master-1\n", &[]).await;
    let url = format!("{}/v1/chat/completions", p.url());
    let (s, b) = error_of(
        http()
            .post(&url)
            .json(&chat_body("mock"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (s, b["error"]["type"].as_str().unwrap()),
        (401, "authentication_error")
    );
    let (s, b) = error_of(
        http()
            .post(&url)
            .bearer_auth("sk-wrong")
            .json(&chat_body("mock"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 401);
    assert!(!b.to_string().contains("sk-wrong") && !b.to_string().contains("sk-master-1"));
    for (h, v) in [
        ("authorization", "Bearer sk-master-1"),
        ("x-litellm-api-key", "sk-master-1"),
        ("api-key", "sk-master-1"),
    ] {
        let r = http()
            .post(&url)
            .header(h, v)
            .json(&chat_body("mock"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{h}");
    }
    assert_eq!(get(format!("{}/v1/models", p.url())).await.status(), 401);
    assert_eq!(
        get(format!("{}/health/liveliness", p.url())).await.status(),
        200
    );
}

#[tokio::test]
async fn models_and_health_endpoints() {
    let p = proxy(
        "model_list:\n  - model_name: b-model\n    litellm_params:\n      model: mock/m\n  - model_name: a-model\n    litellm_params:\n      model: mock/m\n  - model_name: a-model\n    litellm_params:\n      model: mock/n\n",
        &[],
    )
    .await;
    for path in ["/v1/models", "/models"] {
        let m: Value = get(format!("{}{path}", p.url()))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(m["object"], "list");
        let ids: Vec<&str> = m["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["a-model", "b-model"]);
        assert_eq!(m["data"][0]["object"], "model");
    }
    let live: Value = get(format!("{}/health/liveliness", p.url()))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(live, "I'm alive!");
    let ready: Value = get(format!("{}/health/readiness", p.url()))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(ready["status"], "healthy");
}

/// `/model/info` lists each deployment as LiteLLM does — `model_name`, `litellm_params`,
/// `model_info` with the id — and never a provider key, a credential in `api_base` or an
/// authorization header; `litellm_model_id` picks one, and an unknown id is a 400.
#[tokio::test]
async fn model_info_lists_deployments_without_secrets() {
    let p = proxy(
        "model_list:\n  - model_name: gpt\n    litellm_params:\n      model: openai/gpt-4o-mini\n      api_base: https://user:pw@example.com:8443/v1?api-key=k-in-query\n      api_key: sk-provider-secret\n      timeout: 30\n      rpm: 10\n      temperature: 0.2\n      extra_headers:\n        Authorization: Bearer header-secret\n        X-Trace: 'on'\n    model_info:\n      id: gpt-a\n      mode: chat\n      description: the main model\n      input_cost_per_token: 0.000001\n  - model_name: emb\n    litellm_params:\n      model: mock/e\n    model_info:\n      mode: embedding\n",
        &[],
    )
    .await;
    for path in ["/model/info", "/v1/model/info"] {
        let resp = get(format!("{}{path}", p.url())).await;
        assert_eq!(resp.status(), 200, "{path}");
        let text = resp.text().await.unwrap();
        for secret in ["sk-provider-secret", "header-secret", "pw@", "k-in-query"] {
            assert!(!text.contains(secret), "{path} shows {secret}: {text}");
        }
        let listed: Value = serde_json::from_str(&text).unwrap();
        let data = listed["data"].as_array().unwrap();
        assert_eq!(data.len(), 2, "{listed}");
        let gpt = data.iter().find(|d| d["model_name"] == "gpt").unwrap();
        assert_eq!(
            gpt,
            &json!({
                "model_name": "gpt",
                "litellm_params": {
                    "model": "openai/gpt-4o-mini",
                    "api_base": "https://example.com:8443/v1",
                    "timeout": 30.0,
                    "rpm": 10,
                    "temperature": 0.2,
                    "extra_headers": {"X-Trace": "on"}
                },
                "model_info": {
                    "id": "gpt-a",
                    "mode": "chat",
                    "description": "the main model",
                    "db_model": false,
                    "litellm_provider": "openai",
                    "input_cost_per_token": 0.000001,
                    "output_cost_per_token": 0.0
                }
            })
        );
        let emb = data.iter().find(|d| d["model_name"] == "emb").unwrap();
        assert_eq!(emb["litellm_params"], json!({"model": "mock/e"}));
        assert_eq!(emb["model_info"]["mode"], "embedding");
        assert_eq!(emb["model_info"]["litellm_provider"], "mock");
        assert!(
            emb["model_info"]["id"]
                .as_str()
                .is_some_and(|id| !id.is_empty())
        );
    }
    let one: Value = get(format!("{}/model/info?litellm_model_id=gpt-a", p.url()))
        .await
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = one["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["model_info"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["gpt-a"]);
    let (status, body) =
        error_of(get(format!("{}/model/info?litellm_model_id=nope", p.url())).await).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["param"], "litellm_model_id");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("model id \"nope\" is not served here"),
        "{body}"
    );
}

/// `/health` calls each deployment once, straight (a chat with a few tokens, a completion or an
/// embedding, per `model_info.mode`), and sorts them into healthy and unhealthy endpoints with
/// their shown `litellm_params` and the error; `?model=` and `?model_id=` narrow it; no span is
/// recorded for the probes, and no provider key is shown.
#[tokio::test]
async fn health_calls_each_deployment_and_sorts_them() {
    let up = OpenAiUpstream::start().await;
    let rx = traceway_testkit::otlp::OtlpReceiver::start().await;
    let config = openai_config(
        &up.api_base(),
        "  - model_name: m\n    litellm_params:\n      model: mock/echo\n  - model_name: broken\n    litellm_params:\n      model: mock/x\n      mock_response: error:500\n  - model_name: emb\n    litellm_params:\n      model: mock/e\n    model_info:\n      mode: embedding\n      id: emb-1\n  - model_name: img\n    litellm_params:\n      model: mock/i\n    model_info:\n      mode: image_generation\n  - model_name: slow\n    litellm_params:\n      model: mock/s\n      mock_delay: 3\n    model_info:\n      health_check_timeout: 0.2\nlitellm_settings:\n  callbacks: [\"otel\"]\n",
    );
    let p = common::traced_proxy(&config, &rx, &[]).await;
    let resp = get(format!("{}/health", p.url())).await;
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    assert!(!text.contains("sk-provider-secret"), "{text}");
    let report: Value = serde_json::from_str(&text).unwrap();
    let models = |side: &str| -> Vec<String> {
        let mut m: Vec<String> = report[side]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["model"].as_str().unwrap().to_owned())
            .collect();
        m.sort();
        m
    };
    assert_eq!(
        models("healthy_endpoints"),
        ["mock/e", "mock/echo", "openai/gpt-4o-mini"]
    );
    assert_eq!(
        models("unhealthy_endpoints"),
        ["mock/i", "mock/s", "mock/x"]
    );
    assert_eq!(
        (&report["healthy_count"], &report["unhealthy_count"]),
        (&json!(3), &json!(3))
    );
    let error_of_model = |model: &str| -> String {
        report["unhealthy_endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["model"] == model)
            .unwrap()["error"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert!(
        error_of_model("mock/i").contains("image_generation"),
        "{report}"
    );
    assert!(
        error_of_model("mock/s").contains("health check"),
        "{report}"
    );
    assert!(!error_of_model("mock/x").is_empty());
    let gpt = report["healthy_endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["model"] == "openai/gpt-4o-mini")
        .unwrap();
    assert_eq!(gpt["api_base"], up.api_base());
    // The upstream saw one small chat.
    let seen = up.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path, "/v1/chat/completions");
    assert_eq!(seen[0].body["max_tokens"], 5);
    assert_eq!(seen[0].body["messages"][0]["role"], "user");

    let narrowed: Value = get(format!("{}/health?model=gpt", p.url()))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (&narrowed["healthy_count"], &narrowed["unhealthy_count"]),
        (&json!(1), &json!(0))
    );
    let by_id: Value = get(format!("{}/health?model_id=emb-1", p.url()))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(by_id["healthy_endpoints"][0]["model"], "mock/e");
    assert_eq!(by_id["healthy_count"], 1);
    assert_eq!(up.requests().len(), 2);

    // The probes left no trace; a real call afterwards does.
    assert_eq!(
        http()
            .post(format!("{}/v1/chat/completions", p.url()))
            .json(&chat_body("m"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let tree = common::spans_without(p, &rx, &["sk-provider-secret"]).await;
    assert_eq!(
        tree.render(),
        "Received Proxy Server Request [SERVER]\n  raw_gen_ai_request [CLIENT]"
    );
}

/// A complete answer from a deployment with per-token prices carries its cost in
/// `x-litellm-response-cost`; without prices, or on a stream, the header is absent.
#[tokio::test]
async fn complete_answers_from_priced_deployments_say_their_cost() {
    let p = proxy(
        "model_list:\n  - model_name: priced\n    litellm_params:\n      model: mock/p\n      input_cost_per_token: 0.001\n      output_cost_per_token: 0.002\n  - model_name: free\n    litellm_params:\n      model: mock/f\n",
        &[],
    )
    .await;
    let url = format!("{}/v1/chat/completions", p.url());
    let resp = http()
        .post(&url)
        .json(&chat_body("priced"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let cost: f64 = resp.headers()["x-litellm-response-cost"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let body: Value = resp.json().await.unwrap();
    let usage = &body["usage"];
    let expected = usage["prompt_tokens"].as_f64().unwrap() * 0.001
        + usage["completion_tokens"].as_f64().unwrap() * 0.002;
    assert!(
        expected > 0.0 && (cost - expected).abs() < 1e-12,
        "{cost} vs {expected}"
    );

    let free = http()
        .post(&url)
        .json(&chat_body("free"))
        .send()
        .await
        .unwrap();
    assert_eq!(free.status(), 200);
    assert!(free.headers().get("x-litellm-response-cost").is_none());
    let mut streamed = chat_body("priced");
    streamed["stream"] = json!(true);
    let stream = http().post(&url).json(&streamed).send().await.unwrap();
    assert_eq!(stream.status(), 200);
    assert!(stream.headers().get("x-litellm-response-cost").is_none());
}

/// `/model_group/info` summarises each group from its deployments, as LiteLLM's: providers
/// once each, mode, token limits and prices from `model_info`, rpm/tpm summed; `?model_group=`
/// picks one.
#[tokio::test]
async fn model_group_info_summarises_each_group() {
    let p = proxy(
        "model_list:\n  - model_name: gpt\n    litellm_params:\n      model: openai/gpt-4o\n      api_key: sk-x\n      rpm: 10\n      input_cost_per_token: 0.000002\n      output_cost_per_token: 0.000008\n    model_info:\n      max_input_tokens: 128000\n      max_output_tokens: 16384\n      supports_function_calling: true\n  - model_name: gpt\n    litellm_params:\n      model: azure/gpt-4o\n      api_base: https://example.openai.azure.com\n      api_version: v1\n      api_key: sk-y\n      rpm: 20\n  - model_name: emb\n    litellm_params:\n      model: mock/e\n    model_info:\n      mode: embedding\n",
        &[],
    )
    .await;
    let all: Value = get(format!("{}/model_group/info", p.url()))
        .await
        .json()
        .await
        .unwrap();
    let data = all["data"].as_array().unwrap();
    let gpt = data.iter().find(|g| g["model_group"] == "gpt").unwrap();
    assert_eq!(
        gpt,
        &json!({
            "model_group": "gpt",
            "providers": ["openai", "azure"],
            "mode": "chat",
            "max_input_tokens": 128000,
            "max_output_tokens": 16384,
            "input_cost_per_token": 0.000002,
            "output_cost_per_token": 0.000008,
            "tpm": null,
            "rpm": 30,
            "supports_function_calling": true,
            "supports_parallel_function_calling": false,
            "supports_vision": false
        })
    );
    let emb = data.iter().find(|g| g["model_group"] == "emb").unwrap();
    assert_eq!(
        (&emb["mode"], &emb["providers"]),
        (&json!("embedding"), &json!(["mock"]))
    );
    let one: Value = get(format!("{}/model_group/info?model_group=emb", p.url()))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(one["data"].as_array().unwrap().len(), 1);
    assert_eq!(one["data"][0]["model_group"], "emb");
}

/// As LiteLLM does, an `openai/` entry that names no `api_base` or `organization` takes them
/// from `OPENAI_BASE_URL` (before `OPENAI_API_BASE`) and `OPENAI_ORGANIZATION`, here from the
/// config's `environment_variables`; an entry's own `organization` wins over the variable.
#[tokio::test]
async fn openai_base_and_organization_come_from_the_environment_when_left_out() {
    let up = OpenAiUpstream::start().await;
    let cfg = format!(
        "model_list:\n  - model_name: gpt\n    litellm_params:\n      model: openai/gpt-4o-mini\n  - model_name: own-org\n    litellm_params:\n      model: openai/gpt-4o-mini\n      organization: org-own\nenvironment_variables:\n  OPENAI_BASE_URL: {}\n  OPENAI_API_BASE: http://127.0.0.1:9/v1\n  OPENAI_ORGANIZATION: org-from-env\n  OPENAI_API_KEY: sk-env-key\n",
        up.api_base()
    );
    let p = proxy(&cfg, &[]).await;
    for (model, org) in [("gpt", "org-from-env"), ("own-org", "org-own")] {
        let resp = http()
            .post(format!("{}/v1/chat/completions", p.url()))
            .json(&chat_body(model))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
        let sent = up.last_request();
        assert_eq!(sent.path, "/v1/chat/completions");
        assert_eq!(sent.headers["openai-organization"], org);
        assert_eq!(sent.headers["authorization"], "Bearer sk-env-key");
        assert!(sent.body.get("organization").is_none());
    }
}
