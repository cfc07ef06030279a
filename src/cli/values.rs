//! Values for the command line: JSON text and `.npy` files in (`dime
//! send`), readable text and JSON out (`dime recv`).
//!
//! JSON in: numbers are doubles (integers too, as MATLAB reads them),
//! strings, booleans and null as themselves, objects are maps; an array of
//! numbers is a 1×N double row vector, an array of equally long arrays of
//! numbers a 2-D double matrix, any other array a list.

use dime::value::{Complex, ElemKind, Matrix, Value};
use serde_json::{Value as Json, json};

/// The value JSON text stands for.
pub fn from_json(text: &str) -> Result<Value, String> {
    let j: Json = serde_json::from_str(text).map_err(|e| format!("bad JSON value: {e}"))?;
    Ok(json_to_value(&j))
}

fn numbers(items: &[Json]) -> Option<Vec<f64>> {
    items.iter().map(Json::as_f64).collect()
}

fn json_to_value(j: &Json) -> Value {
    match j {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => Value::F64(n.as_f64().unwrap_or(f64::NAN)),
        Json::String(s) => Value::String(s.clone()),
        Json::Object(m) => Value::Map(
            m.iter()
                .map(|(k, v)| (Value::String(k.clone()), json_to_value(v)))
                .collect(),
        ),
        Json::Array(items) => {
            if let Some(row) = numbers(items).filter(|r| !r.is_empty()) {
                return matrix(vec![1, row.len()], &row);
            }
            let rows: Option<Vec<Vec<f64>>> = items
                .iter()
                .map(|r| r.as_array().and_then(|r| numbers(r)))
                .collect();
            if let Some(rows) = rows.filter(|r| !r.is_empty()) {
                let cols = rows[0].len();
                if cols > 0 && rows.iter().all(|r| r.len() == cols) {
                    // Column-major: element (i, j) at j * rows + i.
                    let mut data = vec![0.0; rows.len() * cols];
                    for (i, r) in rows.iter().enumerate() {
                        for (k, x) in r.iter().enumerate() {
                            data[k * rows.len() + i] = *x;
                        }
                    }
                    return matrix(vec![rows.len(), cols], &data);
                }
            }
            Value::List(items.iter().map(json_to_value).collect())
        }
    }
}

fn matrix(dims: Vec<usize>, data: &[f64]) -> Value {
    Value::Matrix(Matrix::from_elems(dims, data).expect("dims match the data"))
}

/// The matrix stored in a `.npy` file (format 1.0–3.0; numeric and bool
/// dtypes, either byte order, C or Fortran order).
pub fn from_npy(bytes: &[u8]) -> Result<Value, String> {
    let bad = |why: &str| format!("not a .npy file this can read: {why}");
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(bad("no NUMPY magic"));
    }
    let (header_len, start) = match bytes[6] {
        1 => (usize::from(u16::from_le_bytes([bytes[8], bytes[9]])), 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes")) as usize,
            12,
        ),
        _ => return Err(bad("unknown format version")),
    };
    let header = bytes
        .get(start..start + header_len)
        .and_then(|h| std::str::from_utf8(h).ok())
        .ok_or_else(|| bad("truncated header"))?;
    let field = |name: &str| -> Option<&str> {
        let at = header.find(&format!("'{name}':"))? + name.len() + 3;
        Some(header[at..].trim_start())
    };
    let descr = field("descr")
        .and_then(|d| d.strip_prefix('\''))
        .and_then(|d| d.split('\'').next())
        .ok_or_else(|| bad("no descr"))?;
    let fortran = field("fortran_order").is_some_and(|f| f.starts_with("True"));
    let shape_text = field("shape")
        .and_then(|s| s.strip_prefix('('))
        .and_then(|s| s.split(')').next())
        .ok_or_else(|| bad("no shape"))?;
    let mut dims: Vec<usize> = shape_text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().map_err(|_| bad("bad shape")))
        .collect::<Result<_, _>>()?;
    let (order, code) = descr.split_at(1);
    let kind = match code {
        "f8" => ElemKind::F64,
        "f4" => ElemKind::F32,
        "i8" => ElemKind::I64,
        "i4" => ElemKind::I32,
        "i2" => ElemKind::I16,
        "i1" => ElemKind::I8,
        "u8" => ElemKind::U64,
        "u4" => ElemKind::U32,
        "u2" => ElemKind::U16,
        "u1" => ElemKind::U8,
        "b1" => ElemKind::Bool,
        "c16" => ElemKind::C64,
        "c8" => ElemKind::C32,
        other => return Err(bad(&format!("dtype {other} is not supported"))),
    };
    let data = &bytes[start + header_len..];
    let unit = kind.swap_unit();
    let mut native: Vec<u8> = data.to_vec();
    if order == ">" && cfg!(target_endian = "little") || order == "<" && cfg!(target_endian = "big")
    {
        for w in native.chunks_exact_mut(unit) {
            w.reverse();
        }
    }
    if dims.is_empty() {
        dims = vec![1, 1];
    } else if dims.len() == 1 {
        dims.insert(0, 1);
    }
    if !fortran && dims.len() >= 2 {
        native = to_column_major(&native, &dims, kind.size());
    }
    Matrix::new(kind, dims, native)
        .map(Value::Matrix)
        .map_err(|e| bad(&e.to_string()))
}

