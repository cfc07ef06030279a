//! Payloads rewritten for a client that did not negotiate an encoding:
//! matrices in the `dimeb_layout` encoding become DiME2's classic ones
//! (column-major, big-endian), once per message however many such
//! recipients there are. The header keeps every field but the marker
//! saying the payload uses the extension.

use crate::codec::dimeb;
use crate::wire::Frame;
use serde_json::value::RawValue;
use std::collections::BTreeMap;

/// The header field a sender sets on a payload that may hold
/// `dimeb_layout` matrices.
pub const LAYOUT_MARKER: &str = "dimeb_layout";

/// `frame` with its payload in the classic encoding and its header without
/// the marker, or why the payload could not be converted (it is not valid
/// dimeb).
pub fn classic_frame(frame: &Frame) -> Result<Frame, String> {
    let payload = dimeb::to_classic(&frame.payload).map_err(|e| e.to_string())?;
    Ok(Frame::new(&without_marker(frame.json()), payload))
}

/// The JSON object `json` without [`LAYOUT_MARKER`] (other fields kept as
/// written; their order may change). A header that does not parse as an
/// object of fields is returned unchanged: handlers only get here with
/// headers that parsed.
pub fn without_marker(json: &[u8]) -> Vec<u8> {
    match serde_json::from_slice::<BTreeMap<String, Box<RawValue>>>(json) {
        Ok(mut fields) => {
            fields.remove(LAYOUT_MARKER);
            serde_json::to_vec(&fields).unwrap_or_else(|_| json.to_vec())
        }
        Err(_) => json.to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buffer::PooledBuf;
    use crate::codec::dimeb::MatrixEncoding;
    use crate::layout::Layout;
    use crate::value::{ElemKind, Matrix, Value};

    #[test]
    fn the_classic_twin_drops_the_marker_and_converts_the_matrix() {
        let m = Matrix::with_layout(
            ElemKind::F64,
            vec![2, 3],
            (0..6u8).flat_map(|i| f64::from(i).to_ne_bytes()).collect(),
            Layout::RowMajor,
        )
        .unwrap();
        let v = Value::Matrix(m);
        let native = dimeb::encode_with(&v, MatrixEncoding::Native).unwrap();
        let json = br#"{"command":"send","name":"g","varname":"x","serialization":"dimeb","dimeb_layout":true,"extra":[1e400]}"#;
        let f = Frame::new(json, PooledBuf::from_vec(native));
        let c = classic_frame(&f).unwrap();
        assert_eq!(c.payload.to_vec(), dimeb::encode(&v).unwrap());
        let text = std::str::from_utf8(c.json()).unwrap();
        assert!(!text.contains("dimeb_layout"), "{text}");
        assert!(text.contains(r#""extra":[1e400]"#), "{text}");
        assert!(text.contains(r#""varname":"x""#), "{text}");
        let bad = Frame::new(json, PooledBuf::from_vec(vec![0x4C, 0x80]));
        assert!(classic_frame(&bad).is_err());
    }
}
