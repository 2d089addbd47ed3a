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

/// The chat requests that ask for what `r` asks: one per prompt, each prompt as one user
/// message (LiteLLM sends a list of prompts to a chat model one by one).
pub fn requests(r: &CompletionRequest) -> Result<Vec<ChatCompletionRequest>, Error> {
    let texts: Vec<&str> = match &r.prompt {
        Value::String(s) => vec![s.as_str()],
        Value::Array(items) if items.is_empty() => {
            return Err(Error::bad_request(
                "prompt is empty; give the text to complete",
                Some("prompt"),
            ));
        }
        Value::Array(items) => match items.iter().map(Value::as_str).collect::<Option<Vec<_>>>() {
            Some(texts) => texts,
            None => {
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
    if texts.len() > 1 && r.stream == Some(true) {
        return Err(Error::bad_request(
            "this model streams one prompt per request (it is served through chat); send the prompts one by one, or without \"stream\"",
            Some("prompt"),
        ));
    }
    Ok(texts.into_iter().map(|text| request(r, text)).collect())
}

/// The chat request for one prompt `text` of `r`.
fn request(r: &CompletionRequest, text: &str) -> ChatCompletionRequest {
    let text = text.to_owned();
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
    chat
}

/// The chat answers to several prompts as one text completion: the choices in prompt order,
/// numbered on (prompt `i`'s `n` choices are `i * n` …), the usage summed; id, model and the
/// rest from the first answer.
pub fn merged(answers: Vec<ChatCompletionResponse>) -> CompletionResponse {
    let mut out: Option<CompletionResponse> = None;
    for answer in answers {
        let next = response(answer);
        match &mut out {
            None => out = Some(next),
            Some(all) => {
                let offset = u32::try_from(all.choices.len()).unwrap_or(u32::MAX);
                all.choices.extend(next.choices.into_iter().map(|mut c| {
                    c.index = c.index.saturating_add(offset);
                    c
                }));
                all.usage = match (all.usage.take(), next.usage) {
                    (Some(mut a), Some(b)) => {
                        a.prompt_tokens += b.prompt_tokens;
                        a.completion_tokens += b.completion_tokens;
                        a.total_tokens += b.total_tokens;
                        Some(a)
                    }
                    (a, b) => a.or(b),
                };
            }
        }
    }
    out.unwrap_or_else(|| completion(Head::default(), Vec::new()))
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
        let chats = requests(&completion(json!({
            "model": "claude", "prompt": ["Say hi"], "max_tokens": 7, "temperature": 0,
            "top_p": 0.5, "n": 2, "stop": ["END"], "seed": 3, "user": "u1", "stream": true,
            "stream_options": {"include_usage": true}, "echo": true, "logprobs": 2,
            "suffix": "x", "best_of": 3, "metadata": {"k": "v"}, "top_k": 4
        })))
        .unwrap();
        let [chat] = chats.as_slice() else {
            panic!("one prompt, one chat: {chats:?}")
        };
        let v = serde_json::to_value(chat).unwrap();
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
            (json!([1, 2, 3]), "token-array"),
            (json!(["a", 2]), "token-array"),
            (json!([[1, 2]]), "token-array"),
            (json!(7), "string or a list"),
        ] {
            let e = requests(&completion(json!({"model": "m", "prompt": prompt}))).unwrap_err();
            assert_eq!(e.status(), 400);
            assert_eq!(e.param.as_deref(), Some("prompt"));
            assert!(e.message.contains(says), "{prompt}: {}", e.message);
        }
    }

    #[test]
    fn several_prompts_become_one_chat_each_and_their_answers_one_completion() {
        let chats = requests(&completion(
            json!({"model": "m", "prompt": ["one", "two"], "max_tokens": 3}),
        ))
        .unwrap();
        let texts: Vec<Value> = chats
            .iter()
            .map(|c| serde_json::to_value(c).unwrap()["messages"][0]["content"].clone())
            .collect();
        assert_eq!(texts, [json!("one"), json!("two")]);
        assert!(chats.iter().all(|c| c.max_tokens == Some(3)));
        let e = requests(&completion(
            json!({"model": "m", "prompt": ["one", "two"], "stream": true}),
        ))
        .unwrap_err();
        assert_eq!((e.status(), e.param.as_deref()), (400, Some("prompt")));
        assert!(
            e.message.contains("one prompt per request"),
            "{}",
            e.message
        );

        let answer = |id: &str, texts: &[&str], tokens: u64| -> ChatCompletionResponse {
            let choices: Vec<Value> = texts
                .iter()
                .enumerate()
                .map(|(i, t)| json!({"index": i, "message": {"role": "assistant", "content": t}, "finish_reason": "stop"}))
                .collect();
            serde_json::from_value(json!({
                "id": id, "object": "chat.completion", "created": 5, "model": "claude-x",
                "choices": choices,
                "usage": {"prompt_tokens": tokens, "completion_tokens": 1, "total_tokens": tokens + 1}
            }))
            .unwrap()
        };
        let v = serde_json::to_value(merged(vec![
            answer("a", &["1a", "1b"], 2),
            answer("b", &["2a", "2b"], 3),
        ]))
        .unwrap();
        assert_eq!(v["id"], "a");
        let choices: Vec<(Value, Value)> = v["choices"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| (c["index"].clone(), c["text"].clone()))
            .collect();
        assert_eq!(
            choices,
            [
                (json!(0), json!("1a")),
                (json!(1), json!("1b")),
                (json!(2), json!("2a")),
                (json!(3), json!("2b"))
            ]
        );
        assert_eq!(
            v["usage"],
            json!({"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7})
        );
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
