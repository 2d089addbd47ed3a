//! Reading bodies into the wire types and writing them out again (what the gateway does with a
//! request and with an answer), against doing the same with a `serde_json::Value` (one generic
//! pass): a chat request offering 24 tools with JSON-schema parameters, a multimodal chat
//! request, and an embeddings response of 8 vectors of 1,536 floats. Run with
//! `cargo bench -p traceway --bench parse`; results go in BENCHMARKS.md.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::hint::black_box;
use std::time::Instant;
use traceway::types::{ChatCompletionRequest, EmbeddingResponse};

fn tools_request() -> String {
    let tools: Vec<Value> = (0..24)
        .map(|i| {
            json!({"type": "function", "function": {
                "name": format!("tool_{i}"),
                "description": "Looks something up in the company's records and returns it.",
                "parameters": {"type": "object", "properties": {
                    "query": {"type": "string", "description": "what to look for"},
                    "limit": {"type": "integer", "minimum": 1, "maximum": 100},
                    "filters": {"type": "array", "items": {"type": "string"}}
                }, "required": ["query"]},
                "strict": true
            }})
        })
        .collect();
    json!({"model": "gpt-4o", "messages": [
        {"role": "system", "content": "You are a helpful agent."},
        {"role": "user", "content": "Find last quarter's invoices over 10k."}
    ], "tools": tools, "tool_choice": "auto", "temperature": 0.2})
    .to_string()
}

fn multimodal_request() -> String {
    let parts: Vec<Value> = (0..8)
        .flat_map(|i| {
            [
                json!({"type": "text", "text": format!("Page {i}: what does this chart show?")}),
                json!({"type": "image_url", "image_url": {"url": format!("https://example.com/{i}.png"), "detail": "low"}}),
            ]
        })
        .collect();
    json!({"model": "gpt-4o", "messages": [{"role": "user", "content": parts}]}).to_string()
}

fn embeddings_response() -> String {
    let data: Vec<Value> = (0..8)
        .map(|i| {
            let v: Vec<f64> = (0..1536).map(|j| ((i * 1536 + j) as f64).sin()).collect();
            json!({"object": "embedding", "index": i, "embedding": v})
        })
        .collect();
    json!({"object": "list", "data": data, "model": "text-embedding-3-small",
        "usage": {"prompt_tokens": 64, "total_tokens": 64}})
    .to_string()
}

/// Microseconds per read (and write, with `write`) of `text`, the best of 5 rounds of `n`.
fn per_pass<T: DeserializeOwned + Serialize>(text: &str, n: u32, write: bool) -> f64 {
    let pass = || {
        let typed = serde_json::from_str::<T>(black_box(text)).unwrap();
        if write {
            black_box(serde_json::to_vec(&typed).unwrap());
        }
        black_box(typed);
    };
    for _ in 0..n / 10 {
        pass();
    }
    (0..5)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..n {
                pass();
            }
            t.elapsed().as_secs_f64() * 1e6 / f64::from(n)
        })
        .fold(f64::INFINITY, f64::min)
}

fn row<T: DeserializeOwned + Serialize>(name: &str, text: &str, n: u32) {
    let read = per_pass::<T>(text, n, false);
    let both = per_pass::<T>(text, n, true);
    let value_read = per_pass::<Value>(text, n, false);
    let value_both = per_pass::<Value>(text, n, true);
    println!(
        "| {name} | {} | {read:.1} / {both:.1} | {value_read:.1} / {value_both:.1} | {:.2} |",
        text.len(),
        both / value_both
    );
}

fn main() {
    println!(
        "| body | bytes | µs per read / read + write, typed | the same, `Value` | typed / `Value`, read + write |"
    );
    println!("|---|---|---|---|---|");
    row::<ChatCompletionRequest>("chat request, 24 tools", &tools_request(), 5_000);
    row::<ChatCompletionRequest>(
        "chat request, 16 content parts",
        &multimodal_request(),
        20_000,
    );
    row::<EmbeddingResponse>(
        "embeddings response, 8 × 1,536",
        &embeddings_response(),
        200,
    );
}
