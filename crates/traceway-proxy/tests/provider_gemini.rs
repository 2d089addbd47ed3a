//! End-to-end: `gemini/` through the proxy against the testkit's Gemini upstream — OpenAI-shaped
//! answers (plain, streamed, function calls, embeddings, errors, a truncated stream) and the span
//! tree of each call with `gen_ai.provider.name = gcp.gemini`, exported over real OTLP.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{
    OTEL_SETTINGS, http, provider_config, shape, spans_without, sse_events, traced_proxy,
};
use serde_json::{Value, json};
use traceway_testkit::gemini_upstream::{self as fixtures, GeminiUpstream};
use traceway_testkit::mock_upstream::Reply;
use traceway_testkit::otlp::{OtlpReceiver, Status};

const KEY: &str = "AIza-proxy-gemini-secret";
const TREE: &str = "Received Proxy Server Request [SERVER]\n  raw_gen_ai_request [CLIENT]";

fn config(up: &GeminiUpstream) -> String {
    provider_config(
        "flash",
        "gemini/gemini-2.5-flash",
        &up.api_base(),
        Some(KEY),
        &[],
        OTEL_SETTINGS,
    )
}

fn chat() -> Value {
    json!({"model": "flash", "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_are_openai_shaped_and_each_call_is_one_traced_tree() {
    let rx = OtlpReceiver::start().await;
    let up = GeminiUpstream::start().await;
    let p = traced_proxy(&config(&up), &rx, &[]).await;
    let base = p.url();

    let r: Value = http()
        .post(format!("{base}/v1/chat/completions"))
        .json(&chat())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["object"], "chat.completion");
    assert_eq!(
        r["choices"][0]["message"]["content"],
        "Hello! How can I help you today?"
    );
    assert_eq!(
        r["usage"]["completion_tokens_details"]["reasoning_tokens"],
        6
    );
    assert_eq!(up.last_request().header("x-goog-api-key"), Some(KEY));

    let mut body = chat();
    body["stream"] = json!(true);
    let events = sse_events(
        &http()
            .post(format!("{base}/v1/chat/completions"))
            .json(&body)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    );
    assert_eq!(events.last().unwrap(), "[DONE]");
    let text: String = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str::<Value>(e).unwrap())
        .filter_map(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(text, "Hello! How can I help?");

    let mut body = chat();
    body["tools"] = json!([{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"location": {"type": "string"}}}}}]);
    let r: Value = http()
        .post(format!("{base}/v1/chat/completions"))
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(
        r["choices"][0]["message"]["tool_calls"][0]["function"]["name"],
        "get_weather"
    );

    let e: Value = http()
        .post(format!("{base}/v1/embeddings"))
        .json(&json!({"model": "flash", "input": ["one", "two"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(e["object"], "list");
    assert_eq!(e["data"].as_array().unwrap().len(), 2);
    assert_eq!(e["data"][1]["object"], "embedding");

    let tree = spans_without(p, &rx, &[KEY]).await;
    let mut roots = tree.roots();
    roots.sort_by_key(|r| r.start_unix_nanos);
    assert_eq!(roots.len(), 4);
    for r in &roots {
        assert_eq!(shape(&tree, r), TREE);
        assert_eq!(r.status, Status::Unset);
        assert_eq!(r.attr_str("gen_ai.provider.name"), Some("gcp.gemini"));
        assert_eq!(r.attr_str("gen_ai.request.model"), Some("gemini-2.5-flash"));
        let client = tree.children_of(r)[0];
        assert_eq!(client.attr_str("gen_ai.provider.name"), Some("gcp.gemini"));
        assert_eq!(
            client.attr_i64("server.port"),
            Some(i64::from(up.addr().port()))
        );
    }
    let plain = roots[0];
    assert_eq!(
        plain.attr_str("gen_ai.response.id"),
        Some("mBPraJyoFuiJ1dkP3beEkQQ")
    );
    assert_eq!(
        plain.attr_str("gen_ai.response.model"),
        Some("gemini-2.5-flash")
    );
    assert_eq!(plain.attr_i64("gen_ai.usage.input_tokens"), Some(5));
    assert_eq!(plain.attr_i64("gen_ai.usage.output_tokens"), Some(15));
    assert_eq!(plain.attr_i64("gen_ai.usage.total_tokens"), Some(20));
    assert_eq!(
        plain.attr_i64("gen_ai.usage.reasoning.output_tokens"),
        Some(6)
    );
    assert_eq!(
        plain.attr_str("gen_ai.completion.0.finish_reason"),
        Some("stop")
    );
    let stream = roots[1];
    assert_eq!(stream.attr_i64("gen_ai.usage.output_tokens"), Some(11));
    assert_eq!(
        stream.attr_str("gen_ai.completion.0.content"),
        Some("Hello! How can I help?")
    );
    assert_eq!(
        roots[2].attr_str("gen_ai.completion.0.tool_calls.0.name"),
        Some("get_weather")
    );
    assert_eq!(
        roots[3].attr_str("gen_ai.operation.name"),
        Some("embeddings")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_openai_errors_on_failed_spans() {
    let rx = OtlpReceiver::start().await;
    let up = GeminiUpstream::start().await;
    let p = traced_proxy(&config(&up), &rx, &[]).await;
    let url = format!("{}/v1/chat/completions", p.url());
    let cases: [(Reply, u16, &str, &str); 3] = [
        (
            Reply::error(429, fixtures::ERROR_429),
            429,
            "rate_limited",
            "exceeded your current quota",
        ),
        (
            Reply::error(400, fixtures::ERROR_400_API_KEY),
            401,
            "auth_error",
            "API key not valid",
        ),
        (
            Reply::error(503, fixtures::ERROR_503),
            503,
            "upstream_error",
            "overloaded",
        ),
    ];
    for (reply, status, _, text) in &cases {
        up.push(reply.clone());
        let resp = http().post(&url).json(&chat()).send().await.unwrap();
        assert_eq!(resp.status(), *status);
        if *status == 429 {
            assert_eq!(
                resp.headers()["retry-after"],
                "37",
                "Google's RetryInfo becomes retry-after"
            );
        }
        let body: Value = resp.json().await.unwrap();
        assert!(body["error"]["message"].as_str().unwrap().contains(text));
    }
    // A stream cut before it finished: the client gets the chunks, then an error event.
    up.push(Reply::sse_truncated(fixtures::STREAM_GENERATE_CONTENT, 2));
    let mut body = chat();
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
    let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert!(
        last["error"]["message"]
            .as_str()
            .unwrap()
            .contains("closed the stream before it finished")
    );

    let tree = spans_without(p, &rx, &[KEY]).await;
    let mut roots = tree.roots();
    roots.sort_by_key(|r| r.start_unix_nanos);
    assert_eq!(roots.len(), 4);
    for (root, (_, _, class, _)) in roots.iter().zip(&cases) {
        assert!(matches!(root.status, Status::Error { .. }));
        assert_eq!(root.attr_str("error.type"), Some(*class));
        assert_eq!(root.attr_str("error.llm_provider"), Some("gemini"));
    }
    let broken = roots[3];
    assert_eq!(broken.attr_str("error.type"), Some("invalid_response"));
    assert_eq!(
        broken.attr_str("gen_ai.completion.0.content"),
        Some("Hello! How can")
    );
}
