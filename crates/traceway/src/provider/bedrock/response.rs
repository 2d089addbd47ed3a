//! Bedrock responses → OpenAI responses.

use super::JSON_TOOL;
use super::request::{EmbeddingFamily, embedding_family};
use super::wire::{
    CohereEmbeddingResponse, ContentBlock, ConverseResponse, KnownBlock, TitanEmbeddingResponse,
    TokenUsage,
};
use crate::error::Error;
use crate::provider::openai::invalid;
use crate::types::{
    ChatChoice, ChatCompletionResponse, ChatMessage, Embedding, EmbeddingResponse, EmbeddingUsage,
    Extra, FunctionCall, MessageContent, PromptTokensDetails, Role, ToolCall, Usage, unix_now,
};
use serde_json::Value;

/// Bedrock's `stopReason` as an OpenAI `finish_reason`.
pub(crate) fn finish_reason(stop_reason: &str) -> String {
    match stop_reason {
        "end_turn" | "stop_sequence" => "stop",
        "max_tokens" | "model_context_window_exceeded" => "length",
        "tool_use" => "tool_calls",
        "guardrail_intervened" | "content_filtered" => "content_filter",
        other => other,
    }
    .to_owned()
}

/// Bedrock usage as OpenAI usage. Bedrock's `inputTokens` leaves out the tokens read from and
/// written to the prompt cache; OpenAI's `prompt_tokens` counts every input token, so the cache
/// counts are added in and also reported on their own.
pub(crate) fn usage(u: &TokenUsage) -> Usage {
    let read = u.cache_read_input_tokens.unwrap_or(0);
    let write = u.cache_write_input_tokens.unwrap_or(0);
    let prompt = u.input_tokens + read + write;
    let details = (u.cache_read_input_tokens.is_some() || u.cache_write_input_tokens.is_some())
        .then(|| PromptTokensDetails {
            cached_tokens: Some(read),
            cache_creation_tokens: Some(write),
            extra: Extra::new(),
        });
    Usage {
        prompt_tokens: prompt,
        completion_tokens: u.output_tokens,
        total_tokens: prompt + u.output_tokens,
        prompt_tokens_details: details,
        completion_tokens_details: None,
        extra: Extra::new(),
    }
}

/// A fresh OpenAI-style response id (Bedrock's responses carry none).
pub(crate) fn new_id() -> String {
    format!("chatcmpl-{}", uuid::Uuid::new_v4().simple())
}

/// A Converse response body as an OpenAI chat completion.
pub(crate) fn chat(
    provider: &str,
    model: &str,
    body: &[u8],
) -> Result<ChatCompletionResponse, Error> {
    let r: ConverseResponse =
        serde_json::from_slice(body).map_err(|e| invalid(provider, "a response", e))?;
    let blocks = r
        .output
        .and_then(|o| o.message)
        .map(|m| m.content)
        .ok_or_else(|| invalid(provider, "a response", "it has no output.message"))?;
    let mut text = String::new();
    let mut reasoning = String::new();
    let mut calls = Vec::new();
    let mut json_answer = false;
    for block in blocks {
        match block {
            ContentBlock::Known(KnownBlock::Text { text: t }) => text.push_str(&t),
            ContentBlock::Known(KnownBlock::ToolUse { tool_use }) if tool_use.name == JSON_TOOL => {
                // The forced JSON-mode tool: its input is the answer.
                json_answer = true;
                text.push_str(&tool_use.input.to_string());
            }
            ContentBlock::Known(KnownBlock::ToolUse { tool_use }) => calls.push(ToolCall {
                id: tool_use.tool_use_id,
                kind: "function".into(),
                function: FunctionCall {
                    name: tool_use.name,
                    arguments: tool_use.input.to_string(),
                },
                extra: Extra::new(),
            }),
            ContentBlock::Known(KnownBlock::Reasoning { reasoning: rc }) => {
                if let Some(t) = rc.reasoning_text {
                    reasoning.push_str(&t.text);
                }
            }
            ContentBlock::Unknown(_) => {}
        }
    }
    let finish = match r.stop_reason.as_deref() {
        Some("tool_use") if json_answer && calls.is_empty() => "stop".to_owned(),
        Some(s) => finish_reason(s),
        None => "stop".to_owned(),
    };
    let mut extra = Extra::new();
    if !reasoning.is_empty() {
        extra.insert("reasoning_content".into(), Value::String(reasoning));
    }
    let content = if text.is_empty() && !calls.is_empty() {
        None
    } else {
        Some(MessageContent::Text(text))
    };
    Ok(ChatCompletionResponse {
        id: new_id(),
        object: "chat.completion".into(),
        created: unix_now(),
        model: model.to_owned(),
        choices: vec![ChatChoice {
            index: 0,
            message: ChatMessage {
                role: Role::Assistant,
                content,
                name: None,
                tool_calls: (!calls.is_empty()).then_some(calls),
                tool_call_id: None,
                extra,
            },
            finish_reason: Some(finish),
            logprobs: None,
            extra: Extra::new(),
        }],
        usage: Some(r.usage.as_ref().map(usage).unwrap_or_default()),
        system_fingerprint: None,
        extra: Extra::new(),
    })
}

