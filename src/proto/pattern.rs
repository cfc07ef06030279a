//! Tuple-space patterns: how a tuple field is matched, shared by the server
//! (which matches) and clients (which build patterns).
//!
//! On the wire a pattern is a JSON array in the request header, one entry
//! per field, plus a dimeb list payload holding the exact values in order:
//! `{"value":true}` takes the next exact value from the payload;
//! `{"any":true}`; `{"type":T}` with T one of `null bool int float complex
//! string list map matrix` or a class name (`int8` … `uint64`, `single`,
//! `double`, `complex single`, `complex double`), and for `matrix` an
//! optional `"class"` (a class name or `logical`) and `"rank"`;
//! `{"min":X,"max":Y}` (either optional, inclusive) for real numbers.

use crate::codec::dimeb;
use crate::value::{ElemKind, Value};
use serde_json::{Value as Json, json};

/// One field of a pattern.
#[derive(Clone, Debug, PartialEq)]
pub enum Field {
    /// Equal by type and value (matrices by class, shape and content).
    Value(Value),
    /// Anything.
    Any,
    /// A value of a type (see the module docs for the names).
    Type(String),
    /// A matrix, optionally of one class and rank.
    Matrix {
        /// Element class (`ElemKind::name()`), any if None.
        class: Option<ElemKind>,
        /// Rank, any if None.
        rank: Option<u8>,
    },
    /// A real scalar number within bounds (inclusive).
    Range {
        /// Lower bound.
        min: Option<f64>,
        /// Upper bound.
        max: Option<f64>,
    },
}

/// Why a pattern is not valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatternError(pub String);

impl std::fmt::Display for PatternError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid pattern: {}", self.0)
    }
}

const TYPE_NAMES: [&str; 9] = [
    "null", "bool", "int", "float", "complex", "string", "list", "map", "matrix",
];

/// The class named `name` (`double`, `int8`, `logical` …).
pub fn class_by_name(name: &str) -> Option<ElemKind> {
    ElemKind::ALL.into_iter().find(|k| k.name() == name)
}

/// True if `name` is a type a [`Field::Type`] may name (see the module
/// docs), so clients can refuse a misspelt type before asking the server.
pub fn is_type_name(name: &str) -> bool {
    name == "matrix" || tags_of(name).is_some()
}

/// Encodes a pattern as (JSON header array, dimeb payload of exact values).
pub fn encode(fields: &[Field]) -> Result<(Json, Vec<u8>), PatternError> {
    let mut exact = Vec::new();
    let spec: Vec<Json> = fields
        .iter()
        .map(|f| match f {
            Field::Value(v) => {
                exact.push(v.clone());
                json!({"value": true})
            }
            Field::Any => json!({"any": true}),
            Field::Type(t) => json!({"type": t}),
            Field::Matrix { class, rank } => {
                let mut o = json!({"type": "matrix"});
                if let Some(c) = class {
                    o["class"] = json!(c.name());
                }
                if let Some(r) = rank {
                    o["rank"] = json!(r);
                }
                o
            }
            // Both keys always, null for "no bound": `{}` would not say
            // this is a range, so an unbounded one (any real number)
            // would be refused.
            Field::Range { min, max } => json!({"min": min, "max": max}),
        })
        .collect();
    let payload = dimeb::encode(&Value::List(exact)).map_err(|e| PatternError(e.0))?;
    Ok((Json::Array(spec), payload))
}

