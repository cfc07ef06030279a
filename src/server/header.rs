//! A request's JSON header, indexed rather than turned into a tree.
//!
//! Parsing every header into a `serde_json::Value` cost about half of the
//! server's own (non-kernel) work per request: a map node and a string per
//! field, all freed again microseconds later. Here the header is scanned
//! once into a reused buffer with the byte ranges of each field; handlers
//! then read the fields they need, typed, straight from the text.

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::fmt;
use std::ops::Range;

/// Where a field's name is: in the text, or unescaped when it had escapes.
enum Name {
    Span(Range<usize>),
    Unescaped(String),
}

/// The fields of one JSON-object header.
#[derive(Default)]
pub struct Header {
    text: String,
    fields: Vec<(Name, Range<usize>)>,
}

/// Why a field cannot be read as the type asked for.
#[derive(Debug)]
pub struct FieldError(pub String);

impl Header {
    /// Parses `json`, which must be one JSON object.
    pub fn parse(json: &[u8]) -> Result<Header, String> {
        let mut h = Header::default();
        h.parse_into(json)?;
        Ok(h)
    }

    /// Parses `json` into `self`, reusing its buffers.
    pub fn parse_into(&mut self, json: &[u8]) -> Result<(), String> {
        self.text.clear();
        self.fields.clear();
        self.text
            .push_str(std::str::from_utf8(json).map_err(|e| format!("invalid UTF-8: {e}"))?);
        if !self.text.trim_start().starts_with('{') {
            return Err("the header is not a JSON object".into());
        }
        let mut de = serde_json::Deserializer::from_str(&self.text);
        de.deserialize_any(Indexer {
            base: self.text.as_ptr() as usize,
            fields: &mut self.fields,
        })
        .map_err(|e| e.to_string())?;
        de.end().map_err(|e| e.to_string())
    }

    /// The raw JSON text of field `name` (the last one, if repeated).
    pub fn raw(&self, name: &str) -> Option<&str> {
        self.fields.iter().rev().find_map(|(n, v)| {
            let matches = match n {
                Name::Span(r) => &self.text[r.clone()] == name,
                Name::Unescaped(s) => s == name,
            };
            matches.then(|| &self.text[v.clone()])
        })
    }

    /// True when field `name` is absent or `null`.
    pub fn is_absent(&self, name: &str) -> bool {
        self.raw(name).is_none_or(|r| r == "null")
    }

    /// Field `name` as a string; `None` when absent or `null`.
    pub fn str(&self, name: &str) -> Result<Option<Cow<'_, str>>, FieldError> {
        match self.raw(name) {
            None | Some("null") => Ok(None),
            // Without escapes the text between the quotes is the string.
            Some(raw) if raw.len() >= 2 && raw.starts_with('"') && !raw.contains('\\') => {
                Ok(Some(Cow::Borrowed(&raw[1..raw.len() - 1])))
            }
            Some(raw) => serde_json::from_str::<Text>(raw)
                .map(|t| Some(t.0))
                .map_err(|_| FieldError(format!("{name}: expected string"))),
        }
    }

    /// Field `name` as a number; `None` when absent or `null`.
    pub fn f64(&self, name: &str) -> Result<Option<f64>, FieldError> {
        match self.raw(name) {
            None | Some("null") => Ok(None),
            Some(raw) => serde_json::from_str::<f64>(raw)
                .map(Some)
                .map_err(|_| FieldError(format!("{name}: expected a number"))),
        }
    }

    /// Field `name` if it is `true`; anything else counts as false.
    pub fn flag(&self, name: &str) -> bool {
        self.raw(name) == Some("true")
    }

    /// Field `name` as a JSON tree, for the rare structured fields.
    pub fn json(&self, name: &str) -> Option<serde_json::Value> {
        self.raw(name).and_then(|r| serde_json::from_str(r).ok())
    }
}

/// A string that borrows from the header unless it had escapes.
struct Text<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(s)))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(s.to_owned())))
            }
        }
        d.deserialize_str(V)
    }
}

/// Records each field's name and value span, relative to `base`.
struct Indexer<'f> {
    base: usize,
    fields: &'f mut Vec<(Name, Range<usize>)>,
}

impl Indexer<'_> {
    fn span(&self, s: &str) -> Range<usize> {
        let start = s.as_ptr() as usize - self.base;
        start..start + s.len()
    }
}

impl<'de> Visitor<'de> for Indexer<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("the header to be a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(Text(name)) = map.next_key::<Text<'de>>()? {
            let value: &'de RawValue = map.next_value()?;
            let name = match name {
                Cow::Borrowed(s) => Name::Span(self.span(s)),
                Cow::Owned(s) => Name::Unescaped(s),
            };
            let value = self.span(value.get());
            self.fields.push((name, value));
        }
        Ok(())
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_typed_fields() {
        let h = Header::parse(
            br#"{"command":"share_set","key":"a\"b","n":3,"t":2.5,"w":true,"x":null,"l":[1,{"y":2}]}"#,
        )
        .unwrap();
        assert_eq!(h.str("command").unwrap().as_deref(), Some("share_set"));
        assert_eq!(h.str("key").unwrap().as_deref(), Some("a\"b"));
        assert_eq!(h.f64("n").unwrap(), Some(3.0));
        assert_eq!(h.f64("t").unwrap(), Some(2.5));
        assert!(h.flag("w") && !h.flag("n") && !h.flag("missing"));
        assert!(h.is_absent("x") && h.is_absent("missing") && !h.is_absent("n"));
        assert_eq!(h.str("x").unwrap(), None);
        assert_eq!(h.json("l").unwrap(), serde_json::json!([1, {"y": 2}]));
        assert_eq!(h.str("n").unwrap_err().0, "n: expected string");
        assert_eq!(h.f64("key").unwrap_err().0, "key: expected a number");
    }

    #[test]
    fn escaped_names_and_repeats() {
        let h = Header::parse(br#"{"comm\u0061nd":"a","k":1,"k":2}"#).unwrap();
        assert_eq!(h.str("command").unwrap().as_deref(), Some("a"));
        assert_eq!(h.f64("k").unwrap(), Some(2.0), "the last repeat wins");
    }

    #[test]
    fn refuses_what_is_not_one_object() {
        for bad in [
            &b"[1,2]"[..],
            b"\"s\"",
            b"{not json",
            b"{} {}",
            b"{\"a\":1",
            b"\xff",
        ] {
            assert!(Header::parse(bad).is_err(), "{bad:?}");
        }
        let mut h = Header::parse(br#"{"a":1}"#).unwrap();
        h.parse_into(br#"{"b":2}"#).unwrap();
        assert!(h.raw("a").is_none() && h.raw("b") == Some("2"));
    }
}
