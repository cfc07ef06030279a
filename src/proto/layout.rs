//! Element orders and the one pass that changes them: a row-major array
//! (C order, last index fastest) rewritten column-major (Fortran and
//! MATLAB order, first index fastest), optionally byte-swapping each
//! element on the way. Cache-blocked, so both sides stream through memory.
//!
//! Used where a conversion is unavoidable: a receiver that needs column
//! order (MATLAB, `dime_matrix_data`), the broker writing DiME2's classic
//! encoding for a client that did not negotiate layouts, and an encoder
//! writing a row-major array in the classic encoding.

use crate::value::ElemKind;

/// How a matrix's elements are ordered in memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Layout {
    /// First index fastest (MATLAB, Fortran, DiME2's wire order).
    ColumnMajor,
    /// Last index fastest (C, numpy's default).
    RowMajor,
}

impl Layout {
    /// The layout a matrix of shape `dims` stored in `layout` really
    /// needs: with at most one dimension above 1 (or none at all, an empty
    /// matrix) both orders are the same bytes, and such matrices are always called column-major so nobody
    /// transposes them for nothing.
    pub fn normalized(self, dims: &[usize]) -> Layout {
        if dims.contains(&0) || dims.iter().filter(|d| **d > 1).count() < 2 {
            Layout::ColumnMajor
        } else {
            self
        }
    }
}

/// A fixed-width element moved as one unit; `swapped` reverses the bytes
/// of each of its numeric parts (both halves of a complex number).
trait Word: Copy {
    fn swapped(self) -> Self;
}

impl Word for u8 {
    fn swapped(self) -> Self {
        self
    }
}

macro_rules! word {
    ($($t:ty),*) => {$(
        impl Word for $t {
            fn swapped(self) -> Self {
                self.swap_bytes()
            }
        }
    )*};
}
word!(u16, u32, u64);

/// A complex single: two f32 parts, each swapped in place.
#[derive(Clone, Copy)]
#[repr(C)]
struct Pair32([u32; 2]);

impl Word for Pair32 {
    fn swapped(self) -> Self {
        Pair32([self.0[0].swap_bytes(), self.0[1].swap_bytes()])
    }
}

/// A complex double: two f64 parts, each swapped in place.
#[derive(Clone, Copy)]
#[repr(C)]
struct Pair64([u64; 2]);

impl Word for Pair64 {
    fn swapped(self) -> Self {
        Pair64([self.0[0].swap_bytes(), self.0[1].swap_bytes()])
    }
}

/// Runs `$body` with `$t` bound to the word type of `$kind`.
macro_rules! with_word {
    ($kind:expr, $t:ident => $body:expr) => {
        match $kind {
            ElemKind::I8 | ElemKind::U8 | ElemKind::Bool => {
                type $t = u8;
                $body
            }
            ElemKind::I16 | ElemKind::U16 => {
                type $t = u16;
                $body
            }
            ElemKind::I32 | ElemKind::U32 | ElemKind::F32 => {
                type $t = u32;
                $body
            }
            ElemKind::I64 | ElemKind::U64 | ElemKind::F64 => {
                type $t = u64;
                $body
            }
            ElemKind::C32 => {
                type $t = Pair32;
                $body
            }
            ElemKind::C64 => {
                type $t = Pair64;
                $body
            }
        }
    };
}

/// Side of the square tiles the transpose works in: 32 × 32 elements of
/// up to 16 bytes keep a source and a destination tile within L1/L2.
const TILE: usize = 32;

