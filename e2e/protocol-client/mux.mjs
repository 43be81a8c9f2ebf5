// The WebSocket envelope of protocol/PROTOCOL.md section 3.1: one binary message is
// `varint(stream_id) ‖ varint(frame_length) ‖ postcard_body`, and a message holding only the
// stream id finishes that stream. Parsing is strict (section 4.1): the length varint has at
// most 5 bytes, is at most MAX_FRAME_LEN, and must match the bytes that follow exactly.

import { DecodeError, Reader, Writer, decodeAll, encode } from './postcard.mjs';
import { ClientFrame, MAX_FRAME_LEN, ServerFrame } from './schema.mjs';

/** One WebSocket message carrying `frame` (a ClientFrame value) on `streamId`. */
export function encodeMessage(streamId, frame, type = ClientFrame) {
  const body = encode(type, frame).bytes();
  if (body.length > MAX_FRAME_LEN) throw new RangeError(`frame of ${body.length} bytes`);
  const w = new Writer();
  w.varint(streamId);
  w.varint(body.length);
  w.raw(body);
  return w.bytes();
}

/** The finish message of `streamId`: its id alone. */
export function finishMessage(streamId) {
  const w = new Writer();
  w.varint(streamId);
  return w.bytes();
}

/**
 * Splits one received message: `{ streamId, frame }`, or `{ streamId, finish: true }` for a
 * finish message. `type` is ServerFrame for what a server sends.
 */
export function parseMessage(bytes, type = ServerFrame) {
  const r = new Reader(bytes);
  const streamId = Number(r.varint(64));
  if (r.left === 0) return { streamId, finish: true };
  const length = Number(r.varint(35)); // at most 5 bytes
  if (length > MAX_FRAME_LEN) throw new DecodeError(`frame length ${length} over MAX_FRAME_LEN`);
  if (length !== r.left) throw new DecodeError(`frame length ${length} but ${r.left} bytes follow`);
  return { streamId, frame: decodeAll(type, r.take(length)) };
}