/// An InvokeModel embeddings body as an OpenAI embeddings response.
pub(crate) fn embeddings(
    provider: &str,
    model_id: &str,
    body: &[u8],
) -> Result<EmbeddingResponse, Error> {
    let (data, tokens) = match embedding_family(model_id) {
        Some(EmbeddingFamily::Titan) => {
            let r: TitanEmbeddingResponse = serde_json::from_slice(body)
                .map_err(|e| invalid(provider, "an embeddings response", e))?;
            (
                vec![Embedding::new(0, r.embedding)],
                r.input_text_token_count,
            )
        }
        Some(EmbeddingFamily::Cohere) => {
            let r: CohereEmbeddingResponse = serde_json::from_slice(body)
                .map_err(|e| invalid(provider, "an embeddings response", e))?;
            let vectors = r.embeddings.0;
            // Cohere on Bedrock reports no token count in the body.
            (
                vectors
                    .into_iter()
                    .enumerate()
                    .map(|(i, v)| Embedding::new(i as u32, v))
                    .collect(),
                0,
            )
        }
        None => {
            return Err(invalid(
                provider,
                "an embeddings response",
                "the model is not an embedding model",
            ));
        }
    };
    Ok(EmbeddingResponse {
        object: "list".into(),
        data,
        model: model_id.to_owned(),
        usage: Some(EmbeddingUsage {
            prompt_tokens: tokens,
            total_tokens: tokens,
            extra: Extra::new(),
        }),
        extra: Extra::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_tools_reasoning_and_cache_usage() {
        let body = br#"{"output":{"message":{"role":"assistant","content":[
            {"reasoningContent":{"reasoningText":{"text":"think","signature":"s"}}},
            {"text":"Let me check."},
            {"toolUse":{"toolUseId":"tooluse_1","name":"get_weather","input":{"city":"Paris"}}}]}},
            "stopReason":"tool_use",
            "usage":{"inputTokens":10,"outputTokens":5,"totalTokens":35,"cacheReadInputTokens":20,"cacheWriteInputTokens":0}}"#;
        let r = chat("bedrock", "m", body).unwrap();
        let c = &r.choices[0];
        assert_eq!(c.finish_reason.as_deref(), Some("tool_calls"));
        assert_eq!(c.message.text(), "Let me check.");
        assert_eq!(c.message.extra["reasoning_content"], "think");
        let call = &c.message.tool_calls.as_ref().unwrap()[0];
        assert_eq!(call.function.arguments, r#"{"city":"Paris"}"#);
        let u = r.usage.unwrap();
        assert_eq!(
            (u.prompt_tokens, u.completion_tokens, u.total_tokens),
            (30, 5, 35)
        );
        assert_eq!(u.prompt_tokens_details.unwrap().cached_tokens, Some(20));
    }

    #[test]
    fn json_tool_becomes_text_and_malformed_bodies_are_invalid() {
        let body = br#"{"output":{"message":{"role":"assistant","content":[
            {"toolUse":{"toolUseId":"t","name":"json_tool_call","input":{"a":"b"}}}]}},
            "stopReason":"tool_use","usage":{"inputTokens":1,"outputTokens":1,"totalTokens":2}}"#;
        let r = chat("bedrock", "m", body).unwrap();
        assert_eq!(r.choices[0].message.text(), r#"{"a":"b"}"#);
        assert_eq!(r.choices[0].finish_reason.as_deref(), Some("stop"));
        assert!(r.choices[0].message.tool_calls.is_none());
        for bad in [&b"{"[..], b"{\"stopReason\":\"end_turn\"}", b"[]"] {
            let e = chat("bedrock", "m", bad).unwrap_err();
            assert_eq!(e.status(), 502);
        }
    }
}