/// Copies `src` to `dst` (same length, a whole number of `kind`
/// elements), byte-swapping each element's parts when `swap`.
///
/// # Safety
/// `dst` must be valid for writing `src.len()` bytes and must not overlap
/// `src`; it may be uninitialised.
pub unsafe fn copy_raw(src: &[u8], kind: ElemKind, swap: bool, dst: *mut u8) {
    if !swap || kind.swap_unit() == 1 {
        // SAFETY: the caller's contract.
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), dst, src.len()) };
        return;
    }
    with_word!(kind, T => {
        let n = src.len() / std::mem::size_of::<T>();
        let (s, d) = (src.as_ptr() as *const T, dst as *mut T);
        for i in 0..n {
            // SAFETY: i < n words lie within both buffers.
            unsafe { d.add(i).write_unaligned(s.add(i).read_unaligned().swapped()) };
        }
    })
}

/// Writes the row-major array `src` of shape `dims` and class `kind` to
/// `dst` in column-major order, byte-swapping each element when `swap`.
///
/// # Safety
/// `src.len()` must be the byte length of that shape; `dst` must be valid
/// for writing as many bytes, must not overlap `src`, and may be
/// uninitialised.
pub unsafe fn to_column_major_raw(
    src: &[u8],
    dims: &[usize],
    kind: ElemKind,
    swap: bool,
    dst: *mut u8,
) {
    if src.is_empty() {
        return;
    }
    if Layout::RowMajor.normalized(dims) == Layout::ColumnMajor {
        // SAFETY: forwarded contract; both orders are the same bytes.
        return unsafe { copy_raw(src, kind, swap, dst) };
    }
    with_word!(kind, T => {
        // SAFETY: forwarded contract.
        unsafe {
            if swap {
                reverse_axes::<T, true>(src.as_ptr() as *const T, dims, dst as *mut T)
            } else {
                reverse_axes::<T, false>(src.as_ptr() as *const T, dims, dst as *mut T)
            }
        }
    })
}

/// As [`to_column_major_raw`] into an initialised slice of the same length.
pub fn to_column_major(src: &[u8], dims: &[usize], kind: ElemKind, swap: bool, dst: &mut [u8]) {
    assert_eq!(src.len(), dst.len(), "source and destination lengths");
    let want = dims.iter().product::<usize>() * kind.size();
    assert!(dims.contains(&0) || src.len() == want, "shape {dims:?}");
    // SAFETY: lengths checked; `dst` is a distinct exclusive borrow.
    unsafe { to_column_major_raw(src, dims, kind, swap, dst.as_mut_ptr()) }
}

/// Reverses the axis order of a row-major array: element (i0, …, ik) at
/// row-major offset goes to its column-major offset. The first and last
/// axes form 2-D tiles (the fastest axis of each side); the middle axes,
/// if any, are walked one slice at a time.
///
/// # Safety
/// As [`to_column_major_raw`], in elements of `T`.
unsafe fn reverse_axes<T: Word, const SWAP: bool>(src: *const T, dims: &[usize], dst: *mut T) {
    let rank = dims.len();
    let (rows, cols) = (dims[0], dims[rank - 1]);
    let middle = &dims[1..rank - 1];
    let m: usize = middle.iter().product();
    // Source: row i0 is m * cols elements apart; destination: column ik is
    // rows * m elements apart.
    let (src_row, dst_col) = (m * cols, rows * m);
    // Offsets of the current middle index in source (row-major strides of
    // the middle axes, times cols) and destination (column-major, times rows).
    let mut idx = vec![0usize; middle.len()];
    let (mut s_off, mut d_off) = (0usize, 0usize);
    for _ in 0..m {
        // SAFETY: every (i, j) of this slice lies within the array.
        unsafe { tile::<T, SWAP>(src.add(s_off), src_row, dst.add(d_off), dst_col, rows, cols) };
        // Advance the middle index row-major (its last axis fastest).
        let mut k = middle.len();
        while k > 0 {
            k -= 1;
            idx[k] += 1;
            if idx[k] < middle[k] {
                break;
            }
            idx[k] = 0;
        }
        // Recompute both offsets from the index: cheap next to a slice.
        s_off = 0;
        d_off = 0;
        let (mut ss, mut ds) = (cols, rows);
        for k in (0..middle.len()).rev() {
            s_off += idx[k] * ss;
            ss *= middle[k];
        }
        for k in 0..middle.len() {
            d_off += idx[k] * ds;
            ds *= middle[k];
        }
    }
}

