//! Management request bodies, read as LiteLLM's clients expect: a field of the wrong type is a
//! 400 naming it, while `null`s and fields Traceway does not implement are accepted (the latter
//! logged at debug level), never refused.

use crate::error::ApiError;
use serde_json::{Map, Value};

/// The type a lenient field must have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A string.
    Str,
    /// A number.
    Num,
    /// A whole number.
    Int,
    /// An object.
    Obj,
    /// A list of strings.
    StrList,
    /// A list of anything.
    List,
}

/// A JSON object body, consumed field by field.
#[derive(Debug)]
pub struct Body {
    map: Map<String, Value>,
    route: &'static str,
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn wrong(name: &str, want: &str, got: &Value) -> ApiError {
    ApiError::bad_request(
        format!("{name} must be {want}, not {}", type_name(got)),
        Some(name),
    )
}

impl Body {
    /// Parses `bytes` (empty means `{}`) as an object.
    pub fn parse(bytes: &[u8], route: &'static str) -> Result<Body, ApiError> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Body {
                map: Map::new(),
                route,
            });
        }
        match serde_json::from_slice::<Value>(bytes) {
            Ok(Value::Object(map)) => Ok(Body { map, route }),
            Ok(other) => Err(ApiError::bad_request(
                format!(
                    "the request body must be a JSON object, not {}",
                    type_name(&other)
                ),
                None,
            )),
            Err(e) => Err(ApiError::bad_request(
                format!("the request body is not valid JSON: {e}"),
                None,
            )),
        }
    }

    fn take(&mut self, name: &str) -> Option<Value> {
        self.map.remove(name).filter(|v| !v.is_null())
    }

    /// A field as it came, for fields of more than one shape (`null` is absent).
    pub fn raw(&mut self, name: &str) -> Option<Value> {
        self.take(name)
    }

    /// A string field.
    pub fn string(&mut self, name: &str) -> Result<Option<String>, ApiError> {
        match self.take(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(wrong(name, "a string", &other)),
        }
    }

    /// A string field that must be present and not empty.
    pub fn required_string(&mut self, name: &str) -> Result<String, ApiError> {
        match self.string(name)? {
            Some(s) if !s.trim().is_empty() => Ok(s),
            _ => Err(ApiError::bad_request(
                format!("{name} is required"),
                Some(name),
            )),
        }
    }

    /// A list of strings.
    pub fn strings(&mut self, name: &str) -> Result<Option<Vec<String>>, ApiError> {
        match self.take(name) {
            None => Ok(None),
            Some(Value::Array(items)) => items
                .into_iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s),
                    other => Err(wrong(name, "a list of strings", &other)),
                })
                .collect::<Result<_, _>>()
                .map(Some),
            Some(other) => Err(wrong(name, "a list of strings", &other)),
        }
    }

    /// An object.
    pub fn object(&mut self, name: &str) -> Result<Option<Map<String, Value>>, ApiError> {
        match self.take(name) {
            None => Ok(None),
            Some(Value::Object(m)) => Ok(Some(m)),
            Some(other) => Err(wrong(name, "an object", &other)),
        }
    }

    /// A list of anything.
    pub fn list(&mut self, name: &str) -> Result<Option<Vec<Value>>, ApiError> {
        match self.take(name) {
            None => Ok(None),
            Some(Value::Array(items)) => Ok(Some(items)),
            Some(other) => Err(wrong(name, "a list", &other)),
        }
    }

    /// A whole number, 0 or more (`5.0` counts as 5).
    pub fn count(&mut self, name: &str) -> Result<Option<i64>, ApiError> {
        match self.take(name) {
            None => Ok(None),
            Some(Value::Number(n)) => {
                let v = n.as_i64().or_else(|| {
                    n.as_f64()
                        .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                        .map(|f| f as i64)
                });
                match v {
                    Some(v) if v >= 0 => Ok(Some(v)),
                    _ => Err(ApiError::bad_request(
                        format!("{name} must be a whole number, 0 or more"),
                        Some(name),
                    )),
                }
            }
            Some(other) => Err(wrong(name, "a whole number", &other)),
        }
    }

    /// A number, 0 or more.
    pub fn amount(&mut self, name: &str) -> Result<Option<f64>, ApiError> {
        match self.take(name) {
            None => Ok(None),
            Some(Value::Number(n)) => match n.as_f64() {
                Some(v) if v.is_finite() && v >= 0.0 => Ok(Some(v)),
                _ => Err(ApiError::bad_request(
                    format!("{name} must be a number, 0 or more"),
                    Some(name),
                )),
            },
            Some(other) => Err(wrong(name, "a number", &other)),
        }
    }

    /// `true` / `false`.
    pub fn boolean(&mut self, name: &str) -> Result<Option<bool>, ApiError> {
        match self.take(name) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(b)),
            Some(other) => Err(wrong(name, "true or false", &other)),
        }
    }

    /// LiteLLM fields stored as they are (type-checked) but not acted on yet, into `extra`.
    pub fn extras(
        &mut self,
        fields: &[(&str, Kind)],
        extra: &mut Map<String, Value>,
    ) -> Result<(), ApiError> {
        for (name, kind) in fields {
            let Some(v) = self.take(name) else { continue };
            let ok = match kind {
                Kind::Str => v.is_string(),
                Kind::Num => v.is_number(),
                Kind::Int => v.is_i64() || v.is_u64(),
                Kind::Obj => v.is_object(),
                Kind::List => v.is_array(),
                Kind::StrList => v
                    .as_array()
                    .is_some_and(|items| items.iter().all(Value::is_string)),
            };
            if !ok {
                let want = match kind {
                    Kind::Str => "a string",
                    Kind::Num => "a number",
                    Kind::Int => "a whole number",
                    Kind::Obj => "an object",
                    Kind::StrList => "a list of strings",
                    Kind::List => "a list",
                };
                return Err(wrong(name, want, &v));
            }
            extra.insert((*name).to_owned(), v);
        }
        Ok(())
    }

    /// Logs (at debug level) the fields nobody read: accepted, not implemented.
    pub fn finish(self) {
        let ignored: Vec<&String> = self
            .map
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, _)| k)
            .collect();
        if !ignored.is_empty() {
            tracing::debug!(
                "{}: ignoring fields Traceway does not implement: {ignored:?}",
                self.route
            );
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn nulls_are_absent_and_wrong_types_name_the_field() {
        let mut b = Body::parse(
            br#"{"a": null, "s": "x", "n": 5.0, "l": ["x"], "bad": 3, "o": {}, "t": ["k", 1]}"#,
            "/t",
        )
        .unwrap();
        assert_eq!(b.string("a").unwrap(), None);
        assert_eq!(b.string("s").unwrap().as_deref(), Some("x"));
        assert_eq!(b.count("n").unwrap(), Some(5));
        assert_eq!(b.strings("l").unwrap(), Some(vec!["x".to_owned()]));
        let e = b.string("bad").unwrap_err();
        assert_eq!(e.0.param.as_deref(), Some("bad"));
        assert!(e.0.message.contains("must be a string"), "{}", e.0.message);
        let mut extra = Map::new();
        b.extras(&[("o", Kind::Obj)], &mut extra).unwrap();
        assert!(extra.contains_key("o"));
        assert!(b.extras(&[("t", Kind::StrList)], &mut extra).is_err());
        assert!(Body::parse(b"", "/t").is_ok());
        assert!(Body::parse(b"[1]", "/t").is_err());
        assert!(Body::parse(b"{", "/t").is_err());
        let mut b = Body::parse(br#"{"n": -1, "m": 1.5}"#, "/t").unwrap();
        assert!(b.count("n").is_err());
        assert!(b.count("m").is_err());
    }
}
