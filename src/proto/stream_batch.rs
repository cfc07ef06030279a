//! Several stream items in one frame (docs/protocol-extensions.md,
//! "Streams", extension `stream_batch`): a `yield` with `"count":N`, and
//! the item push relaying it, carry N items in their payload, each as a
//! big-endian u32 length followed by that many bytes (one dimeb value).
//! Small items then cost one frame per batch instead of one each.

use std::fmt;
use std::ops::Range;

/// Bytes before each item of a batch: its length.
pub const LEN_PREFIX: usize = 4;

/// Why a payload is not a batch of the count its header gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchError(pub String);

impl fmt::Display for BatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BatchError {}

/// Appends `item` to the batch payload `buf`. Items longer than a u32 can
/// say are refused (they are never batched: only small items are).
pub fn push(buf: &mut Vec<u8>, item: &[u8]) -> Result<(), BatchError> {
    let len = u32::try_from(item.len())
        .map_err(|_| BatchError(format!("a {}-byte item is too large to batch", item.len())))?;
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(item);
    Ok(())
}

/// Where each item of a batch payload lies in it, checking that it holds
/// exactly `count` items (at least 1) and nothing after them.
pub fn ranges(payload: &[u8], count: u64) -> Result<Vec<Range<usize>>, BatchError> {
    if count == 0 {
        return Err(BatchError("a batch needs a \"count\" of at least 1".into()));
    }
    // Each item takes at least its length prefix: a larger count cannot
    // be right, and is not worth allocating for.
    if count > (payload.len() / LEN_PREFIX) as u64 {
        return Err(BatchError(format!(
            "a batch of {count} items cannot fit in {} bytes",
            payload.len()
        )));
    }
    let mut out = Vec::with_capacity(count as usize);
    let mut at = 0usize;
    for i in 0..count {
        let Some(prefix) = payload.get(at..at + LEN_PREFIX) else {
            return Err(truncated(i, count));
        };
        let len = u32::from_be_bytes(prefix.try_into().expect("4 bytes")) as usize;
        let start = at + LEN_PREFIX;
        let end = start
            .checked_add(len)
            .filter(|&e| e <= payload.len())
            .ok_or_else(|| truncated(i, count))?;
        out.push(start..end);
        at = end;
    }
    if at != payload.len() {
        return Err(BatchError(format!(
            "a batch of {count} items has {} bytes after its last item",
            payload.len() - at
        )));
    }
    Ok(out)
}

fn truncated(i: u64, count: u64) -> BatchError {
    BatchError(format!(
        "a batch of {count} items ends inside item {}",
        i + 1
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_round_trip_in_order() {
        let mut buf = Vec::new();
        for item in [&b"a"[..], b"", b"xyz"] {
            push(&mut buf, item).unwrap();
        }
        let r = ranges(&buf, 3).unwrap();
        let items: Vec<&[u8]> = r.into_iter().map(|r| &buf[r]).collect();
        assert_eq!(items, vec![&b"a"[..], b"", b"xyz"]);
    }

    #[test]
    fn a_payload_that_does_not_match_its_count_is_refused() {
        let mut buf = Vec::new();
        push(&mut buf, b"ab").unwrap();
        push(&mut buf, b"c").unwrap();
        assert!(ranges(&buf, 0).is_err());
        assert!(
            ranges(&buf, 1)
                .unwrap_err()
                .0
                .contains("after its last item")
        );
        assert!(ranges(&buf, 3).is_err());
        assert!(ranges(&buf, u64::MAX).is_err());
        assert!(
            ranges(&buf[..buf.len() - 1], 2)
                .unwrap_err()
                .0
                .contains("ends inside item 2")
        );
        // A length pointing past the end.
        let mut bad = buf.clone();
        bad[3] = 200;
        assert!(ranges(&bad, 2).is_err());
    }
}