/// A compiled field matcher over encoded values.
#[derive(Clone, Debug)]
pub enum Matcher {
    /// Byte-equal encoding.
    Exact(Vec<u8>),
    /// Anything.
    Any,
    /// One of these tags.
    Tags(&'static [u8]),
    /// Matrix tag/rank constraints.
    Matrix {
        /// Required tag, if any.
        tag: Option<u8>,
        /// Required rank, if any.
        rank: Option<u8>,
    },
    /// Real number in range.
    Range {
        /// Lower bound.
        min: Option<Bound>,
        /// Upper bound.
        max: Option<Bound>,
    },
}

/// A range bound, exact for integers.
#[derive(Clone, Copy, Debug)]
pub enum Bound {
    /// An integer bound.
    Int(i128),
    /// A float bound.
    Float(f64),
}

fn tags_of(name: &str) -> Option<&'static [u8]> {
    Some(match name {
        "null" => &[0x00],
        "bool" => &[0x01, 0x02],
        "int" => &[0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0A],
        "float" => &[0x0B, 0x0C],
        "complex" => &[0x0D, 0x0E],
        "string" => &[0x20],
        "list" => &[0x21],
        "map" => &[0x22],
        "int8" => &[0x03],
        "int16" => &[0x04],
        "int32" => &[0x05],
        "int64" => &[0x06],
        "uint8" => &[0x07],
        "uint16" => &[0x08],
        "uint32" => &[0x09],
        "uint64" => &[0x0A],
        "single" => &[0x0B],
        "double" => &[0x0C],
        "complex single" => &[0x0D],
        "complex double" => &[0x0E],
        _ => return None,
    })
}

fn bound(v: Option<&Json>, name: &str) -> Result<Option<Bound>, PatternError> {
    match v {
        None | Some(Json::Null) => Ok(None),
        Some(j) => {
            if let Some(i) = j.as_i64() {
                Ok(Some(Bound::Int(i as i128)))
            } else if let Some(u) = j.as_u64() {
                Ok(Some(Bound::Int(u as i128)))
            } else if let Some(f) = j.as_f64() {
                Ok(Some(Bound::Float(f)))
            } else {
                Err(PatternError(format!("{name} must be a number")))
            }
        }
    }
}

/// Compiles a pattern from its JSON spec and exact-values payload.
pub fn compile(spec: &Json, exact_payload: &[u8]) -> Result<Vec<Matcher>, PatternError> {
    let Json::Array(entries) = spec else {
        return Err(PatternError("pattern must be a JSON array".into()));
    };
    let mut exact = if exact_payload.is_empty() {
        Vec::new()
    } else {
        split_list(exact_payload).map_err(|e| PatternError(format!("exact values: {e}")))?
    }
    .into_iter();
    entries
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let bad = |m: &str| PatternError(format!("field {i}: {m}"));
            let Json::Object(o) = e else {
                return Err(bad("expected an object"));
            };
            if o.get("value").and_then(Json::as_bool) == Some(true) {
                let (a, b) = exact
                    .next()
                    .ok_or_else(|| bad("more value fields than exact values"))?;
                return Ok(Matcher::Exact(exact_payload[a..b].to_vec()));
            }
            if o.get("any").and_then(Json::as_bool) == Some(true) {
                return Ok(Matcher::Any);
            }
            if let Some(t) = o.get("type") {
                let t = t.as_str().ok_or_else(|| bad("type must be a string"))?;
                if t == "matrix" {
                    let tag = match o.get("class").and_then(Json::as_str) {
                        None => None,
                        Some(c) => Some(
                            0x10 | class_by_name(c)
                                .ok_or_else(|| bad(&format!("unknown class '{c}'")))?
                                as u8,
                        ),
                    };
                    let rank = match o.get("rank") {
                        None | Some(Json::Null) => None,
                        Some(r) => Some(
                            r.as_u64()
                                .and_then(|r| u8::try_from(r).ok())
                                .ok_or_else(|| bad("rank must be 0..255"))?,
                        ),
                    };
                    return Ok(Matcher::Matrix { tag, rank });
                }
                return tags_of(t).map(Matcher::Tags).ok_or_else(|| {
                    bad(&format!(
                        "unknown type '{t}' (expected one of {} or a class name)",
                        TYPE_NAMES.join(", ")
                    ))
                });
            }
            if o.contains_key("min") || o.contains_key("max") {
                return Ok(Matcher::Range {
                    min: bound(o.get("min"), "min").map_err(|e| bad(&e.0))?,
                    max: bound(o.get("max"), "max").map_err(|e| bad(&e.0))?,
                });
            }
            Err(bad("expected value, any, type, or min/max"))
        })
        .collect()
}

