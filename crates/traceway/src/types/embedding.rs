//! `/v1/embeddings`: request and response.

use super::Extra;
use super::open::open_struct;
use serde::Serialize;
use serde::de::value::SeqAccessDeserializer;
use serde::de::{Deserialize, Deserializer, Error as _, SeqAccess, Visitor};
use serde_json::value::{RawValue, to_raw_value};
use std::fmt;

/// What to embed: a string, strings, or token arrays.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum EmbeddingInput {
    /// One string.
    One(String),
    /// Several strings.
    Many(Vec<String>),
    /// One token array.
    Tokens(Vec<i64>),
    /// Several token arrays.
    ManyTokens(Vec<Vec<i64>>),
}

// By hand rather than `#[serde(untagged)]`, which buffers the input and parses it again for
// each variant it tries: a string is one input; a list is told by its first item.
impl<'de> Deserialize<'de> for EmbeddingInput {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct InputVisitor;
        impl<'de> Visitor<'de> for InputVisitor {
            type Value = EmbeddingInput;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string, an array of strings, or token arrays")
            }
            fn visit_str<E>(self, v: &str) -> Result<EmbeddingInput, E> {
                Ok(EmbeddingInput::One(v.to_owned()))
            }
            fn visit_string<E>(self, v: String) -> Result<EmbeddingInput, E> {
                Ok(EmbeddingInput::One(v))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<EmbeddingInput, A::Error> {
                let Some(first) = seq.next_element::<Item>()? else {
                    return Ok(EmbeddingInput::Many(Vec::new()));
                };
                let room = seq.size_hint().unwrap_or(0).min(4096) + 1;
                Ok(match first {
                    Item::Text(t) => EmbeddingInput::Many(rest(t, room, &mut seq, |i| match i {
                        Item::Text(t) => Some(t),
                        _ => None,
                    })?),
                    Item::Token(t) => {
                        EmbeddingInput::Tokens(rest(t, room, &mut seq, |i| match i {
                            Item::Token(t) => Some(t),
                            _ => None,
                        })?)
                    }
                    Item::Tokens(t) => {
                        EmbeddingInput::ManyTokens(rest(t, room, &mut seq, |i| match i {
                            Item::Tokens(t) => Some(t),
                            _ => None,
                        })?)
                    }
                })
            }
        }
        d.deserialize_any(InputVisitor)
    }
}

/// The items of an input array after its `first`, each of the first's kind (`pick`).
fn rest<'de, A: SeqAccess<'de>, T>(
    first: T,
    room: usize,
    seq: &mut A,
    pick: fn(Item) -> Option<T>,
) -> Result<Vec<T>, A::Error> {
    let mut all = Vec::with_capacity(room);
    all.push(first);
    while let Some(item) = seq.next_element::<Item>()? {
        let same = pick(item).ok_or_else(|| {
            A::Error::custom("an input array mixes strings, tokens and token arrays")
        })?;
        all.push(same);
    }
    Ok(all)
}

/// One item of an input array: a string, a token, or a token array.
enum Item {
    Text(String),
    Token(i64),
    Tokens(Vec<i64>),
}

