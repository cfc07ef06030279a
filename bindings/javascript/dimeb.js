// dimeb: DiME2's binary value format (docs/protocol.md §4), for browsers
// and Node.js. Big-endian, one tag byte per value.
//
// JavaScript ↔ dimeb:
//   null / undefined      ↔ null (0x00)            (undefined encodes as null)
//   true / false          ↔ 0x01 / 0x02
//   number                → double (0x0C). A JS number is a double, so
//                           integers are sent as doubles too; use BigInt or
//                           Scalar for integer types.
//   BigInt                → int64 (0x06), or uint64 (0x0A) above int64's
//                           range; beyond uint64 it is an error, never a wrap.
//   int8…uint32, single   → number when decoded (exact); int64 / uint64 →
//                           BigInt (exact at the extremes). With
//                           {scalars: "typed"}, every non-double real scalar
//                           decodes as a Scalar that keeps its kind.
//   Scalar(kind, value)   → the scalar tag of `kind` (int8 … uint64, single,
//                           double).
//   Complex {re, im}      ↔ complex double (0x0E), or complex single (0x0D)
//                           when `single` is set (decoding sets it).
//   string                ↔ string (UTF-8)
//   Array                 ↔ list
//   plain object / Map    → map. Decoding gives a plain object when every
//                           key is a string, else a Map (or always a Map
//                           with {maps: "map"}).
//   Matrix {data, shape}  ↔ matrix, column-major. data is a typed array:
//                           Int8…Int32, Uint8…Uint32, BigInt64, BigUint64,
//                           Float32, Float64; complex matrices interleave
//                           re, im in a Float32Array / Float64Array; logical
//                           matrices (tag 0x1F, our extension) are a
//                           Uint8Array of 0/1 with `logical` set.
//   bare typed array      → rank-1 matrix of its length.
// Anything else (functions, symbols, Set, Date, class instances) is a
// TypeError naming the type.

const TAG_NULL = 0x00;
const TAG_TRUE = 0x01;
const TAG_FALSE = 0x02;
const TAG_MATRIX = 0x10;
const TAG_LOGICAL = 0x1f;
const TAG_STRING = 0x20;
const TAG_LIST = 0x21;
const TAG_MAP = 0x22;

/** Deepest nesting of lists and maps accepted, as in the Rust codec. */
export const MAX_DEPTH = 256;

// Element kinds by their scalar tag: name, byte size, typed array, and the
// DataView accessor suffix used for scalars.
const KINDS = {
  0x03: { name: "int8", size: 1, Array: Int8Array, view: "Int8" },
  0x04: { name: "int16", size: 2, Array: Int16Array, view: "Int16" },
  0x05: { name: "int32", size: 4, Array: Int32Array, view: "Int32" },
  0x06: { name: "int64", size: 8, Array: BigInt64Array, view: "BigInt64" },
  0x07: { name: "uint8", size: 1, Array: Uint8Array, view: "Uint8" },
  0x08: { name: "uint16", size: 2, Array: Uint16Array, view: "Uint16" },
  0x09: { name: "uint32", size: 4, Array: Uint32Array, view: "Uint32" },
  0x0a: { name: "uint64", size: 8, Array: BigUint64Array, view: "BigUint64" },
  0x0b: { name: "single", size: 4, Array: Float32Array, view: "Float32" },
  0x0c: { name: "double", size: 8, Array: Float64Array, view: "Float64" },
};
const TAG_BY_NAME = Object.fromEntries(Object.entries(KINDS).map(([t, k]) => [k.name, Number(t)]));
const TAG_C32 = 0x0d;
const TAG_C64 = 0x0e;

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
const textEncoder = new TextEncoder();
const textDecoder = new TextDecoder("utf-8", { fatal: true });

/** Raised for bytes that are not valid dimeb and values dimeb cannot hold. */
export class DimebError extends Error {
  constructor(message) {
    super(`dimeb: ${message}`);
    this.name = "DimebError";
  }
}

