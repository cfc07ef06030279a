//! Tuple spaces (Linda, see `docs/protocol-extensions.md`): `dime_out`,
//! `dime_in`, `dime_rd`, `dime_inp`, `dime_rdp`, `dime_count` on a
//! `dime_client`, and `dime_pattern`, the pattern they match with, built
//! field by field.
//!
//! A tuple is a list value; its items are the fields. Space names: NULL or
//! `""` is the default space.
//!
//! Threads: a `dime_pattern` is not locked. The lookups take it as `const`
//! and only read it, so one pattern may serve several threads at once;
//! `dime_pattern_add_*` and `dime_pattern_free` need exclusive access. A
//! blocked `dime_in`/`dime_rd` holds its client's lock (see `dime_wait`).

use super::args::{name_arg, shown_name, str_arg, timeout_arg, write_out, write_value};
use super::client::{dime_client, with_client};
use super::matrix::{dime_class, elem_kind};
use super::status::{Fail, check_arg, dime_status, ffi_status, ffi_value};
use super::value::dime_value;
use crate::pattern::{self, Field};
use crate::value::Value;
use std::ffi::c_char;

/// Pass to `dime_pattern_add_matrix` as `cls` to match a matrix of any
/// element class.
pub const DIME_CLASS_ANY: dime_class = 0;

/// Pass to `dime_pattern_add_matrix` as `rank` to match a matrix of any
/// rank (any negative number does the same).
pub const DIME_RANK_ANY: i32 = -1;

/// An opaque tuple pattern: one matcher per field, in order (a tuple
/// matches only if it has exactly as many fields). Create it with
/// `dime_pattern_new`, add fields with `dime_pattern_add_*`, use it with
/// any number of `dime_in`/`dime_rd`/`dime_inp`/`dime_rdp`/`dime_count`
/// calls, and release it with `dime_pattern_free`.
///
/// Not locked: several threads may use one pattern in lookups at once
/// (they only read it), but adding fields or freeing it needs exclusive
/// access. It may move between threads.
#[allow(non_camel_case_types)]
pub struct dime_pattern {
    fields: Vec<Field>,
}

/// A new empty pattern (it matches only the empty tuple until fields are
/// added), owned by the caller. Never NULL; free with `dime_pattern_free`.
#[unsafe(no_mangle)]
pub extern "C" fn dime_pattern_new() -> *mut dime_pattern {
    ffi_value!(
        std::ptr::null_mut(),
        Box::into_raw(Box::new(dime_pattern { fields: Vec::new() }))
    )
}

/// Frees a pattern and the values copied into it. NULL is accepted and
/// does nothing. No lookup may be using it.
#[unsafe(no_mangle)]
pub extern "C" fn dime_pattern_free(pattern: *mut dime_pattern) {
    ffi_value!((), {
        if !pattern.is_null() {
            // SAFETY: the caller's contract: `pattern` came from
            // dime_pattern_new and is not used again.
            drop(unsafe { Box::from_raw(pattern) });
        }
    })
}

/// The number of fields in the pattern; 0 if `pattern` is NULL.
#[unsafe(no_mangle)]
pub extern "C" fn dime_pattern_len(pattern: *const dime_pattern) -> usize {
    ffi_value!(0, {
        // SAFETY: NULL is handled; validity is the caller's contract.
        unsafe { pattern.as_ref() }.map_or(0, |p| p.fields.len())
    })
}

/// Appends `field` to the pattern behind `pattern`.
fn add(pattern: *mut dime_pattern, field: Field) -> Result<(), Fail> {
    check_arg!(mut pattern as dime_pattern).fields.push(field);
    Ok(())
}

/// Appends a field matching exactly `value`: same type and same bits
/// (`int64 1` does not match `double 1.0`; matrices must match in class,
/// shape and every element; lists and maps item by item).
///
/// `value` is **copied** (a borrowing matrix's elements too): the caller
/// keeps ownership, may free or change it right after, and the pattern
/// does not change. `DIME_STATUS_NULL_ARGUMENT` if a pointer is NULL.
#[unsafe(no_mangle)]
pub extern "C" fn dime_pattern_add_value(
    pattern: *mut dime_pattern,
    value: *const dime_value,
) -> dime_status {
    ffi_status! {
        let value = check_arg!(ref value as Value);
        add(pattern, Field::Value(value.clone()))
    }
}

/// Appends a field matching any value at all.
/// `DIME_STATUS_NULL_ARGUMENT` if `pattern` is NULL.
#[unsafe(no_mangle)]
pub extern "C" fn dime_pattern_add_any(pattern: *mut dime_pattern) -> dime_status {
    ffi_status! { add(pattern, Field::Any) }
}