/// Reorders a C-ordered (last index fastest) array column-major.
fn to_column_major(src: &[u8], dims: &[usize], size: usize) -> Vec<u8> {
    let n: usize = dims.iter().product();
    let mut out = vec![0u8; src.len()];
    let mut idx = vec![0usize; dims.len()];
    for k in 0..n {
        // idx is the C-order multi-index of element k.
        let mut col = 0;
        let mut stride = 1;
        for (d, i) in dims.iter().zip(&idx) {
            col += i * stride;
            stride *= d;
        }
        out[col * size..(col + 1) * size].copy_from_slice(&src[k * size..(k + 1) * size]);
        for a in (0..dims.len()).rev() {
            idx[a] += 1;
            if idx[a] < dims[a] {
                break;
            }
            idx[a] = 0;
        }
    }
    out
}

/// JSON for a value: scalars as numbers, strings, lists as arrays, maps as
/// objects when every key is a string (else a list of [key, value] pairs),
/// matrices as `{"class":…,"size":[…],"data":[…] (column-major)}`, complex
/// as `{"re":…,"im":…}`.
pub fn to_json(v: &Value) -> Json {
    let c = |re: f64, im: f64| json!({"re": re, "im": im});
    match v {
        Value::Null => Json::Null,
        Value::Bool(b) => json!(b),
        Value::I8(x) => json!(x),
        Value::I16(x) => json!(x),
        Value::I32(x) => json!(x),
        Value::I64(x) => json!(x),
        Value::U8(x) => json!(x),
        Value::U16(x) => json!(x),
        Value::U32(x) => json!(x),
        Value::U64(x) => json!(x),
        Value::F32(x) => json!(x),
        Value::F64(x) => json!(x),
        Value::C32(Complex { re, im }) => c(f64::from(*re), f64::from(*im)),
        Value::C64(Complex { re, im }) => c(*re, *im),
        Value::String(s) => json!(s),
        Value::List(items) => Json::Array(items.iter().map(to_json).collect()),
        Value::Map(pairs) => {
            if pairs.iter().all(|(k, _)| matches!(k, Value::String(_))) {
                Json::Object(
                    pairs
                        .iter()
                        .map(|(k, v)| match k {
                            Value::String(s) => (s.clone(), to_json(v)),
                            _ => unreachable!("checked above"),
                        })
                        .collect(),
                )
            } else {
                Json::Array(
                    pairs
                        .iter()
                        .map(|(k, v)| json!([to_json(k), to_json(v)]))
                        .collect(),
                )
            }
        }
        Value::Matrix(m) => json!({
            "class": m.kind().name(),
            "size": m.dims(),
            "data": matrix_elements(m),
        }),
    }
}

fn matrix_elements(m: &Matrix) -> Json {
    macro_rules! elems {
        ($t:ty) => {
            json!(m.to_vec::<$t>().unwrap_or_default())
        };
    }
    match m.kind() {
        ElemKind::F64 => elems!(f64),
        ElemKind::F32 => elems!(f32),
        ElemKind::I64 => elems!(i64),
        ElemKind::I32 => elems!(i32),
        ElemKind::I16 => elems!(i16),
        ElemKind::I8 => elems!(i8),
        ElemKind::U64 => elems!(u64),
        ElemKind::U32 => elems!(u32),
        ElemKind::U16 => elems!(u16),
        ElemKind::U8 => elems!(u8),
        ElemKind::Bool => json!(
            m.column_major_bytes()
                .iter()
                .map(|b| *b != 0)
                .collect::<Vec<_>>()
        ),
        ElemKind::C64 | ElemKind::C32 => json!(format!("{} complex elements", m.len())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_numbers_become_matrices_and_objects_maps() {
        assert_eq!(from_json("1").unwrap(), Value::F64(1.0));
        assert_eq!(from_json("\"s\"").unwrap(), Value::from("s"));
        let row = from_json("[1, 2, 3]").unwrap();
        assert_eq!(row, matrix(vec![1, 3], &[1.0, 2.0, 3.0]));
        let m = from_json("[[1, 2], [3, 4], [5, 6]]").unwrap();
        assert_eq!(m, matrix(vec![3, 2], &[1.0, 3.0, 5.0, 2.0, 4.0, 6.0]));
        assert_eq!(
            from_json("[1, \"a\"]").unwrap(),
            Value::List(vec![Value::F64(1.0), Value::from("a")])
        );
        assert_eq!(
            from_json("{\"k\": null}").unwrap(),
            Value::Map(vec![(Value::from("k"), Value::Null)])
        );
        assert!(from_json("{").is_err());
    }

    #[test]
    fn npy_files_in_either_order() {
        // numpy.arange(6, dtype='<f8').reshape(2, 3), C order.
        let mut f = b"\x93NUMPY\x01\x00".to_vec();
        let mut header = "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }".to_string();
        while (10 + header.len() + 1) % 64 != 0 {
            header.push(' ');
        }
        header.push('\n');
        f.extend_from_slice(&(header.len() as u16).to_le_bytes());
        f.extend_from_slice(header.as_bytes());
        for x in 0..6 {
            f.extend_from_slice(&f64::from(x).to_le_bytes());
        }
        let want = matrix(vec![2, 3], &[0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);
        assert_eq!(from_npy(&f).unwrap(), want);
        assert!(from_npy(b"nope").is_err());
    }

    #[test]
    fn values_print_as_json() {
        let m = matrix(vec![1, 2], &[1.5, 2.5]);
        assert_eq!(
            to_json(&Value::Map(vec![(Value::from("m"), m)])),
            json!({"m": {"class": "double", "size": [1, 2], "data": [1.5, 2.5]}})
        );
    }
}
