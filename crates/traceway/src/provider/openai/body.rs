//! The OpenAI request body written straight from the typed request, as
//! [`super::request_body`] builds it (upstream model name, gateway-only fields left out, the
//! deployment's body params where the caller set none) but without the `serde_json::Value`
//! tree in between: building, writing and freeing that tree (every message copied into it)
//! cost more than writing the request itself, on every call.
//!
//! The request's own `Serialize` drives the output; [`Top`] stands in for the JSON serializer
//! at the top level only, so that each field can be kept, renamed to the upstream model or left
//! out as it passes, and the missing params added at the end.

use super::super::{Request, Target};
use crate::error::{Error, ErrorKind};
use crate::types::{Extra, GATEWAY_ONLY_FIELDS};
use serde::ser::{Error as _, Impossible, Serialize, SerializeMap, SerializeStruct, Serializer};

/// The upstream JSON body of `request` for `target`, without the fields named in `drop`
/// (wherever they come from); the same object as `request_body(target, request)` with those
/// keys removed, its keys in another order.
pub(crate) fn write(
    target: &Target<'_>,
    request: &Request,
    drop: &[&str],
) -> Result<Vec<u8>, Error> {
    let mut out = Vec::with_capacity(512);
    let mut ser = serde_json::Serializer::new(&mut out);
    let top = Top {
        inner: &mut ser,
        model: target.model,
        params: target.params,
        drop,
    };
    match request {
        Request::Chat(r) => r.serialize(top),
        Request::Completion(r) => r.serialize(top),
        Request::Embedding(r) => r.serialize(top),
    }
    .map_err(|e| {
        Error::new(
            ErrorKind::Internal,
            format!("could not serialise the request: {e}"),
        )
    })?;
    Ok(out)
}

/// What becomes of one field of the request.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Field {
    /// Written as it is; `Some(i)` when it is the `i`-th of the deployment's params too, which
    /// then is not added.
    Keep(Option<usize>),
    /// `model`: written with the upstream's model name.
    Model,
    /// A gateway-only field, or one the provider drops: left out.
    Drop,
}

/// The top-level serializer: a request is an object; anything else is refused.
struct Top<'a, S> {
    inner: S,
    model: &'a str,
    params: &'a Extra,
    drop: &'a [&'a str],
}

/// The request's fields on their way to the JSON object.
struct Fields<'a, M> {
    map: M,
    model: &'a str,
    params: &'a Extra,
    drop: &'a [&'a str],
    /// Params the request set itself (by position in `params`).
    set: Vec<bool>,
    model_written: bool,
    /// The decision on the key just seen, for the value that follows it.
    pending: Field,
}

impl<'a, M: SerializeMap> Fields<'a, M> {
    fn new(map: M, model: &'a str, params: &'a Extra, drop: &'a [&'a str]) -> Self {
        Fields {
            map,
            model,
            params,
            drop,
            set: vec![false; params.len()],
            model_written: false,
            pending: Field::Drop,
        }
    }

    fn classify(&self, key: &str) -> Field {
        if key == "model" {
            Field::Model
        } else if GATEWAY_ONLY_FIELDS.contains(&key) || self.drop.contains(&key) {
            Field::Drop
        } else if self.params.is_empty() {
            Field::Keep(None)
        } else {
            Field::Keep(self.params.keys().position(|k| k == key))
        }
    }

    /// Starts the entry of `key` as decided, remembering the decision for its value.
    fn key(&mut self, key: &str) -> Result<(), M::Error> {
        self.pending = self.classify(key);
        match self.pending {
            Field::Drop => return Ok(()),
            Field::Model => self.model_written = true,
            Field::Keep(Some(i)) => self.set[i] = true,
            Field::Keep(None) => {}
        }
        self.map.serialize_key(key)
    }

    fn value<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), M::Error> {
        match self.pending {
            Field::Drop => Ok(()),
            Field::Model => self.map.serialize_value(self.model),
            Field::Keep(_) => self.map.serialize_value(value),
        }
    }

    /// Adds the model if the request had none, and the params it did not set, then closes.
    fn finish(mut self) -> Result<M::Ok, M::Error> {
        if !self.model_written {
            self.map.serialize_entry("model", self.model)?;
        }
        for ((k, v), set) in self.params.iter().zip(&self.set) {
            // `model` is the upstream's name whatever the params say.
            if !set && k != "model" && !self.drop.contains(&k.as_str()) {
                self.map.serialize_entry(k, v)?;
            }
        }
        self.map.end()
    }
}

impl<M: SerializeMap> SerializeMap for Fields<'_, M> {
    type Ok = M::Ok;
    type Error = M::Error;

    fn serialize_key<T: ?Sized + Serialize>(&mut self, key: &T) -> Result<(), M::Error> {
        key.serialize(KeyInto(self))
    }

    fn serialize_value<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), M::Error> {
        self.value(value)
    }

    fn end(self) -> Result<M::Ok, M::Error> {
        self.finish()
    }
}