/** A complex number. `single` marks complex single precision (0x0D). */
export class Complex {
  constructor(re, im = 0, { single = false } = {}) {
    this.re = re;
    this.im = im;
    this.single = single;
  }
}

/**
 * A real scalar of an explicit kind ("int8" … "uint64", "single",
 * "double"), for sending integer or single values that a JS number would
 * send as double. Arithmetic works through valueOf().
 */
export class Scalar {
  constructor(kind, value) {
    if (!(kind in TAG_BY_NAME)) {
      throw new TypeError(`unknown scalar kind ${JSON.stringify(kind)}`);
    }
    this.kind = kind;
    this.value = value;
  }
  valueOf() {
    return this.value;
  }
}

/**
 * An n-dimensional array in column-major (Fortran, MATLAB) order.
 * `data` is a typed array; `shape` an array of dimensions. A complex
 * matrix stores re, im interleaved, so data.length is twice the element
 * count; a logical matrix is a Uint8Array of 0/1.
 */
export class Matrix {
  constructor(data, shape, { complex = false, logical = false } = {}) {
    if (!ArrayBuffer.isView(data) || data instanceof DataView) {
      throw new TypeError("Matrix data must be a typed array");
    }
    if (!Array.isArray(shape) || !shape.every((d) => Number.isInteger(d) && d >= 0 && d <= 0xffffffff)) {
      throw new TypeError("Matrix shape must be an array of non-negative integer dimensions");
    }
    if (complex && !(data instanceof Float32Array || data instanceof Float64Array)) {
      throw new TypeError("a complex Matrix needs a Float32Array or Float64Array of interleaved re, im");
    }
    if (logical && !(data instanceof Uint8Array)) {
      throw new TypeError("a logical Matrix needs a Uint8Array");
    }
    const count = shape.reduce((a, b) => a * b, 1);
    if (data.length !== count * (complex ? 2 : 1)) {
      throw new RangeError(
        `Matrix of shape [${shape}] needs ${count * (complex ? 2 : 1)} data elements, got ${data.length}`,
      );
    }
    this.data = data;
    this.shape = shape.slice();
    this.complex = complex;
    this.logical = logical;
  }

  /** The element kind's name: "double", "int16", "complex single", "logical" … */
  get kind() {
    if (this.logical) return "logical";
    const name = KINDS[scalarTagOf(this.data)].name;
    return this.complex ? `complex ${name}` : name;
  }

  /** Number of elements (complex elements count once). */
  get length() {
    return this.shape.reduce((a, b) => a * b, 1);
  }

  /** The element at a 0-based index per dimension (column-major). */
  get(...index) {
    if (index.length !== this.shape.length) {
      throw new RangeError(`expected ${this.shape.length} indices, got ${index.length}`);
    }
    let offset = 0;
    for (let d = index.length - 1; d >= 0; d--) {
      if (!(index[d] >= 0 && index[d] < this.shape[d])) {
        throw new RangeError(`index ${index[d]} out of range for dimension ${d} of size ${this.shape[d]}`);
      }
      offset = offset * this.shape[d] + index[d];
    }
    if (this.complex) {
      return new Complex(this.data[2 * offset], this.data[2 * offset + 1], {
        single: this.data instanceof Float32Array,
      });
    }
    return this.logical ? this.data[offset] !== 0 : this.data[offset];
  }
}

function scalarTagOf(data) {
  if (data instanceof Int8Array) return 0x03;
  if (data instanceof Int16Array) return 0x04;
  if (data instanceof Int32Array) return 0x05;
  if (data instanceof BigInt64Array) return 0x06;
  if (data instanceof Uint8Array || data instanceof Uint8ClampedArray) return 0x07;
  if (data instanceof Uint16Array) return 0x08;
  if (data instanceof Uint32Array) return 0x09;
  if (data instanceof BigUint64Array) return 0x0a;
  if (data instanceof Float32Array) return 0x0b;
  if (data instanceof Float64Array) return 0x0c;
  throw new TypeError(`${data.constructor.name} has no dimeb element type`);
}

