// The postcard (version 1) wire rules of protocol/PROTOCOL.md section 4.2, written from that
// document alone. Types are described by small descriptor objects (`u64`, `string`,
// `option(T)`, `struct(name, fields)`, `enumOf(name, variants)` …) and three generic walkers use
// them: `encode` (value → bytes), `decode` (bytes → value, strict: every malformed input is a
// `DecodeError`, and nothing is allocated beyond the bytes at hand) and `debug` (value → Rust's
// debug notation, the `value:` lines of the document's examples).
//
// Values: u8/u16/u32 are Numbers, u64/i64 BigInts; a newtype struct is its inner value; an
// Option is `null` or the value; an enum's unit variant is its name (a string), a newtype
// variant `{ type, value }`, a struct variant `{ type, ...fields }`.

export class DecodeError extends Error {
  constructor(message) {
    super(message);
    this.name = 'DecodeError';
  }
}

const utf8 = new TextDecoder('utf-8', { fatal: true });
const utf8Encoder = new TextEncoder();

/** Appends bytes; `bytes()` returns them as one Uint8Array. */
export class Writer {
  constructor() { this.parts = []; }
  byte(b) { this.parts.push(b & 0xff); }
  raw(bytes) { for (const b of bytes) this.parts.push(b); }
  /** Unsigned LEB128: 7 bits per byte, least significant first, 0x80 on all but the last. */
  varint(value) {
    let v = BigInt(value);
    if (v < 0n) throw new RangeError(`varint of a negative number ${v}`);
    do {
      const group = Number(v & 0x7fn);
      v >>= 7n;
      this.byte(v === 0n ? group : group | 0x80);
    } while (v !== 0n);
  }
  bytes() { return Uint8Array.from(this.parts); }
}

/** Reads from a byte array; every read checks what is left. */
export class Reader {
  constructor(bytes) { this.buf = bytes; this.pos = 0; }
  get left() { return this.buf.length - this.pos; }
  byte() {
    if (this.pos >= this.buf.length) throw new DecodeError('unexpected end of input');
    return this.buf[this.pos++];
  }
  take(n) {
    if (n > this.left) throw new DecodeError(`needs ${n} bytes, ${this.left} left`);
    const out = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }
  /** A varint of at most `bits` bits (and ⌈bits/7⌉ bytes), as a BigInt. */
  varint(bits = 64) {
    const maxBytes = Math.ceil(bits / 7);
    let value = 0n;
    for (let i = 0; i < maxBytes; i += 1) {
      const b = this.byte();
      value |= BigInt(b & 0x7f) << BigInt(7 * i);
      if ((b & 0x80) === 0) {
        if (value >> BigInt(bits) !== 0n) throw new DecodeError(`varint over ${bits} bits`);
        return value;
      }
    }
    throw new DecodeError(`varint longer than ${maxBytes} bytes`);
  }
}

/** Zigzag for signed integers: (n << 1) ^ (n >> 63), so -1 → 1, 1 → 2, -2 → 3. */
export const zigzag = (n) => (BigInt(n) << 1n) ^ (BigInt(n) >> 63n);
export const unzigzag = (z) => (z >> 1n) ^ -(z & 1n);

const uint = (name, bits) => ({ kind: 'uint', name, bits });
export const u8 = { kind: 'u8', name: 'u8' };
export const u16 = uint('u16', 16);
export const u32 = uint('u32', 32);
export const u64 = uint('u64', 64);
export const i64 = { kind: 'i64', name: 'i64' };
export const bool = { kind: 'bool', name: 'bool' };
export const string = { kind: 'string', name: 'String' };
export const option = (inner) => ({ kind: 'option', inner });
export const vec = (inner) => ({ kind: 'vec', inner });
/** fields: [[name, type], …] in declaration (= wire) order. */
export const struct = (name, fields) => ({ kind: 'struct', name, fields });
export const newtype = (name, inner) => ({ kind: 'newtype', name, inner });
/**
 * variants: [[name, content], …] in declaration order (the index is the position). content:
 * `null` (unit), an array of fields (struct variant) or a type (newtype variant).
 */
export const enumOf = (name, variants) => ({ kind: 'enum', name, variants });

const variantName = (value) => (typeof value === 'string' ? value : value.type);

