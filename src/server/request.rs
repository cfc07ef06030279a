//! What every service uses to read a request and refuse a bad one: the
//! errors a handler returns, header parsing into a service's own typed
//! header (borrowing its text), and argument helpers.
//!
//! Each service declares a small `#[derive(Deserialize)]` header with only
//! the fields its commands read (see `services::share::ShareHeader`), so
//! serde matches names at compile time and strings without escapes are
//! borrowed, not copied. Fields that take more than one shape are kept as
//! raw JSON until asked for. Unknown fields are ignored, as the original
//! server does; a known field of the wrong type, or repeated, fails the
//! request. Every failure here is an error reply and nothing more: the
//! frame arrived whole, so the connection stays usable (docs/protocol.md §2).

use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;

/// Why a command failed: the error reply's message. The connection stays
/// usable whatever the reason, a missing or mistyped field included.
pub enum CommandError {
    /// The command failed with this message.
    Failed(String),
    /// The client's roles do not permit it (`--auth`); nothing changed.
    /// The reply carries `"denied":true` so clients can tell.
    Denied(String),
}

impl CommandError {
    /// The error reply's message.
    pub fn message(&self) -> &str {
        match self {
            CommandError::Failed(m) | CommandError::Denied(m) => m,
        }
    }

    /// The error reply: `{"status":-1,"error":…}`, with `"denied":true`
    /// for a refusal.
    pub fn reply(&self) -> serde_json::Value {
        match self {
            CommandError::Failed(m) => serde_json::json!({"status": -1, "error": m}),
            CommandError::Denied(m) => {
                serde_json::json!({"status": -1, "error": m, "denied": true})
            }
        }
    }
}

/// What a command handler returns.
pub type Result<T = ()> = std::result::Result<T, CommandError>;

/// A failed command with `msg`.
pub fn failed<T>(msg: String) -> Result<T> {
    Err(CommandError::Failed(msg))
}

/// The part of every header the dispatcher reads: which command it is.
#[derive(Deserialize, Default, Debug)]
#[serde(default)]
pub struct CommandHeader<'a> {
    /// The command to run; kept raw so that a non-string is an unknown
    /// command (the connection stays open), not a malformed header.
    #[serde(borrow)]
    pub command: Option<&'a RawValue>,
}

impl<'a> CommandHeader<'a> {
    /// The command name, if it is a string.
    pub fn name(&self) -> Option<Cow<'a, str>> {
        self.command.and_then(raw_str)
    }
}

/// Parses `text`, which must be one JSON object, into a header type.
pub fn parse<'a, T: Deserialize<'a>>(text: &'a str) -> std::result::Result<T, String> {
    if !text.trim_start().starts_with('{') {
        return Err("the header is not a JSON object".into());
    }
    serde_json::from_str(text).map_err(|e| e.to_string())
}

/// Parses a service's header; a bad one fails the request.
pub fn parse_header<'a, T: Deserialize<'a>>(text: &'a str) -> Result<T> {
    parse(text).map_err(|e| CommandError::Failed(format!("JSON parsing error: {e}")))
}

/// Whether a boolean option is set.
pub fn flag(option: Option<bool>) -> bool {
    option == Some(true)
}

/// A string field that must be present.
pub fn required<'h>(field: &'h Option<Text<'_>>, name: &str) -> Result<&'h str> {
    field
        .as_deref()
        .ok_or_else(|| CommandError::Failed(format!("JSON parsing error: missing field: {name}")))
}

/// A raw JSON field that must be present and a string.
pub fn required_raw_str<'h>(raw: Option<&'h RawValue>, name: &str) -> Result<Cow<'h, str>> {
    let raw = raw.ok_or_else(|| {
        CommandError::Failed(format!("JSON parsing error: missing field: {name}"))
    })?;
    raw_str(raw)
        .ok_or_else(|| CommandError::Failed(format!("JSON parsing error: {name}: expected string")))
}

/// A string that borrows from the header unless it had escapes. (serde's
/// own `Cow<str>` inside an `Option` always copies.)
#[derive(Debug, PartialEq)]
pub struct Text<'a>(pub Cow<'a, str>);

impl std::ops::Deref for Text<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for V<'a> {
            type Value = Text<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: serde::de::Error>(
                self,
                s: &'de str,
            ) -> std::result::Result<Text<'a>, E> {
                Ok(Text(Cow::Borrowed(s)))
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> std::result::Result<Text<'a>, E> {
                Ok(Text(Cow::Owned(s.to_owned())))
            }
        }
        d.deserialize_str(V(std::marker::PhantomData))
    }
}