/** A growable big-endian byte buffer. */
class Writer {
  constructor(capacity = 256) {
    this.bytes = new Uint8Array(capacity);
    this.view = new DataView(this.bytes.buffer);
    this.pos = 0;
  }
  reserve(n) {
    if (this.pos + n <= this.bytes.length) return;
    let cap = this.bytes.length * 2;
    while (cap < this.pos + n) cap *= 2;
    const bigger = new Uint8Array(cap);
    bigger.set(this.bytes.subarray(0, this.pos));
    this.bytes = bigger;
    this.view = new DataView(bigger.buffer);
  }
  u8(x) {
    this.reserve(1);
    this.bytes[this.pos++] = x;
  }
  u32(x, what) {
    if (!(Number.isInteger(x) && x >= 0 && x <= 0xffffffff)) {
      throw new DimebError(`${what} of ${x} exceeds the u32 limit`);
    }
    this.reserve(4);
    this.view.setUint32(this.pos, x);
    this.pos += 4;
  }
  scalar(tag, x) {
    const k = KINDS[tag];
    this.reserve(1 + k.size);
    this.bytes[this.pos] = tag;
    this.view[`set${k.view}`](this.pos + 1, x);
    this.pos += 1 + k.size;
  }
  raw(bytes) {
    this.reserve(bytes.length);
    this.bytes.set(bytes, this.pos);
    this.pos += bytes.length;
  }
  result() {
    return this.bytes.subarray(0, this.pos);
  }
}

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;
const UINT64_MAX = 2n ** 64n - 1n;

function checkedScalar(kind, value) {
  const tag = TAG_BY_NAME[kind];
  const k = KINDS[tag];
  if (k.Array === BigInt64Array || k.Array === BigUint64Array) {
    const v = BigInt(value);
    const [lo, hi] = k.Array === BigInt64Array ? [INT64_MIN, INT64_MAX] : [0n, UINT64_MAX];
    if (v < lo || v > hi) throw new DimebError(`${value} does not fit ${kind}`);
    return [tag, v];
  }
  const v = Number(value);
  if (kind !== "single" && kind !== "double") {
    const bits = k.size * 8;
    const [lo, hi] = kind.startsWith("u") ? [0, 2 ** bits - 1] : [-(2 ** (bits - 1)), 2 ** (bits - 1) - 1];
    if (!Number.isInteger(v) || v < lo || v > hi) throw new DimebError(`${value} does not fit ${kind}`);
  }
  return [tag, v];
}

/** Copies `src` bytes into `dst` reversing each `unit`-byte word on little-endian hosts. */
function swapInto(src, dst, unit) {
  dst.set(src);
  if (!LITTLE_ENDIAN || unit === 1) return;
  const n = dst.length;
  if (unit === 2) {
    for (let i = 0; i < n; i += 2) {
      const a = dst[i];
      dst[i] = dst[i + 1];
      dst[i + 1] = a;
    }
  } else if (unit === 4) {
    for (let i = 0; i < n; i += 4) {
      const a = dst[i];
      const b = dst[i + 1];
      dst[i] = dst[i + 3];
      dst[i + 1] = dst[i + 2];
      dst[i + 2] = b;
      dst[i + 3] = a;
    }
  } else {
    for (let i = 0; i < n; i += 8) {
      for (let j = 0; j < 4; j++) {
        const a = dst[i + j];
        dst[i + j] = dst[i + 7 - j];
        dst[i + 7 - j] = a;
      }
    }
  }
}

function encodeMatrix(w, m) {
  if (m.shape.length > 255) throw new DimebError("matrix rank exceeds 255");
  const tag = m.logical ? TAG_LOGICAL : TAG_MATRIX | (scalarTagOf(m.data) + (m.complex ? 2 : 0));
  w.u8(tag);
  w.u8(m.shape.length);
  for (const d of m.shape) w.u32(d, "matrix dimension");
  const src = new Uint8Array(m.data.buffer, m.data.byteOffset, m.data.byteLength);
  w.reserve(src.length);
  swapInto(src, w.bytes.subarray(w.pos, w.pos + src.length), m.data.BYTES_PER_ELEMENT);
  w.pos += src.length;
}