export function encode(type, value, w = new Writer()) {
  switch (type.kind) {
    case 'u8': w.byte(value); break;
    case 'uint': {
      const v = BigInt(value);
      if (v < 0n || v >> BigInt(type.bits) !== 0n) throw new RangeError(`${v} is not a ${type.name}`);
      w.varint(v);
      break;
    }
    case 'i64': w.varint(BigInt.asUintN(64, zigzag(value))); break;
    case 'bool': w.byte(value ? 1 : 0); break;
    case 'string': {
      const bytes = utf8Encoder.encode(value);
      w.varint(bytes.length);
      w.raw(bytes);
      break;
    }
    case 'option':
      if (value === null || value === undefined) w.byte(0);
      else { w.byte(1); encode(type.inner, value, w); }
      break;
    case 'vec':
      w.varint(value.length);
      for (const item of value) encode(type.inner, item, w);
      break;
    case 'struct':
      for (const [field, fieldType] of type.fields) encode(fieldType, value[field], w);
      break;
    case 'newtype': encode(type.inner, value, w); break;
    case 'enum': {
      const name = variantName(value);
      const index = type.variants.findIndex(([n]) => n === name);
      if (index < 0) throw new RangeError(`${type.name} has no variant ${name}`);
      w.varint(index);
      const content = type.variants[index][1];
      if (Array.isArray(content)) encode(struct(name, content), value, w);
      else if (content) encode(content, value.value, w);
      break;
    }
    default: throw new TypeError(`unknown type ${type.kind}`);
  }
  return w;
}

export function decode(type, r) {
  switch (type.kind) {
    case 'u8': return r.byte();
    case 'uint': {
      const v = r.varint(type.bits);
      return type.bits === 64 ? v : Number(v);
    }
    case 'i64': return BigInt.asIntN(64, unzigzag(r.varint(64)));
    case 'bool': {
      const b = r.byte();
      if (b > 1) throw new DecodeError(`bool byte ${b}`);
      return b === 1;
    }
    case 'string': {
      const len = r.varint(64);
      if (len > BigInt(r.left)) throw new DecodeError(`string of ${len} bytes, ${r.left} left`);
      try {
        return utf8.decode(r.take(Number(len)));
      } catch {
        throw new DecodeError('string is not valid UTF-8');
      }
    }
    case 'option': {
      const tag = r.byte();
      if (tag > 1) throw new DecodeError(`option tag ${tag}`);
      return tag === 1 ? decode(type.inner, r) : null;
    }
    case 'vec': {
      const count = r.varint(64);
      // Every element takes at least one byte: a count above what is left is malformed.
      if (count > BigInt(r.left)) throw new DecodeError(`${count} elements, ${r.left} bytes left`);
      const out = [];
      for (let i = 0n; i < count; i += 1n) out.push(decode(type.inner, r));
      return out;
    }
    case 'struct': {
      const out = {};
      for (const [field, fieldType] of type.fields) out[field] = decode(fieldType, r);
      return out;
    }
    case 'newtype': return decode(type.inner, r);
    case 'enum': {
      const index = r.varint(32);
      if (index >= BigInt(type.variants.length)) {
        throw new DecodeError(`${type.name}: unknown variant index ${index}`);
      }
      const [name, content] = type.variants[Number(index)];
      if (content === null) return name;
      if (Array.isArray(content)) return { type: name, ...decode(struct(name, content), r) };
      return { type: name, value: decode(content, r) };
    }
    default: throw new TypeError(`unknown type ${type.kind}`);
  }
}

/** Decodes one value that must use every byte (section 4.1: leftovers are `BadFrame`). */
export function decodeAll(type, bytes) {
  const r = new Reader(bytes);
  const value = decode(type, r);
  if (r.left !== 0) throw new DecodeError(`${r.left} bytes left over after ${type.name}`);
  return value;
}

/** Rust's `{:?}` notation of a value, as in the document's `value:` lines. */
export function debug(type, value) {
  switch (type.kind) {
    case 'u8': case 'uint': case 'i64': return String(value);
    case 'bool': return String(value);
    case 'string': return JSON.stringify(value);
    case 'option': return value === null ? 'None' : `Some(${debug(type.inner, value)})`;
    case 'vec': return `[${value.map((item) => debug(type.inner, item)).join(', ')}]`;
    case 'struct':
      return `${type.name} { ${type.fields.map(([f, t]) => `${f}: ${debug(t, value[f])}`).join(', ')} }`;
    case 'newtype': return `${type.name}(${debug(type.inner, value)})`;
    case 'enum': {
      const name = variantName(value);
      const content = type.variants.find(([n]) => n === name)[1];
      if (content === null) return name;
      if (Array.isArray(content)) return debug(struct(name, content), value);
      return `${name}(${debug(content, value.value)})`;
    }
    default: throw new TypeError(`unknown type ${type.kind}`);
  }
}
