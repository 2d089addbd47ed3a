//! Deserialising the wire types' "named fields plus an `extra` map" shape in one pass.
//!
//! `#[serde(flatten)]` buffers every key it does not recognise — and, in an untagged enum, the
//! whole value — into serde's generic `Content` tree, then deserialises the target again from
//! that copy (reading a chat response went from 13.5k to 12.8k instructions without it,
//! BENCHMARKS.md, "Profile"). [`open_struct!`] writes the map visitor the
//! derive would write without `flatten`: a named key is read straight into its field, any
//! other into `extra` as a `serde_json::Value`. Serialisation keeps the derive, so the fields'
//! `#[serde(…)]` attributes hold only what it uses; which fields are required and their
//! defaults are said once, in each type's `open_struct!`.

use serde::de::{Deserialize, Deserializer, Visitor};
use std::fmt;

/// A map key as read: borrowed from the input when it has no escapes, owned otherwise.
pub(crate) enum Key<'de> {
    /// Straight from the input.
    Borrowed(&'de str),
    /// Unescaped, or from an input that does not lend its strings.
    Owned(String),
}

impl Key<'_> {
    /// The key's text.
    pub(crate) fn as_str(&self) -> &str {
        match self {
            Key::Borrowed(s) => s,
            Key::Owned(s) => s,
        }
    }

    /// The key as an owned string, for the `extra` map.
    pub(crate) fn into_string(self) -> String {
        match self {
            Key::Borrowed(s) => s.to_owned(),
            Key::Owned(s) => s,
        }
    }
}

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key::Borrowed(v))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key::Owned(v.to_owned()))
            }
            fn visit_string<E>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key::Owned(v))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

/// Implements `Deserialize` for a struct whose last field is `extra: Extra`, reading each value
/// once. Each named field is `field: "wire name" [required]`, `[default]` (`Default::default()`
/// when absent) or `[default = expr]`; a key named twice is an error, as with the derive.
macro_rules! open_struct {
    ($ty:ident { $($field:ident : $wire:literal [$($how:tt)+]),* $(,)? }) => {
        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct OpenVisitor;
                impl<'de> serde::de::Visitor<'de> for OpenVisitor {
                    type Value = $ty;
                    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        f.write_str(concat!("struct ", stringify!($ty)))
                    }
                    fn visit_map<A: serde::de::MapAccess<'de>>(
                        self,
                        mut map: A,
                    ) -> Result<$ty, A::Error> {
                        $(let mut $field = None;)*
                        let mut extra = $crate::types::Extra::new();
                        while let Some(key) = map.next_key::<$crate::types::open::Key<'de>>()? {
                            match key.as_str() {
                                $($wire => {
                                    if $field.is_some() {
                                        return Err(serde::de::Error::duplicate_field($wire));
                                    }
                                    $field = Some(map.next_value()?);
                                })*
                                _ => {
                                    let value: serde_json::Value = map.next_value()?;
                                    extra.insert(key.into_string(), value);
                                }
                            }
                        }
                        Ok($ty {
                            $($field: open_struct!(@take $field, $wire, $($how)+),)*
                            extra,
                        })
                    }
                }
                d.deserialize_map(OpenVisitor)
            }
        }
    };
    (@take $field:ident, $wire:literal, required) => {
        match $field {
            Some(v) => v,
            None => return Err(serde::de::Error::missing_field($wire)),
        }
    };
    (@take $field:ident, $wire:literal, default) => {
        $field.unwrap_or_default()
    };
    (@take $field:ident, $wire:literal, default = $value:expr) => {
        $field.unwrap_or_else(|| $value)
    };
}