/// Appends a field matching any value of the type `type_name`
/// (NUL-terminated, read only during the call), one of:
/// - `"null"`, `"bool"`, `"string"`, `"list"`, `"map"`;
/// - `"int"` (a scalar of any of the eight integer classes), `"float"`
///   (single or double scalar), `"complex"` (complex single or double
///   scalar);
/// - a scalar class name for exactly that class: `"int8"`, `"int16"`,
///   `"int32"`, `"int64"`, `"uint8"`, `"uint16"`, `"uint32"`, `"uint64"`,
///   `"single"`, `"double"`, `"complex single"`, `"complex double"`;
/// - `"matrix"`: any matrix (`dime_pattern_add_matrix` narrows it by class
///   and rank).
///
/// `DIME_STATUS_INVALID_ARGUMENT` for any other name (the pattern is left
/// unchanged); `DIME_STATUS_NULL_ARGUMENT` if a pointer is NULL.
#[unsafe(no_mangle)]
pub extern "C" fn dime_pattern_add_type(
    pattern: *mut dime_pattern,
    type_name: *const c_char,
) -> dime_status {
    ffi_status! {
        let name = str_arg(type_name, "type_name")?;
        if !pattern::is_type_name(name) {
            return Err(Fail::invalid(format!(
                "unknown type name '{name}' (expected null, bool, int, float, complex, \
                 string, list, map, matrix, or a scalar class such as int32 or double)"
            )));
        }
        add(pattern, Field::Type(name.to_owned()))
    }
}

/// Appends a field matching a matrix of class `cls` (a `DIME_CLASS_*`
/// constant, or `DIME_CLASS_ANY` for any class) and rank `rank` (0 to 255,
/// or `DIME_RANK_ANY` / any negative number for any rank). Scalars never
/// match, even of the same class.
///
/// `DIME_STATUS_INVALID_ARGUMENT` for an unknown class or a rank above 255
/// (the pattern is left unchanged); `DIME_STATUS_NULL_ARGUMENT` if
/// `pattern` is NULL.
#[unsafe(no_mangle)]
pub extern "C" fn dime_pattern_add_matrix(
    pattern: *mut dime_pattern,
    cls: dime_class,
    rank: i32,
) -> dime_status {
    ffi_status! {
        let class = if cls == DIME_CLASS_ANY { None } else { Some(elem_kind(cls)?) };
        let rank = match rank {
            r if r < 0 => None,
            r => Some(u8::try_from(r).map_err(|_| {
                Fail::invalid(format!("rank {r} exceeds 255"))
            })?),
        };
        add(pattern, Field::Matrix { class, rank })
    }
}

/// One bound of a range, checked: `unbounded` is the infinity that means
/// "no bound" on this side.
fn range_bound(x: f64, has: bool, unbounded: f64, what: &str) -> Result<Option<f64>, Fail> {
    if !has || x == unbounded {
        return Ok(None);
    }
    // The wire carries bounds as JSON numbers, which have no NaN or
    // infinities; refusing them here beats a pattern that silently means
    // something else.
    if !x.is_finite() {
        return Err(Fail::invalid(format!(
            "{what} bound {x} is not a finite number"
        )));
    }
    Ok(Some(x))
}

/// Appends a field matching a real numeric scalar (any integer class,
/// single or double; not complex, not a matrix) `v` with `min ≤ v ≤ max`.
///
/// Each bound applies only if its `has_*` flag is true (`has_min` false:
/// no lower bound); `-INFINITY` as `min` and `INFINITY` as `max` also mean
/// no bound. Bounds are doubles; integers are compared with them exactly.
/// A NaN value never matches. `DIME_STATUS_INVALID_ARGUMENT` if a used
/// bound is NaN or the wrong infinity, or `min > max` (a field nothing
/// could match); the pattern is then left unchanged.
/// `DIME_STATUS_NULL_ARGUMENT` if `pattern` is NULL.
#[unsafe(no_mangle)]
pub extern "C" fn dime_pattern_add_range(
    pattern: *mut dime_pattern,
    min: f64,
    max: f64,
    has_min: bool,
    has_max: bool,
) -> dime_status {
    ffi_status! {
        let min = range_bound(min, has_min, f64::NEG_INFINITY, "min")?;
        let max = range_bound(max, has_max, f64::INFINITY, "max")?;
        if let (Some(lo), Some(hi)) = (min, max) {
            if lo > hi {
                return Err(Fail::invalid(format!("range min {lo} is above max {hi}")));
            }
        }
        add(pattern, Field::Range { min, max })
    }
}

/// The fields of a pattern argument.
fn fields<'a>(pattern: *const dime_pattern) -> Result<&'a [Field], Fail> {
    Ok(&check_arg!(ref pattern as dime_pattern).fields)
}

