//! Lists and maps: building them by moving values in, reading children as
//! borrowed pointers, and moving children back out.
//!
//! Ownership rule for every function that takes a `dime_value *` to insert:
//! on `DIME_STATUS_OK` the container owns it (the caller must not use or
//! free it again); on any failure the caller still owns it.

use super::args::{str_arg, write_out};
use super::status::{Fail, check_arg, dime_status, ffi_status, ffi_value};
use super::value::{as_raw, dime_value, from_raw, into_raw};
use crate::value::Value;
use std::ffi::c_char;

/// A new empty list (MATLAB cell array, Python list), owned by the caller.
/// Never NULL; free with `dime_value_free`, which frees its items too.
#[unsafe(no_mangle)]
pub extern "C" fn dime_value_new_list() -> *mut dime_value {
    ffi_value!(std::ptr::null_mut(), into_raw(Value::List(Vec::new())))
}

/// A new empty map (MATLAB struct / containers.Map, Python dict), owned by
/// the caller. Never NULL; free with `dime_value_free`, which frees its keys
/// and values too. Entries keep their insertion order.
#[unsafe(no_mangle)]
pub extern "C" fn dime_value_new_map() -> *mut dime_value {
    ffi_value!(std::ptr::null_mut(), into_raw(Value::Map(Vec::new())))
}

fn list<'a>(value: *const dime_value) -> Result<&'a Vec<Value>, Fail> {
    match check_arg!(ref value as Value) {
        Value::List(items) => Ok(items),
        v => Err(Fail::wrong_type("list", v.type_name())),
    }
}

fn list_mut<'a>(value: *mut dime_value) -> Result<&'a mut Vec<Value>, Fail> {
    match check_arg!(mut value as Value) {
        Value::List(items) => Ok(items),
        v => Err(Fail::wrong_type("list", v.type_name())),
    }
}

fn map<'a>(value: *const dime_value) -> Result<&'a Vec<(Value, Value)>, Fail> {
    match check_arg!(ref value as Value) {
        Value::Map(pairs) => Ok(pairs),
        v => Err(Fail::wrong_type("map", v.type_name())),
    }
}

fn map_mut<'a>(value: *mut dime_value) -> Result<&'a mut Vec<(Value, Value)>, Fail> {
    match check_arg!(mut value as Value) {
        Value::Map(pairs) => Ok(pairs),
        v => Err(Fail::wrong_type("map", v.type_name())),
    }
}

fn index_check(i: usize, len: usize, what: &str) -> Result<(), Fail> {
    if i < len {
        Ok(())
    } else {
        Err(Fail::new(
            dime_status::OutOfRange,
            format!("index {i} is out of range for a {what} of {len}"),
        ))
    }
}

/// Writes the number of items of a list to `*out`. `DIME_STATUS_WRONG_TYPE`
/// unless `list` is `DIME_KIND_LIST`; `DIME_STATUS_NULL_ARGUMENT` if a
/// pointer is NULL. `list` is only read.
#[unsafe(no_mangle)]
pub extern "C" fn dime_value_list_len(list: *const dime_value, out: *mut usize) -> dime_status {
    ffi_status! {
        let items = self::list(list)?;
        check_arg!(out);
        write_out(out, items.len());
        Ok(())
    }
}

/// Points `*out` at item `index` (from 0) of a list. The item is
/// **borrowed**: do not free it; it stays valid until the list is freed or
/// modified. `DIME_STATUS_OUT_OF_RANGE` past the end; other errors as for
/// `dime_value_list_len`. `list` is only read.
#[unsafe(no_mangle)]
pub extern "C" fn dime_value_list_get(
    list: *const dime_value,
    index: usize,
    out: *mut *const dime_value,
) -> dime_status {
    ffi_status! {
        let items = self::list(list)?;
        check_arg!(out);
        index_check(index, items.len(), "list")?;
        write_out(out, as_raw(&items[index]));
        Ok(())
    }
}

/// Appends `item` to the end of `list`, taking ownership of `item` on
/// success (see the module rule). `DIME_STATUS_INVALID_ARGUMENT` if `item`
/// is `list` itself; other errors as for `dime_value_list_len`.
#[unsafe(no_mangle)]
pub extern "C" fn dime_value_list_append(
    list: *mut dime_value,
    item: *mut dime_value,
) -> dime_status {
    ffi_status! {
        check_arg!(item);
        if std::ptr::eq(list, item) {
            return Err(Fail::invalid("cannot append a list to itself"));
        }
        let items = list_mut(list)?;
        items.push(from_raw(item));
        Ok(())
    }
}

/// Moves item `index` out of `list` into `*out`, owned by the caller (free
/// with `dime_value_free`); a null value takes its place so the other
/// indices do not shift. Errors as for `dime_value_list_get`.
#[unsafe(no_mangle)]
pub extern "C" fn dime_value_list_take(
    list: *mut dime_value,
    index: usize,
    out: *mut *mut dime_value,
) -> dime_status {
    ffi_status! {
        let items = list_mut(list)?;
        check_arg!(out);
        index_check(index, items.len(), "list")?;
        write_out(out, into_raw(std::mem::replace(&mut items[index], Value::Null)));
        Ok(())
    }
}

/// Writes the number of entries of a map to `*out`. `DIME_STATUS_WRONG_TYPE`
/// unless `map` is `DIME_KIND_MAP`; `DIME_STATUS_NULL_ARGUMENT` if a pointer
/// is NULL. `map` is only read.
#[unsafe(no_mangle)]
pub extern "C" fn dime_value_map_len(map: *const dime_value, out: *mut usize) -> dime_status {
    ffi_status! {
        let pairs = self::map(map)?;
        check_arg!(out);
        write_out(out, pairs.len());
        Ok(())
    }
}

