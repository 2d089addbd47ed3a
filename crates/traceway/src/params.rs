//! Range checks of a request's sampling parameters, made before any upstream is called.
//!
//! The bounds are the widest any supported provider documents (OpenAI's, in practice), so a
//! value one upstream accepts is never refused here; what falls outside them (a temperature of
//! 1e308, `n: 0`, a logit bias of 1000) is a caller's mistake that would otherwise cost an
//! upstream round trip, or reach a provider that does not check.

use crate::error::Error;
use crate::provider::Request;
use serde_json::Value;

/// Sampling temperature.
const TEMPERATURE: (f64, f64) = (0.0, 2.0);
/// Nucleus sampling mass.
const TOP_P: (f64, f64) = (0.0, 1.0);
/// Presence and frequency penalties.
const PENALTY: (f64, f64) = (-2.0, 2.0);
/// One logit bias value.
const LOGIT_BIAS: (f64, f64) = (-100.0, 100.0);
/// Choices per request.
const MAX_N: u32 = 128;
/// Top log probabilities per token.
const MAX_TOP_LOGPROBS: u32 = 20;

/// Refuses a request whose parameters fall outside the documented ranges, naming the field.
pub fn check(request: &Request) -> Result<(), Error> {
    match request {
        Request::Chat(r) => {
            range("temperature", r.temperature, TEMPERATURE)?;
            range("top_p", r.top_p, TOP_P)?;
            range("presence_penalty", r.presence_penalty, PENALTY)?;
            range("frequency_penalty", r.frequency_penalty, PENALTY)?;
            choices(r.n)?;
            positive("max_tokens", r.max_tokens)?;
            positive("max_completion_tokens", r.max_completion_tokens)?;
            if let Some(top) = r.top_logprobs
                && top > MAX_TOP_LOGPROBS
            {
                return Err(Error::bad_request(
                    format!("top_logprobs is {top}; it must be between 0 and {MAX_TOP_LOGPROBS}"),
                    Some("top_logprobs"),
                ));
            }
            if let Some(bias) = &r.logit_bias {
                logit_bias(bias)?;
            }
            Ok(())
        }
        Request::Completion(r) => {
            range("temperature", r.temperature, TEMPERATURE)?;
            range("top_p", r.top_p, TOP_P)?;
            choices(r.n)?;
            positive("max_tokens", r.max_tokens)
        }
        Request::Embedding(r) => match r.dimensions {
            Some(0) => Err(Error::bad_request(
                "dimensions is 0; it must be at least 1",
                Some("dimensions"),
            )),
            _ => Ok(()),
        },
    }
}

fn range(name: &str, value: Option<f64>, (lo, hi): (f64, f64)) -> Result<(), Error> {
    match value {
        Some(v) if !(lo..=hi).contains(&v) => Err(Error::bad_request(
            format!("{name} is {v}; it must be between {lo} and {hi}"),
            Some(name),
        )),
        _ => Ok(()),
    }
}

fn choices(n: Option<u32>) -> Result<(), Error> {
    match n {
        Some(n) if n == 0 || n > MAX_N => Err(Error::bad_request(
            format!("n is {n}; it must be between 1 and {MAX_N}"),
            Some("n"),
        )),
        _ => Ok(()),
    }
}

fn positive(name: &str, value: Option<u64>) -> Result<(), Error> {
    match value {
        Some(0) => Err(Error::bad_request(
            format!("{name} is 0; it must be at least 1"),
            Some(name),
        )),
        _ => Ok(()),
    }
}

fn logit_bias(bias: &Value) -> Result<(), Error> {
    let Some(map) = bias.as_object() else {
        return Err(Error::bad_request(
            "logit_bias must be an object mapping token ids to numbers",
            Some("logit_bias"),
        ));
    };
    let (lo, hi) = LOGIT_BIAS;
    for (token, v) in map {
        match v.as_f64() {
            Some(b) if (lo..=hi).contains(&b) => {}
            _ => {
                return Err(Error::bad_request(
                    format!(
                        "logit_bias for token {token} is {v}; it must be a number between {lo} and {hi}"
                    ),
                    Some("logit_bias"),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{ChatCompletionRequest, CompletionRequest, EmbeddingRequest};
    use serde_json::json;

    fn chat(fields: Value) -> Request {
        let mut body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
        if let (Some(b), Some(f)) = (body.as_object_mut(), fields.as_object()) {
            b.extend(f.clone());
        }
        match serde_json::from_value::<ChatCompletionRequest>(body) {
            Ok(r) => Request::Chat(r),
            Err(e) => panic!("test body: {e}"),
        }
    }

    fn refused(request: &Request) -> Error {
        match check(request) {
            Err(e) => e,
            Ok(()) => panic!("accepted {request:?}"),
        }
    }

    #[test]
    fn values_inside_the_ranges_pass_including_the_edges() {
        for fields in [
            json!({}),
            json!({"temperature": 0, "top_p": 0, "n": 1, "presence_penalty": -2}),
            json!({"temperature": 2, "top_p": 1, "n": 128, "frequency_penalty": 2}),
            json!({"max_tokens": 1, "max_completion_tokens": 100000, "top_logprobs": 20}),
            json!({"logit_bias": {"50256": -100, "13": 100, "7": 0.5}}),
        ] {
            let r = chat(fields.clone());
            assert!(check(&r).is_ok(), "{fields} refused: {:?}", check(&r));
        }
    }

    #[test]
    fn each_absurd_value_is_refused_naming_its_field() {
        for (fields, param, says) in [
            (
                json!({"temperature": 1e308}),
                "temperature",
                "between 0 and 2",
            ),
            (
                json!({"temperature": -0.1}),
                "temperature",
                "between 0 and 2",
            ),
            (json!({"top_p": 1.5}), "top_p", "between 0 and 1"),
            (
                json!({"presence_penalty": -3}),
                "presence_penalty",
                "between -2 and 2",
            ),
            (
                json!({"frequency_penalty": 1e10}),
                "frequency_penalty",
                "between -2 and 2",
            ),
            (json!({"n": 0}), "n", "between 1 and 128"),
            (json!({"n": 4000000000u32}), "n", "between 1 and 128"),
            (json!({"max_tokens": 0}), "max_tokens", "at least 1"),
            (
                json!({"max_completion_tokens": 0}),
                "max_completion_tokens",
                "at least 1",
            ),
            (
                json!({"top_logprobs": 21}),
                "top_logprobs",
                "between 0 and 20",
            ),
            (
                json!({"logit_bias": {"13": 1000}}),
                "logit_bias",
                "between -100 and 100",
            ),
            (
                json!({"logit_bias": {"13": "high"}}),
                "logit_bias",
                "a number",
            ),
            (json!({"logit_bias": [1, 2]}), "logit_bias", "an object"),
        ] {
            let e = refused(&chat(fields.clone()));
            assert_eq!(e.param.as_deref(), Some(param), "{fields}");
            assert_eq!(e.status(), 400, "{fields}");
            assert!(e.message.contains(says), "{fields}: {}", e.message);
        }
    }

    #[test]
    fn completions_and_embeddings_are_checked_too() {
        let completion: CompletionRequest =
            serde_json::from_value(json!({"model": "m", "prompt": "x", "top_p": -1}))
                .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            refused(&Request::Completion(completion)).param.as_deref(),
            Some("top_p")
        );
        let embedding: EmbeddingRequest =
            serde_json::from_value(json!({"model": "m", "input": "x", "dimensions": 0}))
                .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            refused(&Request::Embedding(embedding)).param.as_deref(),
            Some("dimensions")
        );
    }
}
