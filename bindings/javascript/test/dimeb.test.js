// The dimeb codec on its own: exact bytes for each type, round trips,
// and clear errors for bad input and unsupported values.

import test from "node:test";
import assert from "node:assert/strict";
import { encode, decode, Complex, Matrix, Scalar, DimebError, MAX_DEPTH } from "../dimeb.js";
import { sameValue } from "./helpers.js";

const hex = (u8) => Buffer.from(u8).toString("hex");

test("scalars encode to the documented bytes", () => {
  assert.equal(hex(encode(null)), "00");
  assert.equal(hex(encode(undefined)), "00");
  assert.equal(hex(encode(true)), "01");
  assert.equal(hex(encode(false)), "02");
  assert.equal(hex(encode(1.5)), "0c3ff8000000000000");
  assert.equal(hex(encode(3)), "0c4008000000000000", "a JS number is a double");
  assert.equal(hex(encode(-1n)), "06ffffffffffffffff");
  assert.equal(hex(encode(2n ** 64n - 1n)), "0affffffffffffffff", "above int64 goes uint64");
  assert.equal(hex(encode(new Scalar("int16", -2))), "04fffe");
  assert.equal(hex(encode(new Scalar("uint8", 255))), "07ff");
  assert.equal(hex(encode(new Scalar("single", 1))), "0b3f800000");
  assert.equal(hex(encode(new Complex(1, -1))), "0e3ff0000000000000bff0000000000000");
  assert.equal(hex(encode(new Complex(1, 2, { single: true }))), "0d3f80000040000000");
  assert.equal(hex(encode("é")), "2000000002c3a9");
});

test("containers and matrices encode column-major", () => {
  assert.equal(hex(encode([true, null])), "21000000020100");
  assert.equal(hex(encode({ a: false })), "2200000001200000000161" + "02");
  assert.equal(hex(encode(new Map([[1n, "x"]]))), "2200000001" + "060000000000000001" + "200000000178");
  // 2x2 int8 [[1, 3], [2, 4]] column-major: 1 2 3 4
  const m = new Matrix(new Int8Array([1, 2, 3, 4]), [2, 2]);
  assert.equal(hex(encode(m)), "1302" + "00000002" + "00000002" + "01020304");
  assert.equal(m.get(0, 1), 3);
  assert.equal(hex(encode(new Uint16Array([1, 256]))), "180100000002" + "00010100", "bare typed array: rank 1");
  const logical = new Matrix(new Uint8Array([1, 0]), [1, 2], { logical: true });
  assert.equal(hex(encode(logical)), "1f02000000010000000201" + "00");
  const cplx = new Matrix(new Float32Array([1, 2]), [1, 1], { complex: true });
  assert.equal(hex(encode(cplx)), "1d02000000010000000" + "1" + "3f80000040000000");
});