impl<M: SerializeMap> SerializeStruct for Fields<'_, M> {
    type Ok = M::Ok;
    type Error = M::Error;

    fn serialize_field<T: ?Sized + Serialize>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), M::Error> {
        self.key(key)?;
        self.value(value)
    }

    fn end(self) -> Result<M::Ok, M::Error> {
        self.finish()
    }
}

/// Hands a map key's text to [`Fields::key`] without copying it; a request's keys are
/// always strings.
struct KeyInto<'f, 'a, M>(&'f mut Fields<'a, M>);

/// The serializer methods a shape that cannot be a request (or a key) refuses.
macro_rules! refuse {
    ($what:literal; $($method:ident($($ty:ty),*);)*) => {
        $(fn $method(self, $(_: $ty),*) -> Result<Self::Ok, Self::Error> {
            Err(Self::Error::custom($what))
        })*
    };
}

/// The compound serializers such a shape would need, all refused.
macro_rules! refuse_compounds {
    ($what:literal) => {
        type SerializeSeq = Impossible<Self::Ok, Self::Error>;
        type SerializeTuple = Impossible<Self::Ok, Self::Error>;
        type SerializeTupleStruct = Impossible<Self::Ok, Self::Error>;
        type SerializeTupleVariant = Impossible<Self::Ok, Self::Error>;
        type SerializeStructVariant = Impossible<Self::Ok, Self::Error>;

        refuse! { $what;
            serialize_bool(bool); serialize_i8(i8); serialize_i16(i16); serialize_i32(i32);
            serialize_i64(i64); serialize_u8(u8); serialize_u16(u16); serialize_u32(u32);
            serialize_u64(u64); serialize_f32(f32); serialize_f64(f64); serialize_char(char);
            serialize_bytes(&[u8]); serialize_none(); serialize_unit();
            serialize_unit_struct(&'static str);
            serialize_unit_variant(&'static str, u32, &'static str);
        }

        fn serialize_some<T: ?Sized + Serialize>(self, _: &T) -> Result<Self::Ok, Self::Error> {
            Err(Self::Error::custom($what))
        }
        fn serialize_newtype_struct<T: ?Sized + Serialize>(
            self,
            _: &'static str,
            _: &T,
        ) -> Result<Self::Ok, Self::Error> {
            Err(Self::Error::custom($what))
        }
        fn serialize_newtype_variant<T: ?Sized + Serialize>(
            self,
            _: &'static str,
            _: u32,
            _: &'static str,
            _: &T,
        ) -> Result<Self::Ok, Self::Error> {
            Err(Self::Error::custom($what))
        }
        fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, Self::Error> {
            Err(Self::Error::custom($what))
        }
        fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, Self::Error> {
            Err(Self::Error::custom($what))
        }
        fn serialize_tuple_struct(
            self,
            _: &'static str,
            _: usize,
        ) -> Result<Self::SerializeTupleStruct, Self::Error> {
            Err(Self::Error::custom($what))
        }
        fn serialize_tuple_variant(
            self,
            _: &'static str,
            _: u32,
            _: &'static str,
            _: usize,
        ) -> Result<Self::SerializeTupleVariant, Self::Error> {
            Err(Self::Error::custom($what))
        }
        fn serialize_struct_variant(
            self,
            _: &'static str,
            _: u32,
            _: &'static str,
            _: usize,
        ) -> Result<Self::SerializeStructVariant, Self::Error> {
            Err(Self::Error::custom($what))
        }
    };
}

impl<'a, S: Serializer> Serializer for Top<'a, S> {
    type Ok = S::Ok;
    type Error = S::Error;
    type SerializeMap = Fields<'a, S::SerializeMap>;
    type SerializeStruct = Fields<'a, S::SerializeMap>;

    refuse_compounds!("a request is written as a JSON object");
    refuse! { "a request is written as a JSON object"; serialize_str(&str); }

    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, S::Error> {
        let map = self.inner.serialize_map(None)?;
        Ok(Fields::new(map, self.model, self.params, self.drop))
    }

    fn serialize_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStruct, S::Error> {
        self.serialize_map(None)
    }
}

impl<M: SerializeMap> Serializer for KeyInto<'_, '_, M> {
    type Ok = ();
    type Error = M::Error;
    type SerializeMap = Impossible<(), M::Error>;
    type SerializeStruct = Impossible<(), M::Error>;

    refuse_compounds!("a request's keys are strings");

    fn serialize_str(self, v: &str) -> Result<(), M::Error> {
        self.0.key(v)
    }

    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, M::Error> {
        Err(M::Error::custom("a request's keys are strings"))
    }

    fn serialize_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStruct, M::Error> {
        Err(M::Error::custom("a request's keys are strings"))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::types::{ChatCompletionRequest, CompletionRequest, EmbeddingRequest};
    use proptest::prelude::*;
    use serde_json::{Value, json};

    /// Keys a request or a deployment's params may carry: typed fields, gateway-only fields,
    /// `model`, and fields Traceway does not know.
    const KEYS: &[&str] = &[
        "model",
        "temperature",
        "max_tokens",
        "stream",
        "user",
        "seed",
        "metadata",
        "mock_response",
        "num_retries",
        "fallbacks",
        "api_key",
        "timeout",
        "reasoning_effort",
        "top_k",
        "x-vendor",
    ];

    fn values() -> impl Strategy<Value = Value> {
        prop_oneof![
            (0u32..1000).prop_map(|n| json!(n)),
            (0.0f64..2.0).prop_map(|f| json!(f)),
            "[a-z\"\\\\\u{e9}]{0,6}".prop_map(Value::String),
            Just(Value::Null),
            Just(json!({"nested": [1, "two", null]})),
        ]
    }

    /// A request of `operation` as a client might send it, with `extra` keys on top: values a
    /// typed field cannot take make the request unparseable, and such cases are skipped.
    fn request(operation: u8, extra: &Extra) -> Option<Request> {
        let mut body = match operation {
            0 => {
                json!({"model": "alias", "messages": [{"role": "user", "content": "hi \"there\""}]})
            }
            1 => json!({"model": "alias", "prompt": ["a", "b"]}),
            _ => json!({"model": "alias", "input": "text"}),
        };
        let map = body.as_object_mut().unwrap();
        for (k, v) in extra {
            map.insert(k.clone(), v.clone());
        }
        match operation {
            0 => serde_json::from_value::<ChatCompletionRequest>(body)
                .ok()
                .map(Request::Chat),
            1 => serde_json::from_value::<CompletionRequest>(body)
                .ok()
                .map(Request::Completion),
            _ => serde_json::from_value::<EmbeddingRequest>(body)
                .ok()
                .map(Request::Embedding),
        }
    }

    /// The top-level keys of a JSON object in the order written, duplicates included.
    fn keys(bytes: &[u8]) -> Vec<String> {
        struct Keys;
        impl<'de> serde::de::Visitor<'de> for Keys {
            type Value = Vec<String>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Vec<String>, A::Error> {
                let mut keys = Vec::new();
                while let Some((k, _)) = map.next_entry::<String, serde::de::IgnoredAny>()? {
                    keys.push(k);
                }
                Ok(keys)
            }
        }
        let mut de = serde_json::Deserializer::from_slice(bytes);
        serde::Deserializer::deserialize_map(&mut de, Keys).unwrap()
    }

    fn target(params: &Extra) -> Target<'_> {
        Target {
            env: &traceway_otel::env::ProcessEnv,
            model: "gpt-4o",
            api_base: None,
            api_key: None,
            params,
        }
    }

    fn same_as_the_value_tree(request: &Request, params: &Extra, drop: &[&str]) {
        let target = target(params);
        let written = write(&target, request, drop).unwrap();
        let mut tree = super::super::request_body(&target, request).unwrap();
        for f in drop {
            tree.as_object_mut().unwrap().remove(*f);
        }
        // Both read back by one parser, so that a float's text is compared, not how closely
        // the parser rounds it.
        let tree: Value = serde_json::from_slice(&serde_json::to_vec(&tree).unwrap()).unwrap();
        let parsed: Value = serde_json::from_slice(&written).unwrap();
        assert_eq!(parsed, tree);
        let mut seen = keys(&written);
        let all = seen.len();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), all, "a key written twice: {written:?}");
    }

    #[test]
    fn writes_the_upstream_model_drops_gateway_fields_and_adds_missing_params() {
        let extra: Extra = json!({
            "temperature": 0.0, "metadata": {"a": 1}, "mock_response": "x", "reasoning_effort": "low"
        })
        .as_object()
        .cloned()
        .unwrap();
        let params: Extra =
            json!({"temperature": 0.7, "top_p": 0.5, "model": "other", "metadata": "m"})
                .as_object()
                .cloned()
                .unwrap();
        let request = request(0, &extra).unwrap();
        let body: Value =
            serde_json::from_slice(&write(&target(&params), &request, &[]).unwrap()).unwrap();
        assert_eq!(
            body,
            json!({
                "model": "gpt-4o",
                "messages": [{"role": "user", "content": "hi \"there\""}],
                "temperature": 0.0,
                "reasoning_effort": "low",
                "top_p": 0.5,
                "metadata": "m"
            })
        );
        same_as_the_value_tree(&request, &params, &[]);
        // A provider's own drops apply to the request's fields and the params alike.
        let body: Value = serde_json::from_slice(
            &write(&target(&params), &request, &["top_p", "reasoning_effort"]).unwrap(),
        )
        .unwrap();
        assert!(body.get("top_p").is_none() && body.get("reasoning_effort").is_none());
        assert_eq!(body["metadata"], "m");
    }

    proptest! {
        #[test]
        fn writes_what_the_value_tree_holds(
            operation in 0u8..3,
            extra in proptest::collection::btree_map(proptest::sample::select(KEYS), values(), 0..8),
            params in proptest::collection::btree_map(proptest::sample::select(KEYS), values(), 0..5),
            drop in proptest::sample::subsequence(&KEYS[1..], 0..4),
        ) {
            let extra: Extra = extra.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
            let params: Extra = params.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
            if let Some(request) = request(operation, &extra) {
                same_as_the_value_tree(&request, &params, &drop);
            }
        }
    }
}
