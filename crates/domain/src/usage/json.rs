//! The two readers of a message's JSON: the general path's `serde_json` value, and the fast
//! path's borrowed view of an escape-free message; the validator reads both through `JsonObject`.

use super::*;

/// A JSON value as the validator reads it, from either path's objects.
pub(super) enum Field<'a, O> {
    Absent,
    Null,
    Str(&'a str),
    Number(&'a serde_json::Number),
    Object(&'a O),
    Other,
}

/// A JSON object as the validator reads it: the general path's `serde_json::Map`, or the fast
/// path's [`FastObject`].
pub(super) trait JsonObject: Sized {
    fn field(&self, name: &str) -> Field<'_, Self>;
    /// The keys, each once.
    fn keys(&self) -> Vec<&str>;
    fn len(&self) -> usize;
}

impl JsonObject for Map<String, Value> {
    fn field(&self, name: &str) -> Field<'_, Self> {
        match self.get(name) {
            None => Field::Absent,
            Some(Value::Null) => Field::Null,
            Some(Value::String(s)) => Field::Str(s),
            Some(Value::Number(n)) => Field::Number(n),
            Some(Value::Object(o)) => Field::Object(o),
            Some(_) => Field::Other,
        }
    }
    fn keys(&self) -> Vec<&str> {
        Map::keys(self).map(String::as_str).collect()
    }
    fn len(&self) -> usize {
        Map::len(self)
    }
}

/// The fast path's object: members in document order, strings borrowed from the message. It
/// reads only what usage events are made of — objects (at most three deep) whose values are
/// strings or such objects, in text without escapes or control characters — and nothing else;
/// anything else is for the general path. An object that names a member twice is not read either:
/// the general path refuses it as not I-JSON (RFC 7493), so each name here has one value.
pub(super) struct FastObject<'a>(Vec<(&'a str, FastValue<'a>)>);

pub(super) enum FastValue<'a> {
    Str(&'a str),
    Object(FastObject<'a>),
}

impl JsonObject for FastObject<'_> {
    fn field(&self, name: &str) -> Field<'_, Self> {
        match self.0.iter().find(|(k, _)| *k == name) {
            None => Field::Absent,
            Some((_, FastValue::Str(s))) => Field::Str(s),
            Some((_, FastValue::Object(o))) => Field::Object(o),
        }
    }
    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(k, _)| *k).collect()
    }
    fn len(&self) -> usize {
        self.0.len()
    }
}

impl<'a> FastObject<'a> {
    /// The object `text` holds, if it is one the fast path reads (the caller has made sure the
    /// text has no backslash, so no escapes).
    pub(super) fn parse(text: &'a str) -> Option<FastObject<'a>> {
        let mut r = Reader { b: text.as_bytes(), text, at: 0 };
        let object = r.object(0)?;
        r.blanks();
        (r.at == r.b.len()).then_some(object)
    }
}

/// Most members an object read by the fast path may have (a usage event's `data` has ten).
const FAST_MEMBERS_MAX: usize = 16;

/// A cursor over JSON text without escapes.
pub(super) struct Reader<'a> {
    b: &'a [u8],
    text: &'a str,
    at: usize,
}

impl<'a> Reader<'a> {
    fn blanks(&mut self) {
        while matches!(self.b.get(self.at), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    fn eat(&mut self, byte: u8) -> Option<()> {
        self.blanks();
        (self.b.get(self.at) == Some(&byte)).then(|| self.at += 1)
    }

    /// A string: everything up to the next quote (the text has no escapes).
    fn string(&mut self) -> Option<&'a str> {
        self.eat(b'"')?;
        let start = self.at;
        let end = start + memchr::memchr(b'"', &self.b[start..])?;
        self.at = end + 1;
        // Quotes are ASCII: both ends are character boundaries.
        Some(&self.text[start..end])
    }

    fn object(&mut self, depth: usize) -> Option<FastObject<'a>> {
        if depth > 2 {
            return None;
        }
        self.eat(b'{')?;
        let mut members: Vec<(&'a str, FastValue<'a>)> = Vec::with_capacity(12);
        if self.eat(b'}').is_some() {
            return Some(FastObject(members));
        }
        loop {
            let key = self.string()?;
            self.eat(b':')?;
            self.blanks();
            let value = match self.b.get(self.at)? {
                b'"' => FastValue::Str(self.string()?),
                b'{' => FastValue::Object(self.object(depth + 1)?),
                _ => return None,
            };
            // Usage events have a dozen members per object: a linear scan is the cheapest check,
            // and an object of more members than usage v1 can hold goes the general way.
            if members.len() >= FAST_MEMBERS_MAX || members.iter().any(|(k, _)| *k == key) {
                return None;
            }
            members.push((key, value));
            self.blanks();
            match self.b.get(self.at)? {
                b',' => self.at += 1,
                b'}' => {
                    self.at += 1;
                    return Some(FastObject(members));
                }
                _ => return None,
            }
        }
    }
}