test("every type round-trips through encode and decode", () => {
  const cases = [
    null, true, false, 0, -0, NaN, Infinity, -Infinity, 1.5e300, 5e-324,
    -(2n ** 63n), 2n ** 63n - 1n, 2n ** 64n - 1n,
    new Complex(0, -0), new Complex(1.5, 2.5, { single: true }),
    "", "héllo ✓ 🎉", "a\u0000b",
    [], [1, ["x", [null]]],
    {}, { a: 1, "not a field": [true], __proto__x: 2 },
    new Map([[1n, "one"], ["k", 2]]),
    new Matrix(new Float64Array(0), [0, 3]),
    new Matrix(new Float64Array([1, NaN, -0, Infinity, 5, 6]), [2, 3]),
    new Matrix(new Float32Array([1.5, -2.5]), [2]),
    new Matrix(new Int8Array([-128, 127]), [2, 1]),
    new Matrix(new Int16Array(24).map((_, i) => i - 12), [2, 3, 4]),
    new Matrix(new Int32Array([-(2 ** 31), 2 ** 31 - 1]), [1, 2]),
    new Matrix(new BigInt64Array([-(2n ** 63n), 2n ** 63n - 1n]), [2]),
    new Matrix(new Uint8Array([0, 255]), [2]),
    new Matrix(new Uint16Array([0, 65535]), [2]),
    new Matrix(new Uint32Array([0, 2 ** 32 - 1]), [2]),
    new Matrix(new BigUint64Array([0n, 2n ** 64n - 1n]), [2]),
    new Matrix(new Float64Array([1, 2, 3, -4]), [2], { complex: true }),
    new Matrix(new Float32Array([1, 0, 3, 0]), [1, 2], { complex: true }),
    new Matrix(new Uint8Array([1, 0, 0, 1, 1, 1]), [2, 3], { logical: true }),
    new Matrix(new Float64Array([7]), []),
  ];
  for (const v of cases) {
    const back = decode(encode(v));
    assert.ok(sameValue(v, back), `${String(v?.constructor?.name ?? v)} changed: ${String(back)}`);
  }
  // Small integer kinds decode to plain numbers, or to Scalar on request.
  for (const kind of ["int8", "int16", "int32", "uint8", "uint16", "uint32", "single"]) {
    const s = new Scalar(kind, 7);
    assert.equal(decode(encode(s)), 7);
    assert.ok(sameValue(s, decode(encode(s), { scalars: "typed" })));
  }
  assert.deepEqual(decode(encode(new Scalar("int64", 7))), 7n);
  assert.ok(decode(encode({ a: 1 }), { maps: "map" }) instanceof Map);
  // A "__proto__" key stays an ordinary key.
  const tricky = decode(encode(new Map([["__proto__", 1]])));
  assert.equal(Object.getPrototypeOf(tricky), Object.prototype);
  assert.deepEqual(Object.keys(tricky), ["__proto__"]);
});

test("bad bytes and unsupported values give clear errors", () => {
  assert.throws(() => decode(new Uint8Array([])), /truncated tag/);
  assert.throws(() => decode(new Uint8Array([0x0c, 1, 2])), /truncated double/);
  assert.throws(() => decode(new Uint8Array([0x30])), /unknown tag 0x30/);
  assert.throws(() => decode(new Uint8Array([0x00, 0x00])), /1 trailing bytes/);
  assert.throws(() => decode(new Uint8Array([0x21, 0xff, 0xff, 0xff, 0xff])), /truncated list/);
  assert.throws(() => decode(new Uint8Array([0x1c, 2, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff])), DimebError);
  assert.throws(() => decode(new Uint8Array([0x20, 0, 0, 0, 1, 0xff])), /not valid UTF-8/);
  const deep = new Uint8Array(5 * (MAX_DEPTH + 2));
  for (let i = 0; i < deep.length; i += 5) deep.set([0x21, 0, 0, 0, 1], i);
  assert.throws(() => decode(deep), /nesting deeper/);
  assert.throws(() => encode(2n ** 64n), /outside int64 and uint64/);
  assert.throws(() => encode(-(2n ** 63n) - 1n), /outside int64 and uint64/);
  assert.throws(() => encode(new Scalar("int8", 200)), /does not fit int8/);
  assert.throws(() => encode(new Scalar("uint64", -1n)), /does not fit uint64/);
  assert.throws(() => encode(() => 1), /cannot encode a function/);
  assert.throws(() => encode(new Set([1])), /cannot encode a Set/);
  assert.throws(() => encode(new Date()), /cannot encode a Date/);
  assert.throws(() => encode(Symbol("s")), /cannot encode a symbol/);
  assert.throws(() => new Matrix(new Float64Array(3), [2, 2]), /needs 4 data elements/);
  assert.throws(() => new Matrix(new Int32Array(2), [1], { complex: true }), /complex Matrix needs/);
  assert.throws(() => new Matrix(new Int8Array(2), [2], { logical: true }), /logical Matrix needs/);
});
