// A MessagePack decoder (https://github.com/msgpack/msgpack/blob/master/spec.md)
// for showing record bytes: it accepts a value only when the bytes are exactly
// one whole MessagePack value (nothing left over, every string valid UTF-8,
// no reserved byte 0xc1), so that arbitrary bytes are rarely taken for one.
//
// Decoded values: null, booleans, numbers (integers beyond 2^53 as BigInt),
// strings, arrays, and tagged objects for the rest:
//   {msgpack: "map", entries: [[key, value], ...]}  (keys of any type, order kept)
//   {msgpack: "bin", bytes: Uint8Array}
//   {msgpack: "ext", type: n, bytes: Uint8Array}
//   {msgpack: "float", value: n}

/** Nesting deeper than this is not shown as MessagePack. */
const MAX_DEPTH = 64;

const utf8 = new TextDecoder("utf-8", { fatal: true });

class Invalid extends Error {}

/** The value `bytes` (a Uint8Array) encode, or undefined when they are not
 *  exactly one MessagePack value. */
export function decode(bytes) {
  const reader = new Reader(bytes);
  try {
    const value = reader.value(0);
    return reader.at === bytes.length ? { value } : undefined;
  } catch (err) {
    if (err instanceof Invalid || err instanceof TypeError) return undefined;
    throw err;
  }
}

class Reader {
  constructor(bytes) {
    this.bytes = bytes;
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.at = 0;
  }

  take(n) {
    if (n > this.bytes.length - this.at) throw new Invalid("short");
    const start = this.at;
    this.at += n;
    return start;
  }

  u8() { return this.view.getUint8(this.take(1)); }
  u16() { return this.view.getUint16(this.take(2)); }
  u32() { return this.view.getUint32(this.take(4)); }

  slice(n) {
    const start = this.take(n);
    return this.bytes.subarray(start, start + n);
  }

  str(n) { return utf8.decode(this.slice(n)); }

  u64() {
    const value = this.view.getBigUint64(this.take(8));
    return value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : value;
  }

  i64() {
    const value = this.view.getBigInt64(this.take(8));
    const safe = BigInt(Number.MAX_SAFE_INTEGER);
    return value <= safe && value >= -safe ? Number(value) : value;
  }

  array(n, depth) {
    // Every element takes at least one byte: a longer claim is not MessagePack.
    if (n > this.bytes.length - this.at) throw new Invalid("short");
    const out = [];
    for (let i = 0; i < n; i++) out.push(this.value(depth + 1));
    return out;
  }

  map(n, depth) {
    if (2 * n > this.bytes.length - this.at) throw new Invalid("short");
    const entries = [];
    for (let i = 0; i < n; i++) {
      const key = this.value(depth + 1);
      entries.push([key, this.value(depth + 1)]);
    }
    return { msgpack: "map", entries };
  }

  ext(n) {
    const type = this.view.getInt8(this.take(1));
    return { msgpack: "ext", type, bytes: this.slice(n) };
  }

  value(depth) {
    if (depth > MAX_DEPTH) throw new Invalid("too deep");
    const b = this.u8();
    if (b <= 0x7f) return b;
    if (b <= 0x8f) return this.map(b & 0x0f, depth);
    if (b <= 0x9f) return this.array(b & 0x0f, depth);
    if (b <= 0xbf) return this.str(b & 0x1f);
    if (b >= 0xe0) return b - 0x100;
    switch (b) {
      case 0xc0: return null;
      case 0xc2: return false;
      case 0xc3: return true;
      case 0xc4: return { msgpack: "bin", bytes: this.slice(this.u8()) };
      case 0xc5: return { msgpack: "bin", bytes: this.slice(this.u16()) };
      case 0xc6: return { msgpack: "bin", bytes: this.slice(this.u32()) };
      case 0xc7: return this.ext(this.u8());
      case 0xc8: return this.ext(this.u16());
      case 0xc9: return this.ext(this.u32());
      case 0xca: return { msgpack: "float", value: this.view.getFloat32(this.take(4)) };
      case 0xcb: return { msgpack: "float", value: this.view.getFloat64(this.take(8)) };
      case 0xcc: return this.u8();
      case 0xcd: return this.u16();
      case 0xce: return this.u32();
      case 0xcf: return this.u64();
      case 0xd0: return this.view.getInt8(this.take(1));
      case 0xd1: return this.view.getInt16(this.take(2));
      case 0xd2: return this.view.getInt32(this.take(4));
      case 0xd3: return this.i64();
      case 0xd4: return this.ext(1);
      case 0xd5: return this.ext(2);
      case 0xd6: return this.ext(4);
      case 0xd7: return this.ext(8);
      case 0xd8: return this.ext(16);
      case 0xd9: return this.str(this.u8());
      case 0xda: return this.str(this.u16());
      case 0xdb: return this.str(this.u32());
      case 0xdc: return this.array(this.u16(), depth);
      case 0xdd: return this.array(this.u32(), depth);
      case 0xde: return this.map(this.u16(), depth);
      case 0xdf: return this.map(this.u32(), depth);
      default: throw new Invalid("reserved byte"); // 0xc1
    }
  }
}

/** Whether a decoded value is a plain string or number (shown as MessagePack
 *  only when it is something else: a map, array, nil, boolean, bin or ext). */
export function isPlain(value) {
  return typeof value === "string" || typeof value === "number" || typeof value === "bigint"
    || (value !== null && typeof value === "object" && value.msgpack === "float");
}

/** JSON-like text of a decoded value: on one line when short, else indented. */
export function show(value) {
  const flat = format(value, null, "");
  return flat.length <= 100 ? flat : format(value, "  ", "");
}

function format(value, step, indent) {
  if (value === null) return "null";
  if (typeof value === "boolean" || typeof value === "bigint") return String(value);
  if (typeof value === "number") return String(value);
  if (typeof value === "string") return JSON.stringify(value);
  if (Array.isArray(value)) {
    return group("[", "]", value.map((item) => format(item, step, deeper(indent, step))), step, indent);
  }
  switch (value.msgpack) {
    case "float": return Number.isInteger(value.value) ? value.value.toFixed(1) : String(value.value);
    case "bin": return `bin(${hex(value.bytes)})`;
    case "ext": return `ext(${value.type}, ${hex(value.bytes)})`;
    case "map": {
      const inner = deeper(indent, step);
      const entries = value.entries.map(([k, v]) => `${format(k, null, "")}: ${format(v, step, inner)}`);
      return group("{", "}", entries, step, indent);
    }
    default: return String(value);
  }
}

function deeper(indent, step) {
  return step === null ? indent : indent + step;
}

function group(open, close, items, step, indent) {
  if (items.length === 0) return open + close;
  if (step === null) return open + items.join(", ") + close;
  const inner = indent + step;
  return `${open}\n${items.map((item) => inner + item).join(",\n")}\n${indent}${close}`;
}

/** Lowercase hex of `bytes`, two digits a byte, no separator. */
export function hex(bytes) {
  let out = "";
  for (const b of bytes) out += b.toString(16).padStart(2, "0");
  return out;
}