/// Byte ranges of the items of an encoded list.
pub fn split_list(bytes: &[u8]) -> Result<Vec<(usize, usize)>, dimeb::CodecError> {
    if bytes.len() < 5 || bytes[0] != 0x21 {
        return Err(dimeb::CodecError("expected a list".into()));
    }
    let n = u32::from_be_bytes(bytes[1..5].try_into().unwrap()) as usize;
    let mut at = 5;
    let mut out = Vec::with_capacity(n.min(bytes.len()));
    for _ in 0..n {
        let len = dimeb::value_len(&bytes[at..])?;
        out.push((at, at + len));
        at += len;
    }
    if at != bytes.len() {
        return Err(dimeb::CodecError(format!(
            "{} trailing bytes after the list",
            bytes.len() - at
        )));
    }
    Ok(out)
}

fn number(field: &[u8]) -> Option<Bound> {
    match dimeb::decode(field).ok()? {
        Value::I8(x) => Some(Bound::Int(x as i128)),
        Value::I16(x) => Some(Bound::Int(x as i128)),
        Value::I32(x) => Some(Bound::Int(x as i128)),
        Value::I64(x) => Some(Bound::Int(x as i128)),
        Value::U8(x) => Some(Bound::Int(x as i128)),
        Value::U16(x) => Some(Bound::Int(x as i128)),
        Value::U32(x) => Some(Bound::Int(x as i128)),
        Value::U64(x) => Some(Bound::Int(x as i128)),
        Value::F32(x) => Some(Bound::Float(x as f64)),
        Value::F64(x) => Some(Bound::Float(x)),
        _ => None,
    }
}

/// `a <= b`, exact even where an integer has no exact double (beyond 2^53):
/// an integer is at most a float when it is at most the float's floor.
fn le(a: Bound, b: Bound) -> bool {
    // Integers here fit in 65 bits; floats beyond this are beyond them all.
    const HUGE: f64 = 1e30;
    match (a, b) {
        (Bound::Int(a), Bound::Int(b)) => a <= b,
        (Bound::Int(a), Bound::Float(b)) => {
            !b.is_nan() && (b >= HUGE || (b > -HUGE && a <= b.floor() as i128))
        }
        (Bound::Float(a), Bound::Int(b)) => {
            !a.is_nan() && (a <= -HUGE || (a < HUGE && a.ceil() as i128 <= b))
        }
        (Bound::Float(a), Bound::Float(b)) => a <= b,
    }
}