impl<'de> Deserialize<'de> for Item {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ItemVisitor;
        impl<'de> Visitor<'de> for ItemVisitor {
            type Value = Item;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string, a token (integer) or a token array")
            }
            fn visit_str<E>(self, v: &str) -> Result<Item, E> {
                Ok(Item::Text(v.to_owned()))
            }
            fn visit_string<E>(self, v: String) -> Result<Item, E> {
                Ok(Item::Text(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Item, E> {
                Ok(Item::Token(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Item, E> {
                i64::try_from(v)
                    .map(Item::Token)
                    .map_err(|_| E::custom(format!("token {v} is out of range")))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Item, A::Error> {
                Vec::deserialize(SeqAccessDeserializer::new(seq)).map(Item::Tokens)
            }
        }
        d.deserialize_any(ItemVisitor)
    }
}

impl EmbeddingInput {
    /// Each input as text (token arrays rendered as their numbers).
    pub fn texts(&self) -> Vec<String> {
        match self {
            EmbeddingInput::One(s) => vec![s.clone()],
            EmbeddingInput::Many(v) => v.clone(),
            EmbeddingInput::Tokens(t) => vec![format!("{t:?}")],
            EmbeddingInput::ManyTokens(t) => t.iter().map(|x| format!("{x:?}")).collect(),
        }
    }
}

/// The body of `POST /v1/embeddings`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EmbeddingRequest {
    /// Model group (proxy) or `provider/model` (library).
    pub model: String,
    /// What to embed.
    pub input: EmbeddingInput,
    /// `float` or `base64`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encoding_format: Option<String>,
    /// Output dimensions, where the model supports it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dimensions: Option<u32>,
    /// End-user id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Every other field, passed on untouched (gateway fields excepted).
    #[serde(flatten)]
    pub extra: Extra,
}

open_struct!(EmbeddingRequest {
    model: "model"[required],
    input: "input"[required],
    encoding_format: "encoding_format"[default],
    dimensions: "dimensions"[default],
    user: "user"[default]
});

/// One embedding vector.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Embedding {
    /// Always `embedding`.
    pub object: String,
    /// Position of its input.
    pub index: u32,
    /// A float array, or a base64 string when asked for.
    pub embedding: EmbeddingVector,
    /// Fields not named above.
    #[serde(flatten)]
    pub extra: Extra,
}

open_struct!(Embedding {
    object: "object"[default = embedding_object()],
    index: "index"[default],
    embedding: "embedding"[required]
});

fn embedding_object() -> String {
    "embedding".to_owned()
}

/// An embedding as JSON text — a float array, or a base64 string when asked for — kept as the
/// upstream wrote it: the gateway passes vectors on, so it neither parses their numbers nor
/// formats them again (most of an embeddings response's bytes, and its cost, are these).
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct EmbeddingVector(Box<RawValue>);

impl EmbeddingVector {
    /// A vector of these floats.
    pub fn from_floats(floats: &[f64]) -> EmbeddingVector {
        // Writing floats cannot fail (a non-finite one is written as `null`).
        EmbeddingVector(to_raw_value(floats).unwrap_or_else(|_| RawValue::NULL.to_owned()))
    }

    /// The vector's JSON text.
    pub fn json(&self) -> &str {
        self.0.get()
    }

    /// The vector's numbers; `None` for a base64 vector or anything else that is not an array
    /// of numbers.
    pub fn floats(&self) -> Option<Vec<f64>> {
        serde_json::from_str(self.0.get()).ok()
    }
}

impl fmt::Display for EmbeddingVector {
    /// The JSON text.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.get())
    }
}

impl Embedding {
    /// The embedding of the input at `index`.
    pub fn new(index: u32, embedding: EmbeddingVector) -> Embedding {
        Embedding {
            object: embedding_object(),
            index,
            embedding,
            extra: Extra::new(),
        }
    }
}

impl Default for EmbeddingVector {
    /// An empty vector.
    fn default() -> Self {
        EmbeddingVector::from_floats(&[])
    }
}

impl PartialEq for EmbeddingVector {
    fn eq(&self, other: &Self) -> bool {
        self.0.get() == other.0.get()
    }
}

/// Token counts of an embeddings call.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct EmbeddingUsage {
    /// Input tokens.
    pub prompt_tokens: u64,
    /// Same as `prompt_tokens`.
    pub total_tokens: u64,
    /// Fields not named above.
    #[serde(flatten)]
    pub extra: Extra,
}

open_struct!(EmbeddingUsage {
    prompt_tokens: "prompt_tokens"[default],
    total_tokens: "total_tokens"[default]
});

/// The body of an embeddings response.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EmbeddingResponse {
    /// Always `list`.
    pub object: String,
    /// One vector per input.
    pub data: Vec<Embedding>,
    /// Model that answered.
    pub model: String,
    /// Token counts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<EmbeddingUsage>,
    /// Fields not named above.
    #[serde(flatten)]
    pub extra: Extra,
}

open_struct!(EmbeddingResponse {
    object: "object"[default = list_object()],
    data: "data"[required],
    model: "model"[default],
    usage: "usage"[default]
});

fn list_object() -> String {
    "list".to_owned()
}