function typeName(v) {
  if (v === null) return "null";
  if (typeof v !== "object") return typeof v;
  return v.constructor ? v.constructor.name : "object";
}

function isPlainObject(v) {
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

function encodeValue(w, v, depth) {
  if (depth > MAX_DEPTH) throw new DimebError(`nesting deeper than ${MAX_DEPTH}`);
  if (v === null || v === undefined) return w.u8(TAG_NULL);
  switch (typeof v) {
    case "boolean":
      return w.u8(v ? TAG_TRUE : TAG_FALSE);
    case "number":
      return w.scalar(0x0c, v);
    case "bigint":
      if (v >= INT64_MIN && v <= INT64_MAX) return w.scalar(0x06, v);
      if (v > INT64_MAX && v <= UINT64_MAX) return w.scalar(0x0a, v);
      throw new DimebError(`BigInt ${v} is outside int64 and uint64`);
    case "string": {
      const bytes = textEncoder.encode(v);
      w.u8(TAG_STRING);
      w.u32(bytes.length, "string length");
      return w.raw(bytes);
    }
    case "object":
      break;
    default:
      throw new TypeError(`cannot encode a ${typeof v} in dimeb`);
  }
  if (v instanceof Scalar) {
    const [tag, x] = checkedScalar(v.kind, v.value);
    return w.scalar(tag, x);
  }
  if (v instanceof Complex) {
    w.reserve(17);
    if (v.single) {
      w.u8(TAG_C32);
      w.view.setFloat32(w.pos, v.re);
      w.view.setFloat32(w.pos + 4, v.im);
      w.pos += 8;
    } else {
      w.u8(TAG_C64);
      w.view.setFloat64(w.pos, v.re);
      w.view.setFloat64(w.pos + 8, v.im);
      w.pos += 16;
    }
    return;
  }
  if (v instanceof Matrix) return encodeMatrix(w, v);
  if (ArrayBuffer.isView(v) && !(v instanceof DataView)) {
    return encodeMatrix(w, new Matrix(v, [v.length]));
  }
  if (Array.isArray(v)) {
    w.u8(TAG_LIST);
    w.u32(v.length, "list length");
    for (const item of v) encodeValue(w, item, depth + 1);
    return;
  }
  if (v instanceof Map) {
    w.u8(TAG_MAP);
    w.u32(v.size, "map size");
    for (const [k, x] of v) {
      encodeValue(w, k, depth + 1);
      encodeValue(w, x, depth + 1);
    }
    return;
  }
  if (isPlainObject(v)) {
    const keys = Object.keys(v);
    w.u8(TAG_MAP);
    w.u32(keys.length, "map size");
    for (const k of keys) {
      encodeValue(w, k, depth + 1);
      encodeValue(w, v[k], depth + 1);
    }
    return;
  }
  throw new TypeError(`cannot encode a ${typeName(v)} in dimeb`);
}

/** Encodes `value` into a Uint8Array. */
export function encode(value) {
  const w = new Writer();
  encodeValue(w, value, 0);
  return w.result();
}

class Reader {
  constructor(bytes, options) {
    this.bytes = bytes;
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.pos = 0;
    this.typedScalars = options.scalars === "typed";
    this.mapsAsMap = options.maps === "map";
  }
  need(n, what) {
    const left = this.bytes.length - this.pos;
    if (n > left) {
      throw new DimebError(`truncated ${what} at byte ${this.pos}: needs ${n} bytes, ${left} left`);
    }
  }
  u32(what) {
    this.need(4, what);
    const x = this.view.getUint32(this.pos);
    this.pos += 4;
    return x;
  }
  value(depth) {
    if (depth > MAX_DEPTH) throw new DimebError(`nesting deeper than ${MAX_DEPTH}`);
    this.need(1, "tag");
    const tag = this.bytes[this.pos++];
    switch (tag) {
      case TAG_NULL:
        return null;
      case TAG_TRUE:
        return true;
      case TAG_FALSE:
        return false;
      case TAG_C32:
      case TAG_C64: {
        const single = tag === TAG_C32;
        const size = single ? 4 : 8;
        this.need(2 * size, "complex");
        const get = single ? "getFloat32" : "getFloat64";
        const c = new Complex(this.view[get](this.pos), this.view[get](this.pos + size), { single });
        this.pos += 2 * size;
        return c;
      }
      case TAG_STRING: {
        const n = this.u32("string length");
        this.need(n, "string");
        let s;
        try {
          s = textDecoder.decode(this.bytes.subarray(this.pos, this.pos + n));
        } catch {
          throw new DimebError(`string at byte ${this.pos} is not valid UTF-8`);
        }
        this.pos += n;
        return s;
      }
      case TAG_LIST: {
        const n = this.u32("list length");
        // Each element takes at least one byte: refuse absurd counts early.
        this.need(n, "list");
        const out = new Array(n);
        for (let i = 0; i < n; i++) out[i] = this.value(depth + 1);
        return out;
      }
      case TAG_MAP: {
        const n = this.u32("map size");
        this.need(2 * n, "map");
        const pairs = [];
        let allStrings = true;
        for (let i = 0; i < n; i++) {
          const k = this.value(depth + 1);
          const v = this.value(depth + 1);
          if (typeof k !== "string") allStrings = false;
          pairs.push([k, v]);
        }
        if (this.mapsAsMap || !allStrings) return new Map(pairs);
        const obj = {};
        for (const [k, v] of pairs) {
          // defineProperty, not assignment: a "__proto__" key stays data.
          Object.defineProperty(obj, k, { value: v, enumerable: true, writable: true, configurable: true });
        }
        return obj;
      }
      default:
        break;
    }
    if (KINDS[tag]) {
      const k = KINDS[tag];
      this.need(k.size, k.name);
      const x = this.view[`get${k.view}`](this.pos);
      this.pos += k.size;
      if (this.typedScalars && tag !== 0x0c) return new Scalar(k.name, x);
      return x;
    }
    if ((tag & 0xf0) === TAG_MATRIX && (KINDS[tag & 0x0f] || (tag & 0x0f) === TAG_C32 || (tag & 0x0f) === TAG_C64 || tag === TAG_LOGICAL)) {
      return this.matrix(tag);
    }
    throw new DimebError(`unknown tag 0x${tag.toString(16).padStart(2, "0")} at byte ${this.pos - 1}`);
  }
  matrix(tag) {
    this.need(1, "matrix rank");
    const rank = this.bytes[this.pos++];
    const shape = [];
    for (let i = 0; i < rank; i++) shape.push(this.u32("matrix dimension"));
    const elem = tag & 0x0f;
    const logical = tag === TAG_LOGICAL;
    const complex = elem === TAG_C32 || elem === TAG_C64;
    const scalarTag = logical ? 0x07 : complex ? elem - 2 : elem;
    const k = KINDS[scalarTag];
    let count = 1;
    for (const d of shape) count *= d;
    const values = count * (complex ? 2 : 1);
    const nbytes = values * k.size;
    if (!Number.isSafeInteger(nbytes)) throw new DimebError(`matrix of shape [${shape}] is too large`);
    this.need(nbytes, "matrix data");
    const data = new k.Array(values);
    swapInto(this.bytes.subarray(this.pos, this.pos + nbytes), new Uint8Array(data.buffer), k.size);
    this.pos += nbytes;
    return new Matrix(data, shape, { complex, logical });
  }
}

/**
 * Decodes one value that must fill `bytes` (Uint8Array or ArrayBuffer)
 * exactly. Options: {scalars: "typed"} keeps non-double scalar kinds as
 * Scalar; {maps: "map"} decodes every map as a Map.
 */
export function decode(bytes, options = {}) {
  if (bytes instanceof ArrayBuffer) bytes = new Uint8Array(bytes);
  const r = new Reader(bytes, options);
  const v = r.value(0);
  if (r.pos !== bytes.length) {
    throw new DimebError(`${bytes.length - r.pos} trailing bytes after the value`);
  }
  return v;
}