/// Puts a tuple into the space `space` (NULL or `""`: the default space).
/// Blocked `dime_rd` calls whose pattern matches each get a copy, then the
/// longest-waiting matching `dime_in` takes it; if none does, it is stored.
///
/// `tuple` is a list value whose items are the fields; it is only read
/// (the caller still owns it and frees it as usual). `space` is read only
/// during the call. `DIME_STATUS_WRONG_TYPE` if `tuple` is not a list;
/// `DIME_STATUS_INVALID_ARGUMENT` if it is too large for the wire format or
/// `space` is not UTF-8; `DIME_STATUS_NULL_ARGUMENT` if `client` or `tuple`
/// is NULL; the client errors of `dime_send`.
#[unsafe(no_mangle)]
pub extern "C" fn dime_out(
    client: *mut dime_client,
    space: *const c_char,
    tuple: *const dime_value,
) -> dime_status {
    ffi_status! {
        let space = name_arg(space, "space")?;
        let items = match check_arg!(ref tuple as Value) {
            Value::List(items) => items,
            v => return Err(Fail::wrong_type("list (a tuple)", v.type_name())),
        };
        with_client(client, |c| c.space(space).out(items))
    }
}

/// Writes a found tuple to `out`, or reports that none matched.
fn found(out: *mut *mut dime_value, tuple: Option<Vec<Value>>, space: &str) -> Result<(), Fail> {
    let items = tuple.ok_or_else(|| {
        Fail::new(
            dime_status::NotFound,
            format!(
                "no tuple in space '{}' matches the pattern",
                shown_name(space)
            ),
        )
    })?;
    write_value(out, Value::List(items));
    Ok(())
}

/// Linda's `in`: removes the oldest tuple of `space` matching `pattern` and
/// writes it to `*out`, a new list value owned by the caller (free with
/// `dime_value_free`). If none matches, blocks until another client's
/// `dime_out` delivers one (waiters are served in FIFO order).
///
/// - `space`: NULL or `""` for the default space; read during the call.
/// - `pattern`: only read; the caller still owns it.
/// - `timeout_ms`: `DIME_WAIT_FOREVER` (or any negative number) for no
///   limit; 0 to only check.
///
/// `DIME_STATUS_TIMEOUT` if the time ran out: the request is withdrawn and
/// never takes a tuple afterwards; the client stays usable.
/// `DIME_STATUS_INVALID_ARGUMENT` if an exact value of the pattern is too
/// large for the wire format or `space` is not UTF-8. Holds the client's
/// lock while waiting.
/// `DIME_STATUS_NULL_ARGUMENT` if `client`, `pattern` or `out` is NULL.
#[unsafe(no_mangle)]
pub extern "C" fn dime_in(
    client: *mut dime_client,
    space: *const c_char,
    pattern: *const dime_pattern,
    timeout_ms: i64,
    out: *mut *mut dime_value,
) -> dime_status {
    ffi_status! {
        let space = name_arg(space, "space")?;
        let fields = fields(pattern)?;
        check_arg!(out);
        let t = with_client(client, |c| c.space(space).take(fields, timeout_arg(timeout_ms)))?;
        found(out, Some(t), space)
    }
}

/// Linda's `rd`: like `dime_in`, but the tuple stays in the space and
/// `*out` receives a copy (a new list value owned by the caller). A blocked
/// `dime_rd` receives a copy of the first matching tuple any client puts,
/// even if a blocked `dime_in` then takes it. Arguments and errors as for
/// `dime_in`.
#[unsafe(no_mangle)]
pub extern "C" fn dime_rd(
    client: *mut dime_client,
    space: *const c_char,
    pattern: *const dime_pattern,
    timeout_ms: i64,
    out: *mut *mut dime_value,
) -> dime_status {
    ffi_status! {
        let space = name_arg(space, "space")?;
        let fields = fields(pattern)?;
        check_arg!(out);
        let t = with_client(client, |c| c.space(space).read(fields, timeout_arg(timeout_ms)))?;
        found(out, Some(t), space)
    }
}

/// Linda's `inp`: removes the oldest matching tuple if one is stored right
/// now and writes it to `*out` (a new list value owned by the caller);
/// never blocks. `DIME_STATUS_NOT_FOUND` if none matches (`*out` is left
/// untouched). Other arguments and errors as for `dime_in`.
#[unsafe(no_mangle)]
pub extern "C" fn dime_inp(
    client: *mut dime_client,
    space: *const c_char,
    pattern: *const dime_pattern,
    out: *mut *mut dime_value,
) -> dime_status {
    ffi_status! {
        let space = name_arg(space, "space")?;
        let fields = fields(pattern)?;
        check_arg!(out);
        let t = with_client(client, |c| c.space(space).try_take(fields))?;
        found(out, t, space)
    }
}

