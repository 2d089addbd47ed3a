//! Text completions for chat-only providers (Anthropic, Gemini, Bedrock, Cohere), as LiteLLM
//! serves them: the prompt goes up as one user message, and the chat answer (or each stream
//! chunk) comes back in the text-completion shape.

use crate::error::Error;
use crate::types::{
    ChatCompletionChunk, ChatCompletionRequest, ChatCompletionResponse, ChatMessage,
    CompletionChoice, CompletionRequest, CompletionResponse, Extra, Role, Usage,
};
use serde_json::Value;

/// Completion-only fields with no chat counterpart (`logprobs` is a number here and a flag
/// in chat): dropped rather than sent where they would mean something else or be refused.
const COMPLETION_ONLY: &[&str] = &["echo", "suffix", "best_of", "logprobs"];

/// The chat request that asks for what `r` asks: its prompt as one user message.
pub fn request(r: &CompletionRequest) -> Result<ChatCompletionRequest, Error> {
    let text = match &r.prompt {
        Value::String(s) => s.clone(),
        Value::Array(items) => match items.as_slice() {
            [Value::String(s)] => s.clone(),
            [] => {
                return Err(Error::bad_request(
                    "prompt is empty; give the text to complete",
                    Some("prompt"),
                ));
            }
            [Value::String(_), ..] => {
                return Err(Error::bad_request(
                    "this model answers one prompt per request (it is served through chat); send the prompts one by one",
                    Some("prompt"),
                ));
            }
            _ => {
                return Err(Error::bad_request(
                    "token-array prompts need a provider with a text-completion endpoint; send the prompt as text",
                    Some("prompt"),
                ));
            }
        },
        _ => {
            return Err(Error::bad_request(
                "prompt must be a string or a list of strings",
                Some("prompt"),
            ));
        }
    };
    let mut chat =
        ChatCompletionRequest::new(r.model.clone(), vec![ChatMessage::new(Role::User, text)]);
    chat.stream = r.stream;
    chat.stream_options = r.stream_options.clone();
    chat.max_tokens = r.max_tokens;
    chat.temperature = r.temperature;
    chat.top_p = r.top_p;
    chat.n = r.n;
    chat.stop = r.stop.clone();
    chat.seed = r.seed;
    chat.user = r.user.clone();
    chat.extra = r
        .extra
        .iter()
        .filter(|(k, _)| !COMPLETION_ONLY.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Ok(chat)
}

/// A chat answer in the text-completion shape: each choice's message text as its `text`.
pub fn response(c: ChatCompletionResponse) -> CompletionResponse {
    let choices = c
        .choices
        .into_iter()
        .map(|ch| choice(ch.message.text(), ch.index, ch.finish_reason, ch.logprobs))
        .collect();
    let head = (
        c.id,
        c.created,
        c.model,
        c.usage,
        c.system_fingerprint,
        c.extra,
    );
    completion(head, choices)
}

/// A chat stream chunk in the text-completion shape: each delta's content as `text`.
pub fn chunk(c: ChatCompletionChunk) -> CompletionResponse {
    let choices = c
        .choices
        .into_iter()
        .map(|ch| {
            let text = ch.delta.content.unwrap_or_default();
            choice(text, ch.index, ch.finish_reason, ch.logprobs)
        })
        .collect();
    let head = (
        c.id,
        c.created,
        c.model,
        c.usage,
        c.system_fingerprint,
        c.extra,
    );
    completion(head, choices)
}

/// What a chat answer and a chat chunk share: id, created, model, usage, fingerprint, extras.
type Head = (String, i64, String, Option<Usage>, Option<String>, Extra);

fn completion(
    (id, created, model, usage, system_fingerprint, extra): Head,
    choices: Vec<CompletionChoice>,
) -> CompletionResponse {
    CompletionResponse {
        id,
        object: "text_completion".to_owned(),
        created,
        model,
        choices,
        usage,
        system_fingerprint,
        extra,
    }
}

fn choice(
    text: String,
    index: u32,
    finish_reason: Option<String>,
    logprobs: Option<Value>,
) -> CompletionChoice {
    CompletionChoice {
        text,
        index,
        finish_reason,
        logprobs,
        extra: Extra::new(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn completion(body: Value) -> CompletionRequest {
        serde_json::from_value(body).unwrap()
    }

    #[test]
    fn the_prompt_becomes_one_user_message_and_the_sampling_fields_follow() {
        let chat = request(&completion(json!({
            "model": "claude", "prompt": ["Say hi"], "max_tokens": 7, "temperature": 0,
            "top_p": 0.5, "n": 2, "stop": ["END"], "seed": 3, "user": "u1", "stream": true,
            "stream_options": {"include_usage": true}, "echo": true, "logprobs": 2,
            "suffix": "x", "best_of": 3, "metadata": {"k": "v"}, "top_k": 4
        })))
        .unwrap();
        let v = serde_json::to_value(&chat).unwrap();
        assert_eq!(
            v["messages"],
            json!([{"role": "user", "content": "Say hi"}])
        );
        for (k, want) in [
            ("max_tokens", json!(7)),
            ("temperature", json!(0.0)),
            ("top_p", json!(0.5)),
            ("n", json!(2)),
            ("stop", json!(["END"])),
            ("seed", json!(3)),
            ("user", json!("u1")),
            ("stream", json!(true)),
            ("stream_options", json!({"include_usage": true})),
            ("metadata", json!({"k": "v"})),
            ("top_k", json!(4)),
        ] {
            assert_eq!(v[k], want, "{k}");
        }
        for k in COMPLETION_ONLY {
            assert!(v.get(*k).is_none(), "{k} kept");
        }
    }

    #[test]
    fn prompts_a_chat_cannot_carry_are_refused_naming_prompt() {
        for (prompt, says) in [
            (json!([]), "empty"),
            (json!(["a", "b"]), "one prompt per request"),
            (json!([1, 2, 3]), "token-array"),
            (json!([[1, 2]]), "token-array"),
            (json!(7), "string or a list"),
        ] {
            let e = request(&completion(json!({"model": "m", "prompt": prompt}))).unwrap_err();
            assert_eq!(e.status(), 400);
            assert_eq!(e.param.as_deref(), Some("prompt"));
            assert!(e.message.contains(says), "{prompt}: {}", e.message);
        }
    }

    #[test]
    fn answers_and_chunks_take_the_text_completion_shape() {
        let chat: ChatCompletionResponse = serde_json::from_value(json!({
            "id": "msg_1", "object": "chat.completion", "created": 5, "model": "claude-x",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi!"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
        }))
        .unwrap();
        let v = serde_json::to_value(response(chat)).unwrap();
        assert_eq!(v["object"], "text_completion");
        assert_eq!(v["id"], "msg_1");
        assert_eq!(v["choices"][0]["text"], "Hi!");
        assert_eq!(v["choices"][0]["finish_reason"], "stop");
        assert_eq!(v["usage"]["total_tokens"], 5);
        let c: ChatCompletionChunk = serde_json::from_value(json!({
            "id": "msg_1", "object": "chat.completion.chunk", "created": 5, "model": "claude-x",
            "choices": [{"index": 0, "delta": {"content": "Hi"}, "finish_reason": null}]
        }))
        .unwrap();
        let v = serde_json::to_value(chunk(c)).unwrap();
        assert_eq!(v["object"], "text_completion");
        assert_eq!(v["choices"][0]["text"], "Hi");
        let role_only: ChatCompletionChunk = serde_json::from_value(json!({
            "id": "msg_1", "choices": [{"index": 0, "delta": {"role": "assistant"}}]
        }))
        .unwrap();
        assert_eq!(chunk(role_only).choices[0].text, "");
    }
}
