//! Messages rewritten for a client that did not negotiate what their
//! sender used, once per message however many such recipients there are:
//! matrices in the `dimeb_layout` encoding become DiME2's classic ones
//! (column-major, big-endian), and a payload in shared memory is copied
//! into the frame for a client that cannot take descriptors. The header
//! keeps every field but the markers of what was undone.

use crate::buffer::PooledBuf;
use crate::codec::dimeb;
use crate::shm::Mapping;
use crate::wire::Frame;
use serde_json::value::RawValue;
use std::collections::BTreeMap;

/// The header field a sender sets on a payload that may hold
/// `dimeb_layout` matrices.
pub const LAYOUT_MARKER: &str = "dimeb_layout";
/// The header field announcing a shared-memory payload.
pub const SHM_FIELD: &str = "shm";

/// The payload bytes of `frame`, wherever they are.
enum Source<'a> {
    InFrame(&'a [u8]),
    Mapped(Mapping),
}

impl Source<'_> {
    fn of(frame: &Frame) -> Result<Source<'_>, String> {
        match frame.shared() {
            Some(p) => p
                .map()
                .map(Source::Mapped)
                .map_err(|e| format!("cannot map the shared-memory payload: {e}")),
            None => Ok(Source::InFrame(&frame.payload)),
        }
    }

    fn bytes(&self) -> &[u8] {
        match self {
            Source::InFrame(b) => b,
            Source::Mapped(m) => m.as_ref(),
        }
    }
}

/// `frame` with its payload in the classic encoding (read from shared
/// memory if it is there) and its header without the layout and
/// shared-memory fields, or why the payload could not be converted (it is
/// not valid dimeb).
pub fn classic_frame(frame: &Frame) -> Result<Frame, String> {
    let src = Source::of(frame)?;
    let payload = dimeb::to_classic(src.bytes()).map_err(|e| e.to_string())?;
    Ok(Frame::new(
        &without(frame.json(), &[LAYOUT_MARKER, SHM_FIELD]),
        payload,
    ))
}

/// `frame` with its shared-memory payload copied into the frame, for a
/// recipient that cannot take descriptors; the header loses `"shm"`.
pub fn inline_frame(frame: &Frame) -> Result<Frame, String> {
    let src = Source::of(frame)?;
    let bytes = src.bytes();
    let mut payload = PooledBuf::try_with_capacity(bytes.len())
        .map_err(|e| format!("cannot allocate {} bytes for a message: {e}", bytes.len()))?;
    payload.extend_from_slice(bytes);
    Ok(Frame::new(&without(frame.json(), &[SHM_FIELD]), payload))
}

/// The JSON object `json` without the fields `drop` (other fields kept as
/// written; their order may change). A header that does not parse as an
/// object of fields is returned unchanged: handlers only get here with
/// headers that parsed.
pub fn without(json: &[u8], drop: &[&str]) -> Vec<u8> {
    match serde_json::from_slice::<BTreeMap<String, Box<RawValue>>>(json) {
        Ok(mut fields) => {
            for name in drop {
                fields.remove(*name);
            }
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