pub(crate) use open_struct;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use crate::types::{
        ChatCompletionRequest, ChatCompletionResponse, ChatMessage, CompletionRequest,
        CompletionResponse, ContentPart, EmbeddingInput, EmbeddingRequest, EmbeddingResponse,
        EmbeddingVector, KnownContentPart, MessageContent, Tool, Usage,
    };
    use serde::{Serialize, de::DeserializeOwned};
    use serde_json::json;

    #[test]
    fn named_keys_fill_fields_and_the_rest_goes_to_extra_once() {
        let text = r#"{"model":"m","messages":[{"role":"user","content":"hi","x-part":1}],
            "temperature":0,"metadata":{"a":"b"},"mock\u005fresponse":"ok"}"#;
        let r: ChatCompletionRequest = serde_json::from_str(text).unwrap();
        assert_eq!(r.model, "m");
        assert_eq!(r.temperature, Some(0.0));
        assert_eq!(r.messages[0].extra["x-part"], json!(1));
        assert_eq!(r.extra["metadata"], json!({"a": "b"}));
        // An escaped key is unescaped before it is matched or kept.
        assert_eq!(r.extra["mock_response"], json!("ok"));
        assert_eq!(r.extra.len(), 2);
        // The same from a `Value`, whose keys are owned.
        let v: serde_json::Value = serde_json::from_str(text).unwrap();
        assert_eq!(
            serde_json::from_value::<ChatCompletionRequest>(v).unwrap(),
            r
        );
    }

    #[test]
    fn missing_duplicate_and_mistyped_fields_are_errors_that_name_them() {
        let err = |text: &str| {
            serde_json::from_str::<ChatCompletionRequest>(text)
                .unwrap_err()
                .to_string()
        };
        assert!(err(r#"{"messages":[]}"#).starts_with("missing field `model`"));
        assert!(
            err(r#"{"model":"a","model":"b","messages":[]}"#)
                .starts_with("duplicate field `model`")
        );
        assert!(
            err(r#"{"model":"a","messages":[],"temperature":"hot"}"#)
                .starts_with("invalid type: string \"hot\", expected f64")
        );
        assert!(err(r#"["m", []]"#).starts_with("invalid type: sequence, expected struct"));
    }

    #[test]
    fn content_is_a_string_or_a_list_of_parts_and_nothing_else() {
        let msg = |content: &str| {
            serde_json::from_str::<ChatMessage>(&format!(
                r#"{{"role":"user","content":{content}}}"#
            ))
        };
        assert_eq!(msg(r#""hi""#).unwrap().text(), "hi");
        let parts = msg(r#"[{"type":"text","text":"a"},{"type":"input_audio","x":1}]"#).unwrap();
        assert!(matches!(
            parts.content,
            Some(MessageContent::Parts(ref p)) if p.len() == 2 && matches!(p[1], ContentPart::Unknown(_))
        ));
        assert_eq!(parts.text(), "a");
        assert!(msg("null").unwrap().content.is_none());
        let err = msg("5").unwrap_err().to_string();
        assert!(
            err.starts_with(
                "invalid type: integer `5`, expected a string or an array of content parts"
            ),
            "{err}"
        );
    }

    #[test]
    fn absent_fields_take_their_defaults() {
        let r: ChatCompletionResponse = serde_json::from_str(r#"{"id":"x"}"#).unwrap();
        assert_eq!(r.object, "chat.completion");
        assert!(r.choices.is_empty() && r.usage.is_none() && r.extra.is_empty());
        let u: Usage = serde_json::from_str(r#"{"total_tokens":3,"cost":0.5}"#).unwrap();
        assert_eq!((u.prompt_tokens, u.total_tokens), (0, 3));
        assert_eq!(u.extra["cost"], json!(0.5));
    }

    /// Read and written back, a body is the same JSON: every named field and every other one.
    fn round_trips<T: DeserializeOwned + Serialize>(text: &str) {
        let typed: T = serde_json::from_str(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        let expected: serde_json::Value = serde_json::from_str(text).unwrap();
        assert_eq!(serde_json::to_value(&typed).unwrap(), expected, "{text}");
    }

    #[test]
    fn every_open_type_keeps_what_it_does_not_name() {
        round_trips::<ChatCompletionRequest>(
            r#"{"model":"m","messages":[{"role":"user","content":[
                {"type":"text","text":"look","cache_control":{"type":"ephemeral"}},
                {"type":"image_url","image_url":{"url":"data:x"},"text":"alt"},
                {"type":"input_audio","input_audio":{"data":"AAA","format":"wav"}}]}],
              "tools":[{"type":"function","function":{"name":"f","description":"d",
                "parameters":{"type":"object"},"strict":true},"x-tool":1}],
              "response_format":{"type":"json_schema","json_schema":{"name":"s"}},
              "x-top":[1,2]}"#,
        );
        round_trips::<Tool>(r#"{"type":"function","function":{"name":"f"}}"#);
        round_trips::<CompletionRequest>(
            r#"{"model":"m","prompt":["a","b"],"stream":true,"stream_options":{"include_usage":true},
              "max_tokens":5,"temperature":0.0,"top_p":1.0,"n":2,"stop":"x","seed":7,"user":"u",
              "echo":true,"logit_bias":{"1":2}}"#,
        );
        round_trips::<CompletionResponse>(
            r#"{"id":"c","object":"text_completion","created":1,"model":"m","choices":[
                {"text":"hi","index":0,"finish_reason":"stop","logprobs":null,"x":1}],
              "usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2},
              "system_fingerprint":"fp","x-resp":true}"#,
        );
        round_trips::<EmbeddingRequest>(
            r#"{"model":"m","input":[[1,2],[3]],"encoding_format":"float","dimensions":8,
              "user":"u","x-req":"y"}"#,
        );
        round_trips::<EmbeddingResponse>(
            r#"{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.5,-1.0],
                "x-vec":1}],"model":"m","usage":{"prompt_tokens":2,"total_tokens":2,"x":0},
              "x-resp":{}}"#,
        );
    }

    #[test]
    fn absent_fields_of_the_other_types_take_their_defaults() {
        let t: Tool = serde_json::from_str(r#"{"function":{"name":"f"}}"#).unwrap();
        assert_eq!(t.kind, "function");
        let c: CompletionResponse = serde_json::from_str(r#"{"id":"c"}"#).unwrap();
        assert_eq!((c.object.as_str(), c.choices.len()), ("text_completion", 0));
        let e: EmbeddingResponse =
            serde_json::from_str(r#"{"data":[{"embedding":[1.0]}]}"#).unwrap();
        assert_eq!(
            (e.object.as_str(), e.data[0].object.as_str()),
            ("list", "embedding")
        );
        let err = |text: &str| {
            serde_json::from_str::<EmbeddingResponse>(text)
                .unwrap_err()
                .to_string()
        };
        assert!(err(r#"{"object":"list"}"#).starts_with("missing field `data`"));
        assert!(err(r#"{"data":[{"index":0}]}"#).starts_with("missing field `embedding`"));
    }

    #[test]
    fn a_part_is_typed_only_in_the_shape_it_is_known_by() {
        let part = |text: &str| serde_json::from_str::<ContentPart>(text).unwrap();
        assert_eq!(
            part(r#"{"type":"text","text":"a","image_url":"u"}"#),
            ContentPart::Known(KnownContentPart::Text {
                text: "a".into(),
                extra: [("image_url".to_owned(), json!("u"))].into_iter().collect(),
            })
        );
        assert!(matches!(
            part(r#"{"type":"image_url","image_url":{"url":"u"}}"#),
            ContentPart::Known(KnownContentPart::ImageUrl { ref extra, .. }) if extra.is_empty()
        ));
        // Not in a known shape: kept whole, as it came.
        for text in [
            r#"{"type":"text","text":5}"#,
            r#"{"type":"text"}"#,
            r#"{"type":"image_url"}"#,
            r#"{"type":"file","file":{"file_id":"f"}}"#,
            r#"{"text":"no type"}"#,
            r#""a bare string""#,
            "7",
        ] {
            let value: serde_json::Value = serde_json::from_str(text).unwrap();
            assert_eq!(part(text), ContentPart::Unknown(value), "{text}");
        }
    }

    #[test]
    fn embedding_input_is_told_by_its_first_item() {
        let input = |text: &str| serde_json::from_str::<EmbeddingInput>(text);
        assert_eq!(input(r#""a""#).unwrap(), EmbeddingInput::One("a".into()));
        assert_eq!(
            input(r#"["a","b"]"#).unwrap(),
            EmbeddingInput::Many(vec!["a".into(), "b".into()])
        );
        assert_eq!(input("[]").unwrap(), EmbeddingInput::Many(Vec::new()));
        assert_eq!(
            input("[1,-2]").unwrap(),
            EmbeddingInput::Tokens(vec![1, -2])
        );
        assert_eq!(
            input("[[1],[2,3],[]]").unwrap(),
            EmbeddingInput::ManyTokens(vec![vec![1], vec![2, 3], Vec::new()])
        );
        let err = |text: &str| input(text).unwrap_err().to_string();
        for mixed in [r#"["a",1]"#, r#"[1,"a"]"#, "[[1],2]"] {
            assert!(err(mixed).starts_with("an input array mixes"), "{mixed}");
        }
        assert!(err("5").starts_with(
            "invalid type: integer `5`, expected a string, an array of strings, or token arrays"
        ));
        assert!(
            err("[1.5]").starts_with("invalid type: floating point"),
            "{}",
            err("[1.5]")
        );
        assert!(err("[18446744073709551615]").contains("out of range"));
        assert!(err(r#"[["a"]]"#).starts_with("invalid type: string"));
    }

    #[test]
    fn an_embedding_vector_is_kept_as_its_json_text() {
        let e: EmbeddingResponse = serde_json::from_str(
            r#"{"data":[{"embedding":[ 1.50, -2E-3 ]},{"embedding":"AAA="}]}"#,
        )
        .unwrap();
        assert_eq!(e.data[0].embedding.json(), "[ 1.50, -2E-3 ]");
        assert_eq!(e.data[0].embedding.floats(), Some(vec![1.5, -0.002]));
        assert_eq!(e.data[1].embedding.to_string(), r#""AAA=""#);
        assert_eq!(e.data[1].embedding.floats(), None);
        let made = EmbeddingVector::from_floats(&[0.25, f64::NAN]);
        assert_eq!(made.json(), "[0.25,null]");
        assert_eq!(EmbeddingVector::default().json(), "[]");
        // Equal when written alike.
        assert_eq!(
            EmbeddingVector::from_floats(&[1.0]),
            EmbeddingVector::from_floats(&[1.0])
        );
        assert_ne!(
            EmbeddingVector::from_floats(&[1.0]),
            EmbeddingVector::from_floats(&[2.0])
        );
    }
}