/// A raw JSON value as a string, if it is one.
pub fn raw_str(raw: &RawValue) -> Option<Cow<'_, str>> {
    let text = raw.get();
    // Without escapes the text between the quotes is the string itself.
    if text.len() >= 2 && text.starts_with('"') && !text.contains('\\') {
        return Some(Cow::Borrowed(&text[1..text.len() - 1]));
    }
    serde_json::from_str::<String>(text).ok().map(Cow::Owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A header with fields of every shape the services' headers use.
    #[derive(Deserialize, Default, Debug)]
    #[serde(default)]
    struct Header<'a> {
        #[serde(borrow)]
        command: Option<&'a RawValue>,
        #[serde(borrow)]
        name: Option<&'a RawValue>,
        n: Option<f64>,
        timeout: Option<f64>,
        wait: Option<bool>,
        #[serde(borrow)]
        share: Option<Text<'a>>,
        #[serde(borrow)]
        key: Option<Text<'a>>,
        #[serde(borrow)]
        keys: Option<Vec<Text<'a>>>,
        nowait: Option<bool>,
        absent: Option<bool>,
        #[serde(borrow)]
        space: Option<Text<'a>>,
        #[serde(borrow)]
        pattern: Option<&'a RawValue>,
    }

    impl<'a> Header<'a> {
        fn parse(text: &'a str) -> std::result::Result<Header<'a>, String> {
            parse(text)
        }
        fn command(&self) -> Option<Cow<'a, str>> {
            self.command.and_then(raw_str)
        }
        fn flag(option: Option<bool>) -> bool {
            flag(option)
        }
    }

    #[test]
    fn reads_typed_fields_and_borrows_plain_strings() {
        let text = r#"{"command":"share_set","key":"a\"b","share":"s","n":3,"timeout":2.5,
            "nowait":true,"absent":null,"name":["g",1],"keys":["x","y"],"other":{"z":[1]}}"#;
        let h = Header::parse(text).unwrap();
        assert_eq!(h.command().as_deref(), Some("share_set"));
        assert!(matches!(h.share, Some(Text(Cow::Borrowed("s")))));
        assert!(matches!(h.key, Some(Text(Cow::Owned(ref k))) if k == "a\"b"));
        assert_eq!((h.n, h.timeout), (Some(3.0), Some(2.5)));
        assert!(Header::flag(h.nowait) && !Header::flag(h.absent) && !Header::flag(h.wait));
        assert_eq!(h.name.unwrap().get(), r#"["g",1]"#);
        let keys: Vec<&str> = h.keys.iter().flatten().map(|k| &**k).collect();
        assert_eq!(keys, ["x", "y"]);
        assert!(h.space.is_none() && h.pattern.is_none());
        let odd = Header::parse(r#"{"command":5}"#).unwrap();
        assert_eq!(odd.command(), None);
        let escaped = Header::parse(r#"{"command":"s\u0065nd"}"#).unwrap();
        assert_eq!(escaped.command().as_deref(), Some("send"));
    }

    #[test]
    fn refuses_what_is_not_one_well_typed_object() {
        for bad in [
            "[1,2]",
            "\"s\"",
            "{not json",
            "{} {}",
            "{\"a\":1",
            r#"{"key":5}"#,
            r#"{"timeout":"soon"}"#,
        ] {
            assert!(Header::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            Header::parse("[]").unwrap_err(),
            "the header is not a JSON object"
        );
    }

    use proptest::prelude::*;

    proptest! {
        /// Whatever text a client sends, parsing answers and never panics.
        #[test]
        fn any_text_parses_or_is_refused(
            text in "\\PC{0,80}",
            cut in 0usize..120,
            with in "[{}\\[\\]\",:\\\\a0 ]{0,3}",
        ) {
            let _ = Header::parse(&text).map(|h| h.command());
            // And a real header with a piece cut out and something put in.
            let real = r#"{"command":"share_set","share":"s","key":"k\"q","timeout":5,"name":["a"]}"#;
            let at = real.char_indices().map(|(i, _)| i).nth(cut % real.len()).unwrap_or(0);
            let end = real.len().min(at + cut % 7);
            let mutated = format!("{}{with}{}", &real[..at], &real[end..]);
            let _ = Header::parse(&mutated).map(|h| (h.command(), h.name.map(|n| n.get().len())));
        }

        /// Strings of any content, escapes included, come back exactly.
        #[test]
        fn fields_round_trip(
            command in "\\PC{0,12}",
            key in "\\PC{0,12}",
            share in proptest::option::of("\\PC{0,12}"),
            timeout in proptest::option::of(0.0f64..1e9),
            nowait in any::<bool>(),
            junk in "[a-z]{1,8}",
        ) {
            let mut obj = serde_json::json!({
                "command": command, "key": key, "nowait": nowait,
                "timeout": timeout, "share": share,
            });
            // A field no command reads must not disturb the others.
            obj[format!("x_{junk}")] = serde_json::json!([1, {"a": null}]);
            let text = obj.to_string();
            let h = Header::parse(&text).unwrap();
            let got = h.command();
            prop_assert_eq!(got.as_deref(), Some(command.as_str()));
            prop_assert_eq!(h.key.as_deref(), Some(key.as_str()));
            prop_assert_eq!(h.share.as_deref(), share.as_deref());
            // serde_json's default float parsing may differ in the last bit.
            prop_assert_eq!(h.timeout.is_some(), timeout.is_some());
            if let (Some(a), Some(b)) = (h.timeout, timeout) {
                prop_assert!((a - b).abs() <= b * 1e-15, "{a} vs {b}");
            }
            prop_assert_eq!(Header::flag(h.nowait), nowait);
        }
    }
}