/// Linda's `rdp`: like `dime_inp`, but the tuple stays and `*out` receives
/// a copy. `DIME_STATUS_NOT_FOUND` if none matches. Never blocks.
#[unsafe(no_mangle)]
pub extern "C" fn dime_rdp(
    client: *mut dime_client,
    space: *const c_char,
    pattern: *const dime_pattern,
    out: *mut *mut dime_value,
) -> dime_status {
    ffi_status! {
        let space = name_arg(space, "space")?;
        let fields = fields(pattern)?;
        check_arg!(out);
        let t = with_client(client, |c| c.space(space).try_read(fields))?;
        found(out, t, space)
    }
}

/// Writes to `*out` the number of tuples stored in `space` that match
/// `pattern` (tuples handed straight to waiters are never stored). Never
/// blocks. Arguments and errors as for `dime_inp`.
#[unsafe(no_mangle)]
pub extern "C" fn dime_count(
    client: *mut dime_client,
    space: *const c_char,
    pattern: *const dime_pattern,
    out: *mut usize,
) -> dime_status {
    ffi_status! {
        let space = name_arg(space, "space")?;
        let fields = fields(pattern)?;
        check_arg!(out);
        let n = with_client(client, |c| c.space(space).count(fields))?;
        write_out(out, n);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::ElemKind;

    fn built(f: impl FnOnce(*mut dime_pattern) -> dime_status) -> (dime_status, Vec<Field>) {
        let p = dime_pattern_new();
        let st = f(p);
        // SAFETY: p came from dime_pattern_new and is freed right after.
        let fields = unsafe { &*p }.fields.clone();
        dime_pattern_free(p);
        (st, fields)
    }

    /// Every name the C API accepts, the server's pattern compiler accepts
    /// too, and the names it refuses never reach the server.
    #[test]
    fn type_names_agree_with_the_server() {
        let accepted = [
            "null",
            "bool",
            "int",
            "float",
            "complex",
            "string",
            "list",
            "map",
            "matrix",
            "int8",
            "uint64",
            "single",
            "double",
            "complex single",
            "complex double",
        ];
        for name in accepted {
            let c = std::ffi::CString::new(name).unwrap();
            let (st, fields) = built(|p| dime_pattern_add_type(p, c.as_ptr()));
            assert_eq!(st, dime_status::Ok, "{name}");
            let (spec, payload) = pattern::encode(&fields).unwrap();
            assert!(pattern::compile(&spec, &payload).is_ok(), "{name}");
        }
        for name in ["", "integer", "logical", "Double", "quaternion"] {
            let c = std::ffi::CString::new(name).unwrap();
            let (st, fields) = built(|p| dime_pattern_add_type(p, c.as_ptr()));
            assert_eq!(st, dime_status::InvalidArgument, "{name}");
            assert!(fields.is_empty(), "{name}");
        }
    }

    #[test]
    fn matrix_and_range_fields_are_checked_and_encoded() {
        let (st, f) = built(|p| dime_pattern_add_matrix(p, DIME_CLASS_ANY, DIME_RANK_ANY));
        assert_eq!(st, dime_status::Ok);
        assert_eq!(
            f,
            [Field::Matrix {
                class: None,
                rank: None
            }]
        );
        let (st, f) = built(|p| dime_pattern_add_matrix(p, ElemKind::Bool as dime_class, 255));
        assert_eq!(st, dime_status::Ok);
        assert_eq!(
            f,
            [Field::Matrix {
                class: Some(ElemKind::Bool),
                rank: Some(255)
            }]
        );
        for (cls, rank) in [(99, 2), (ElemKind::F64 as dime_class, 256)] {
            let (st, f) = built(|p| dime_pattern_add_matrix(p, cls, rank));
            assert_eq!(st, dime_status::InvalidArgument);
            assert!(f.is_empty());
        }

        let (st, f) = built(|p| dime_pattern_add_range(p, f64::NEG_INFINITY, 3.0, true, true));
        assert_eq!(st, dime_status::Ok);
        assert_eq!(
            f,
            [Field::Range {
                min: None,
                max: Some(3.0)
            }]
        );
        let (st, f) = built(|p| dime_pattern_add_range(p, f64::NAN, 0.0, false, false));
        assert_eq!(
            (st, f.len()),
            (dime_status::Ok, 1),
            "unused bounds are ignored"
        );
        for (lo, hi) in [(f64::NAN, 1.0), (f64::INFINITY, 1.0), (2.0, 1.0)] {
            let (st, f) = built(|p| dime_pattern_add_range(p, lo, hi, true, true));
            assert_eq!(st, dime_status::InvalidArgument, "{lo}..{hi}");
            assert!(f.is_empty());
        }
    }

    #[test]
    fn null_patterns_are_refused_or_ignored() {
        assert_eq!(
            dime_pattern_add_any(std::ptr::null_mut()),
            dime_status::NullArgument
        );
        assert_eq!(dime_pattern_len(std::ptr::null()), 0);
        dime_pattern_free(std::ptr::null_mut());
    }
}