/// One 2-D slice: `dst[i + j * dst_col] = src[i * src_row + j]` for every
/// `i < rows`, `j < cols`, in [`TILE`]-sized squares, writing each
/// destination column run contiguously.
///
/// # Safety
/// Every offset named above must be valid for its buffer.
#[inline(always)]
unsafe fn tile<T: Word, const SWAP: bool>(
    src: *const T,
    src_row: usize,
    dst: *mut T,
    dst_col: usize,
    rows: usize,
    cols: usize,
) {
    for jb in (0..cols).step_by(TILE) {
        let je = (jb + TILE).min(cols);
        for ib in (0..rows).step_by(TILE) {
            let ie = (ib + TILE).min(rows);
            for j in jb..je {
                // SAFETY: i < rows and j < cols (the caller's contract).
                unsafe {
                    let d = dst.add(j * dst_col);
                    let s = src.add(j);
                    for i in ib..ie {
                        let v = s.add(i * src_row).read_unaligned();
                        d.add(i).write_unaligned(if SWAP { v.swapped() } else { v });
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The column-major twin of a row-major array, element by element.
    fn reference(src: &[u8], dims: &[usize], elem: usize) -> Vec<u8> {
        let n: usize = dims.iter().product();
        let mut out = vec![0u8; src.len()];
        let mut idx = vec![0usize; dims.len()];
        for s in 0..n {
            let mut d = 0;
            let mut stride = 1;
            for k in 0..dims.len() {
                d += idx[k] * stride;
                stride *= dims[k];
            }
            out[d * elem..(d + 1) * elem].copy_from_slice(&src[s * elem..(s + 1) * elem]);
            for k in (0..dims.len()).rev() {
                idx[k] += 1;
                if idx[k] < dims[k] {
                    break;
                }
                idx[k] = 0;
            }
        }
        out
    }

    fn swapped(bytes: &[u8], unit: usize) -> Vec<u8> {
        bytes
            .chunks(unit)
            .flat_map(|c| c.iter().rev().copied())
            .collect()
    }

    #[test]
    fn every_kind_and_shape_matches_the_reference() {
        for kind in ElemKind::ALL {
            for dims in [
                vec![2usize, 3],
                vec![33, 65],
                vec![1, 7],
                vec![7, 1],
                vec![2, 3, 4],
                vec![3, 1, 5],
                vec![40, 2, 3, 35],
                vec![5],
                vec![],
            ] {
                let n: usize = dims.iter().product::<usize>() * kind.size();
                let src: Vec<u8> = (0..n).map(|i| (i * 31 + 7) as u8).collect();
                let want = reference(&src, &dims, kind.size());
                let mut got = vec![0u8; n];
                to_column_major(&src, &dims, kind, false, &mut got);
                assert_eq!(got, want, "{kind:?} {dims:?}");
                to_column_major(&src, &dims, kind, true, &mut got);
                assert_eq!(
                    got,
                    swapped(&want, kind.swap_unit()),
                    "{kind:?} {dims:?} swapped"
                );
            }
        }
    }

    #[test]
    fn degenerate_shapes_are_column_major_already() {
        assert_eq!(Layout::RowMajor.normalized(&[1, 5]), Layout::ColumnMajor);
        assert_eq!(Layout::RowMajor.normalized(&[5, 1, 1]), Layout::ColumnMajor);
        assert_eq!(Layout::RowMajor.normalized(&[0, 5]), Layout::ColumnMajor);
        assert_eq!(Layout::RowMajor.normalized(&[2, 5]), Layout::RowMajor);
        assert_eq!(Layout::RowMajor.normalized(&[]), Layout::ColumnMajor);
    }
}
