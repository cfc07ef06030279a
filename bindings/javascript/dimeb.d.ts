// Type declarations for dimeb.js: DiME2's binary value format
// (docs/protocol.md §4). The table of JavaScript ↔ dimeb types is in
// dimeb.js and README.md.

/** Deepest nesting of lists and maps accepted, as in the Rust codec. */
export const MAX_DEPTH: number;

/** The real scalar kinds: a Scalar's kind, a Matrix's element class. */
export type ScalarKind =
  | "int8"
  | "int16"
  | "int32"
  | "int64"
  | "uint8"
  | "uint16"
  | "uint32"
  | "uint64"
  | "single"
  | "double";

/** What Matrix.kind reports. */
export type MatrixKind = ScalarKind | "complex single" | "complex double" | "logical";

/** The typed arrays a Matrix (or a bare rank-1 matrix) is made of. */
export type MatrixData =
  | Int8Array
  | Int16Array
  | Int32Array
  | BigInt64Array
  | Uint8Array
  | Uint8ClampedArray
  | Uint16Array
  | Uint32Array
  | BigUint64Array
  | Float32Array
  | Float64Array;

/** Raised for bytes that are not valid dimeb and values dimeb cannot hold. */
export class DimebError extends Error {
  constructor(message: string);
}

/** A complex number. `single` marks complex single precision (0x0D). */
export class Complex {
  constructor(re: number, im?: number, options?: { single?: boolean });
  re: number;
  im: number;
  single: boolean;
}

/**
 * A real scalar of an explicit kind, for sending integer or single values
 * that a JS number would send as double. int64/uint64 values are BigInts
 * when decoded; arithmetic works through valueOf().
 */
export class Scalar<K extends ScalarKind = ScalarKind> {
  /** Throws TypeError for an unknown kind; encoding throws DimebError if `value` does not fit. */
  constructor(kind: K, value: number | bigint);
  kind: K;
  value: number | bigint;
  valueOf(): number | bigint;
}

/** Options of a Matrix: interleaved complex data, or a logical (0/1 Uint8Array) matrix. */
export interface MatrixOptions {
  complex?: boolean;
  logical?: boolean;
}

/**
 * An n-dimensional array in column-major (Fortran, MATLAB) order. A complex
 * matrix stores re, im interleaved, so data.length is twice the element
 * count; a logical matrix is a Uint8Array of 0/1.
 */
export class Matrix<D extends MatrixData = MatrixData> {
  /** Throws TypeError/RangeError when data and shape do not fit together. */
  constructor(data: D, shape: readonly number[], options?: MatrixOptions);
  data: D;
  shape: number[];
  complex: boolean;
  logical: boolean;
  /** The element kind's name: "double", "int16", "complex single", "logical" … */
  readonly kind: MatrixKind;
  /** Number of elements (complex elements count once). */
  readonly length: number;
  /** The element at a 0-based index per dimension (column-major). */
  get(...index: number[]): number | bigint | boolean | Complex;
}

/**
 * A value dimeb can encode: undefined encodes as null, a number as a
 * double, a BigInt as int64 (uint64 above its range), a bare typed array as
 * a rank-1 matrix, arrays as lists, plain objects and Maps as maps.
 * Anything else (functions, symbols, Set, Date, class instances) throws a
 * TypeError naming its type.
 */
export type Encodable =
  | null
  | undefined
  | boolean
  | number
  | bigint
  | string
  | Scalar
  | Complex
  | Matrix
  | MatrixData
  | readonly Encodable[]
  | Map<Encodable, Encodable>
  | { readonly [key: string]: Encodable };

/**
 * A decoded value: int8…uint32 and single scalars are numbers (Scalars with
 * {scalars: "typed"}), int64/uint64 BigInts; a map is a plain object when
 * every key is a string, else a Map (always a Map with {maps: "map"}).
 */
export type Decoded =
  | null
  | boolean
  | number
  | bigint
  | string
  | Scalar
  | Complex
  | Matrix
  | Decoded[]
  | Map<Decoded, Decoded>
  | { [key: string]: Decoded };

/** Options of decode (and of DimeClient's `decode` option). */
export interface DecodeOptions {
  /** "typed": every non-double real scalar decodes as a Scalar that keeps its kind. */
  scalars?: "typed";
  /** "map": every map decodes as a Map. */
  maps?: "map";
}

/** Encodes `value` into a Uint8Array; throws TypeError or DimebError for what dimeb cannot hold. */
export function encode(value: Encodable): Uint8Array;

/**
 * Decodes one value that must fill `bytes` exactly; throws DimebError for
 * bytes that are not one valid dimeb value.
 */
export function decode(bytes: Uint8Array | ArrayBuffer, options?: DecodeOptions): Decoded;