impl Matcher {
    /// True if the encoded field matches. (Fields are whole dimeb items;
    /// bytes that are not, an empty slice included, match no type.)
    pub fn matches(&self, field: &[u8]) -> bool {
        let tag = field.first().copied();
        match self {
            Matcher::Exact(b) => b == field,
            Matcher::Any => true,
            Matcher::Tags(t) => tag.is_some_and(|f| t.contains(&f)),
            Matcher::Matrix { tag: want, rank } => {
                tag.is_some_and(|f| (0x13..=0x1F).contains(&f) && want.is_none_or(|t| t == f))
                    && rank.is_none_or(|r| field.get(1) == Some(&r))
            }
            Matcher::Range { min, max } => match number(field) {
                // NaN is in no range.
                Some(Bound::Float(f)) if f.is_nan() => false,
                Some(v) => min.is_none_or(|m| le(m, v)) && max.is_none_or(|m| le(v, m)),
                None => false,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(v: &Value) -> Vec<u8> {
        dimeb::encode(v).unwrap()
    }

    #[test]
    fn every_kind_of_field_matches_as_documented() {
        let fields = [
            Field::Value(Value::from("sum")),
            Field::Type("int".into()),
            Field::Range {
                min: Some(0.0),
                max: Some(10.0),
            },
            Field::Matrix {
                class: Some(ElemKind::F64),
                rank: Some(2),
            },
            Field::Any,
        ];
        let (spec, payload) = encode(&fields).unwrap();
        let m = compile(&spec, &payload).unwrap();
        assert!(m[0].matches(&enc(&Value::from("sum"))));
        assert!(!m[0].matches(&enc(&Value::from("sun"))));
        assert!(m[1].matches(&enc(&Value::U16(3))) && !m[1].matches(&enc(&Value::F64(3.0))));
        assert!(m[2].matches(&enc(&Value::I64(10))) && m[2].matches(&enc(&Value::F32(0.0))));
        assert!(!m[2].matches(&enc(&Value::I64(11))) && !m[2].matches(&enc(&Value::F64(f64::NAN))));
        assert!(!m[2].matches(&enc(&Value::from("5"))));
        let mat = crate::value::Matrix::from_elems(vec![2, 1], &[1.0f64, 2.0]).unwrap();
        assert!(m[3].matches(&enc(&Value::Matrix(mat))));
        let mat3 = crate::value::Matrix::from_elems(vec![1, 1, 1], &[1.0f64]).unwrap();
        assert!(!m[3].matches(&enc(&Value::Matrix(mat3))));
        assert!(m[4].matches(&enc(&Value::Null)));
    }

    #[test]
    fn an_unbounded_range_matches_any_real_number_but_nan() {
        let (spec, payload) = encode(&[Field::Range {
            min: None,
            max: None,
        }])
        .unwrap();
        let m = compile(&spec, &payload).unwrap();
        assert!(m[0].matches(&enc(&Value::U64(u64::MAX))));
        assert!(m[0].matches(&enc(&Value::F32(-1.5))));
        assert!(!m[0].matches(&enc(&Value::F64(f64::NAN))));
        assert!(!m[0].matches(&enc(&Value::from("1"))));
    }

    #[test]
    fn integer_ranges_are_exact_beyond_two_to_the_53() {
        let two53 = 9_007_199_254_740_992i64;
        let below = Matcher::Range {
            min: None,
            max: Some(Bound::Float(two53 as f64)),
        };
        assert!(below.matches(&enc(&Value::I64(two53))));
        assert!(!below.matches(&enc(&Value::I64(two53 + 1))));
        let above = Matcher::Range {
            min: Some(Bound::Float((two53 + 4) as f64)),
            max: None,
        };
        assert!(!above.matches(&enc(&Value::I64(two53 + 3))));
        assert!(above.matches(&enc(&Value::I64(two53 + 4))));
        let huge = Matcher::Range {
            min: Some(Bound::Float(18446744073709551616.0)),
            max: None,
        };
        assert!(!huge.matches(&enc(&Value::U64(u64::MAX))));
        let int_max = Matcher::Range {
            min: None,
            max: Some(Bound::Int(3)),
        };
        assert!(
            int_max.matches(&enc(&Value::F64(3.0))) && !int_max.matches(&enc(&Value::F64(3.5)))
        );
        assert!(int_max.matches(&enc(&Value::F64(f64::NEG_INFINITY))));
    }

    #[test]
    fn bytes_that_are_no_item_match_no_type() {
        // Found by the fuzzer: an empty field indexed its missing tag byte.
        for spec in [
            json!([{"type": "matrix", "rank": 1}]),
            json!([{"type": "int"}]),
        ] {
            let m = compile(&spec, &[]).unwrap();
            assert!(!m[0].matches(&[]));
        }
        assert!(Matcher::Any.matches(&[]));
    }

    #[test]
    fn bad_patterns_are_errors() {
        for spec in [
            json!({}),
            json!([1]),
            json!([{"type": "quaternion"}]),
            json!([{"value": true}]),
            json!([{}]),
        ] {
            assert!(compile(&spec, &[]).is_err(), "{spec}");
        }
    }
}