/// Points `*out` at the key of entry `index` (from 0, insertion order). The
/// key is **borrowed** (valid until the map is freed or modified) and is
/// usually a string (`dime_value_get_string`), but a map received from
/// another language may have keys of any kind. `DIME_STATUS_OUT_OF_RANGE`
/// past the end; other errors as for `dime_value_map_len`.
#[unsafe(no_mangle)]
pub extern "C" fn dime_value_map_key_at(
    map: *const dime_value,
    index: usize,
    out: *mut *const dime_value,
) -> dime_status {
    ffi_status! {
        let pairs = self::map(map)?;
        check_arg!(out);
        index_check(index, pairs.len(), "map")?;
        write_out(out, as_raw(&pairs[index].0));
        Ok(())
    }
}

/// Points `*out` at the value of entry `index`, **borrowed** (valid until
/// the map is freed or modified). Errors as for `dime_value_map_key_at`.
#[unsafe(no_mangle)]
pub extern "C" fn dime_value_map_value_at(
    map: *const dime_value,
    index: usize,
    out: *mut *const dime_value,
) -> dime_status {
    ffi_status! {
        let pairs = self::map(map)?;
        check_arg!(out);
        index_check(index, pairs.len(), "map")?;
        write_out(out, as_raw(&pairs[index].1));
        Ok(())
    }
}

/// Points `*out` at the value stored under the string key `key`
/// (NUL-terminated UTF-8), **borrowed** (valid until the map is freed or
/// modified). `DIME_STATUS_NOT_FOUND` if there is no such key;
/// `DIME_STATUS_INVALID_ARGUMENT` if `key` is not UTF-8; other errors as for
/// `dime_value_map_len`. `map` is only read.
#[unsafe(no_mangle)]
pub extern "C" fn dime_value_map_get(
    map: *const dime_value,
    key: *const c_char,
    out: *mut *const dime_value,
) -> dime_status {
    ffi_status! {
        let pairs = self::map(map)?;
        let key = str_arg(key, "key")?;
        check_arg!(out);
        let found = pairs
            .iter()
            .find(|(k, _)| matches!(k, Value::String(s) if s == key))
            .ok_or_else(|| Fail::new(dime_status::NotFound, format!("map has no key '{key}'")))?;
        write_out(out, as_raw(&found.1));
        Ok(())
    }
}

/// Stores `value` under `key` in the map's entries: replaces (and frees)
/// the old value if an equal key exists, keeping its position; else
/// appends.
fn set_entry(pairs: &mut Vec<(Value, Value)>, key: Value, value: Value) {
    match pairs.iter_mut().find(|(k, _)| *k == key) {
        Some((_, v)) => *v = value,
        None => pairs.push((key, value)),
    }
}

/// Sets `map[key] = value` for a string `key` (NUL-terminated UTF-8,
/// copied), taking ownership of `value` on success (see the module rule).
/// An existing entry with that key keeps its position and has its old value
/// freed; otherwise the entry is appended. `DIME_STATUS_INVALID_ARGUMENT` if
/// `key` is not UTF-8 or `value` is `map` itself; other errors as for
/// `dime_value_map_len`.
#[unsafe(no_mangle)]
pub extern "C" fn dime_value_map_set(
    map: *mut dime_value,
    key: *const c_char,
    value: *mut dime_value,
) -> dime_status {
    ffi_status! {
        let key = str_arg(key, "key")?;
        check_arg!(value);
        if std::ptr::eq(map, value) {
            return Err(Fail::invalid("cannot insert a map into itself"));
        }
        let pairs = map_mut(map)?;
        set_entry(pairs, Value::String(key.to_owned()), from_raw(value));
        Ok(())
    }
}

/// Sets `map[key] = value` for a key of any kind (the dimeb format allows
/// any value as a key; other languages may only read string keys), taking
/// ownership of **both** `key` and `value` on success (see the module rule).
/// An existing equal key is replaced as in `dime_value_map_set` (the new
/// `key` is then freed). `DIME_STATUS_INVALID_ARGUMENT` if `key` and
/// `value` are the same pointer or either is `map`; other errors as for
/// `dime_value_map_len`.
#[unsafe(no_mangle)]
pub extern "C" fn dime_value_map_set_value(
    map: *mut dime_value,
    key: *mut dime_value,
    value: *mut dime_value,
) -> dime_status {
    ffi_status! {
        check_arg!(key);
        check_arg!(value);
        if std::ptr::eq(key, value) || std::ptr::eq(map, key) || std::ptr::eq(map, value) {
            return Err(Fail::invalid("map, key and value must be three different values"));
        }
        let pairs = map_mut(map)?;
        set_entry(pairs, from_raw(key), from_raw(value));
        Ok(())
    }
}

/// Moves the value of entry `index` out of `map` into `*out`, owned by the
/// caller (free with `dime_value_free`); the entry stays, with a null value.
/// Errors as for `dime_value_map_key_at`.
#[unsafe(no_mangle)]
pub extern "C" fn dime_value_map_take_at(
    map: *mut dime_value,
    index: usize,
    out: *mut *mut dime_value,
) -> dime_status {
    ffi_status! {
        let pairs = map_mut(map)?;
        check_arg!(out);
        index_check(index, pairs.len(), "map")?;
        write_out(out, into_raw(std::mem::replace(&mut pairs[index].1, Value::Null)));
        Ok(())
    }
}
