//! Reading JSON from outside as I-JSON (RFC 7493): an object whose member names repeat is refused,
//! at every depth, before anything reads its values. serde_json keeps the last of repeated
//! members; another reader of the same bytes (an auditor, a dead-letter tool, a schema validator)
//! may keep the first, so such a message means different things to different readers.
//!
//! Why hand-written: serde_json has no option to refuse repeated names, and no well-kept crate
//! does it for serde_json. This is not a parser: it is a serde `Visitor` driven by serde_json's
//! own parser, which compares names after unescaping (`"a"` and `"\u0061"` are the same name) and
//! keeps its recursion limit; values are skipped, so nothing is built.

use serde::de::{self, DeserializeOwned, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use std::collections::HashSet;
use std::fmt;

/// Why a text was not read.
#[derive(Debug, thiserror::Error)]
pub enum JsonError {
    /// Not JSON, or JSON that is not the shape `T` asks for (serde_json's message, with its
    /// line and column).
    #[error("{0}")]
    Malformed(serde_json::Error),
    /// A member name repeats in one object: which name, where (a path such as `data.labels`),
    /// and serde_json's line and column.
    #[error("{0}")]
    DuplicateMember(String),
}

/// Reads `text` as a `T`, refusing repeated member names at every depth.
pub fn from_str<T: DeserializeOwned>(text: &str) -> Result<T, JsonError> {
    check_unique_members(text)?;
    serde_json::from_str(text).map_err(JsonError::Malformed)
}

/// Reads `bytes` as a `T`, refusing repeated member names at every depth.
pub fn from_slice<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, JsonError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    classify(Members { path: String::new() }.deserialize(&mut de).and_then(|()| de.end()))?;
    serde_json::from_slice(bytes).map_err(JsonError::Malformed)
}

/// Ok if `text` is JSON whose objects each name a member at most once.
pub fn check_unique_members(text: &str) -> Result<(), JsonError> {
    let mut de = serde_json::Deserializer::from_str(text);
    classify(Members { path: String::new() }.deserialize(&mut de).and_then(|()| de.end()))
}

/// The only data error `Members` raises is a repeated name; everything else is syntax.
fn classify(r: Result<(), serde_json::Error>) -> Result<(), JsonError> {
    r.map_err(|e| match e.classify() {
        serde_json::error::Category::Data => JsonError::DuplicateMember(e.to_string()),
        _ => JsonError::Malformed(e),
    })
}

/// Walks one JSON value; `path` names it for the message (empty at the top).
struct Members {
    path: String,
}

impl Members {
    fn child(&self, name: impl fmt::Display) -> Members {
        let path = if self.path.is_empty() { name.to_string() } else { format!("{}.{name}", self.path) };
        Members { path }
    }
}

impl<'de> DeserializeSeed<'de> for Members {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Members {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_i128<E>(self, _: i128) -> Result<(), E> {
        Ok(())
    }
    fn visit_u128<E>(self, _: u128) -> Result<(), E> {
        Ok(())
    }
    // float-ok: serde hands a JSON number to this visitor as f64; its value is ignored (only member names are checked).
    fn visit_f64<E>(self, _: f64 /* float-ok */) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut i = 0usize;
        while seq.next_element_seed(Members { path: format!("{}[{i}]", self.path) })?.is_some() {
            i += 1;
        }
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen: HashSet<String> = HashSet::new();
        while let Some(name) = map.next_key::<String>()? {
            if seen.contains(&name) {
                let shown: String = name.chars().take(64).collect();
                let within = if self.path.is_empty() { "the top-level object".to_string() } else { self.path.clone() };
                return Err(de::Error::custom(format_args!(
                    "member name {shown:?} appears more than once in {within} (I-JSON, RFC 7493, refuses repeated names)"
                )));
            }
            map.next_value_seed(self.child(&name))?;
            seen.insert(name);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn check(text: &str, expect: Result<(), &str>) {
        let got = from_str::<Value>(text);
        match (expect, got) {
            (Ok(()), Ok(_)) => {}
            (Err(part), Err(JsonError::DuplicateMember(m))) => assert!(m.contains(part), "{text}: {m}"),
            (e, g) => panic!("{text}: expected {e:?}, got {g:?}"),
        }
        // Both entry points agree.
        assert_eq!(from_slice::<Value>(text.as_bytes()).is_ok(), from_str::<Value>(text).is_ok(), "{text}");
    }

    #[test]
    fn repeated_names_are_refused_at_every_depth() {
        check(r#"{"a":"1","b":"2"}"#, Ok(()));
        check(r#"{"a":{"a":{"a":"same name, other objects"}}}"#, Ok(()));
        check(r#"[{"a":1},{"a":2}]"#, Ok(()));
        check(r#"{"a":"1","a":"2"}"#, Err(r#""a" appears more than once in the top-level object"#));
        check(r#"{"a":"1","a":"1"}"#, Err(r#""a""#));
        check(r#"{"data":{"gpu_seconds":"10","gpu_seconds":"20"}}"#, Err("in data "));
        check(r#"{"data":{"labels":{"k":"x","k":"y"}}}"#, Err("in data.labels "));
        check(r#"{"items":[{"x":1},{"x":1,"x":2}]}"#, Err("in items[1] "));
        // Names are compared after unescaping.
        check(r#"{"tenant_id":"a","tenant\u005fid":"b"}"#, Err(r#""tenant_id""#));
    }

    #[test]
    fn malformed_json_is_not_a_duplicate() {
        for text in ["", "{", r#"{"a":}"#, r#"{"a":1} x"#, "[1,]"] {
            assert!(matches!(from_str::<Value>(text), Err(JsonError::Malformed(_))), "{text}");
        }
    }

    #[test]
    fn deep_nesting_is_refused_not_overflowed() {
        let text = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(matches!(from_str::<Value>(&text), Err(JsonError::Malformed(_))));
    }
}
