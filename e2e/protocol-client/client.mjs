// A small Quibble client over WebSocket, written only from protocol/PROTOCOL.md and
// docs/api.md: the REST calls of section 2 and the session of section 7 (Hello → Welcome,
// heartbeat, one stream per joined conversation, cursors, the outbox, resume).
//
// A `SpecClient` belongs to one account and outlives its connections: it keeps, per
// conversation, the cursor (epoch, last seq), the messages delivered in order and the outbox of
// sends without an answer. `connect()` opens a WebSocket, pipelines `Hello` and one resuming
// `Join` per known conversation, and resends each outbox after its `Joined` (7.4, 7.10).
// Reconnecting is the caller's call (`drop()` then `connect()`); there is no backoff loop.
// Every received frame is also kept raw per stream (`stream.received`), so a test can check
// what the server sent, not only what the cursor let through.

import { EventEmitter } from 'node:events';
import { webcrypto } from 'node:crypto';

import WebSocket from 'ws';

import { encodeMessage, finishMessage, parseMessage } from './mux.mjs';
import { PROTOCOL_VERSION } from './schema.mjs';

const DEFAULT_TIMEOUT_MS = 10_000;

/** An HTTP API error: `{"error":{"code","message"}}` with its status (section 2). */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(`HTTP ${status} ${code}: ${message}`);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
  }
}

/** A realtime refusal: an `Error` frame (connection or stream) or a final `Rejected`. */
export class ProtocolError extends Error {
  constructor(code, reason) {
    super(`${code}: ${reason}`);
    this.name = 'ProtocolError';
    this.code = code;
    this.reason = reason;
  }
}

/** One JSON call of docs/api.md, bounded by `timeoutMs`. */
export async function api(baseUrl, method, path, { token, body, timeoutMs = DEFAULT_TIMEOUT_MS } = {}) {
  const headers = {};
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (token) headers.authorization = `Bearer ${token}`;
  const res = await fetch(new URL(path, baseUrl), {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(timeoutMs),
  });
  const text = await res.text();
  const json = text ? JSON.parse(text) : null;
  if (!res.ok) throw new ApiError(res.status, json?.error?.code, json?.error?.message);
  return json;
}

export const signUp = (baseUrl, username, password) =>
  api(baseUrl, 'POST', '/api/signup', { body: { username, password } });
export const createRoom = (baseUrl, token, name) =>
  api(baseUrl, 'POST', '/api/rooms', { token, body: { name } });

export const deleteMessage = (baseUrl, token, conversation, seq) =>
  api(baseUrl, 'DELETE', `/api/conversations/${conversation}/messages/${seq}`, { token });

/** Resolves to `promise`, or rejects after `ms` saying what was awaited. */
export function deadline(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** A random non-zero u64 below 2^62, so counting up from it never wraps (7.4). */
function randomClientIdBase() {
  const [n] = webcrypto.getRandomValues(new BigUint64Array(1));
  return (n >> 2n) + 1n;
}

export class SpecClient extends EventEmitter {
  /** `baseUrl` is `http://HOST:PORT`; `token` comes from sign-up or login. */
  constructor(baseUrl, token) {
    super();
    this.wsUrl = `${baseUrl.replace(/^http/, 'ws').replace(/\/$/, '')}/ws`;
    this.token = token;
    this.nextClientId = randomClientIdBase();
    /** conversation id (BigInt) → { id, cursor, messages, outbox, stream } */
    this.conversations = new Map();
    this.conn = null;
  }

  /**
   * Opens a connection: `Hello`, then (pipelined, 3.1) a resuming `Join` per conversation this
   * client has joined before. Resolves to `Welcome`; rejects with a ProtocolError on `Error`.
   */
  async connect({ timeoutMs = DEFAULT_TIMEOUT_MS } = {}) {
    const ws = new WebSocket(this.wsUrl, { handshakeTimeout: timeoutMs });
    const conn = {
      ws, nextStreamId: 1, streams: new Map(), welcome: null, log: [], close: null,
      lastHeard: Date.now(), timer: null, nonce: 0n, lastPong: 0n,
    };
    this.conn = conn;
    ws.on('message', (data, isBinary) => this.onMessage(conn, data, isBinary));
    ws.on('close', (code, reason) => this.onClose(conn, code, reason.toString()));
    ws.on('error', (err) => conn.log.push(['ws-error', err.message]));

    const welcome = new Promise((resolve, reject) => {
      conn.settle = { resolve, reject };
    });
    welcome.catch(() => {}); // observed through the deadline below, or not at all
    try {
      await deadline(new Promise((resolve, reject) => {
        ws.once('open', resolve);
        ws.once('error', reject);
      }), timeoutMs, 'the WebSocket upgrade');
      this.write(conn, 0, { type: 'Hello', version: PROTOCOL_VERSION, token: this.token });
      for (const conv of this.conversations.values()) this.openStream(conn, conv);
      return await deadline(welcome, timeoutMs, 'Welcome');
    } catch (err) {
      // A refusal (`Error`) is followed by the server's own close; anything else is cut here.
      if (!(err instanceof ProtocolError)) ws.terminate();
      throw err;
    }
  }

  /** Joins a conversation (a room's REST id) on a new stream; resolves to `Joined`. */
  async join(conversation, { timeoutMs = DEFAULT_TIMEOUT_MS } = {}) {
    const id = BigInt(conversation);
    let conv = this.conversations.get(id);
    if (!conv) {
      conv = { id, cursor: null, messages: [], outbox: new Map(), stream: null };
      this.conversations.set(id, conv);
    }
    const stream = this.openStream(this.conn, conv);
    await this.waitFor(() => stream.joined || stream.error, timeoutMs, `Joined of ${id}`);
    if (stream.error) throw stream.error;
    return stream.joined;
  }

  /**
   * Sends `body` to a joined conversation. The send stays in the outbox until `Sent` (or a
   * final `Rejected`), and is resent with the same `clientId` after each new `Joined`.
   * Resolves to `Sent`. Passing an earlier `clientId` resends that message (de-duplication).
   */
  async send(conversation, body, { clientId, timeoutMs = DEFAULT_TIMEOUT_MS } = {}) {
    const conv = this.conversations.get(BigInt(conversation));
    if (!conv) throw new Error(`conversation ${conversation} was never joined`);
    const id = clientId ?? this.nextClientId++;
    const entry = conv.outbox.get(id) ?? { clientId: id, body, sent: null, error: null };
    conv.outbox.set(id, entry);
    if (conv.stream?.joined && !conv.stream.ended) {
      this.write(this.conn, conv.stream.id, { type: 'Send', client_id: id, body });
    }
    await this.waitFor(() => entry.sent || entry.error, timeoutMs, `Sent of client id ${id}`);
    if (entry.error) throw entry.error;
    return entry.sent;
  }

  /** History { before_seq, limit } on the conversation's stream; resolves to the HistoryPage. */
  async history(conversation, beforeSeq, limit, { timeoutMs = DEFAULT_TIMEOUT_MS } = {}) {
    const stream = this.conversations.get(BigInt(conversation))?.stream;
    if (!stream?.joined) throw new Error(`conversation ${conversation} is not joined`);
    const before = BigInt(beforeSeq);
    const seen = stream.pages.length;
    this.write(this.conn, stream.id, { type: 'History', before_seq: before, limit });
    const page = () => stream.pages.slice(seen).find((p) => p.before_seq === before);
    await this.waitFor(page, timeoutMs, `HistoryPage before ${before}`);
    return page();
  }

  /** Ping { nonce } on the control stream; resolves to the matching Pong's nonce. */
  async ping({ timeoutMs = DEFAULT_TIMEOUT_MS } = {}) {
    const conn = this.conn;
    const nonce = ++conn.nonce;
    this.write(conn, 0, { type: 'Ping', nonce });
    await this.waitFor(() => conn.lastPong >= nonce, timeoutMs, `Pong ${nonce}`);
    return nonce;
  }

  /** Cuts the connection as a network failure would (no Leave, no close handshake). */
  drop() {
    const conn = this.conn;
    if (!conn) return;
    clearInterval(conn.timer);
    conn.ws.terminate();
  }

  /**
   * Ends the connection the protocol's way: finish stream 0 (3.1) and let the server close
   * (it finishes stream 0 too, then closes with 1000). Resolves to `{ code, reason }`.
   */
  async close({ timeoutMs = DEFAULT_TIMEOUT_MS } = {}) {
    const conn = this.conn;
    if (!conn || conn.close) return conn?.close;
    clearInterval(conn.timer);
    conn.closing = true; // the server ends every stream now: no rejoin
    if (conn.ws.readyState === WebSocket.OPEN) conn.ws.send(finishMessage(0));
    await this.waitFor(() => conn.close, timeoutMs, 'the server to close').catch(() => conn.ws.terminate());
    return conn.close;
  }

  /** Resolves once `predicate()` holds (checked after every event), or rejects at the deadline. */
  waitFor(predicate, timeoutMs, what) {
    if (predicate()) return Promise.resolve();
    let check;
    const done = new Promise((resolve) => {
      check = () => { if (predicate()) resolve(); };
      this.on('update', check);
    });
    return deadline(done, timeoutMs, what).finally(() => this.off('update', check));
  }

  /** A new stream id (never reused on a connection) carrying `Join` with the cursor, if any. */
  openStream(conn, conv) {
    const stream = {
      id: conn.nextStreamId++, conv, joined: null, received: [], deleted: [], pages: [],
      ended: false, error: null, resendAt: 0, resendTimer: null,
    };
    conn.streams.set(stream.id, stream);
    conv.stream = stream;
    const resume = conv.cursor ? { epoch: conv.cursor.epoch, seq: conv.cursor.seq } : null;
    this.write(conn, stream.id, { type: 'Join', conversation: conv.id, resume });
    return stream;
  }

  write(conn, streamId, frame) {
    if (conn.ws.readyState !== WebSocket.OPEN) return; // the outbox keeps what matters
    conn.ws.send(encodeMessage(streamId, frame));
  }

  onMessage(conn, data, isBinary) {
    conn.lastHeard = Date.now();
    if (!isBinary) {
      conn.log.push(['text-message']);
      conn.ws.terminate();
      return;
    }
    let msg;
    try {
      msg = parseMessage(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    } catch (err) {
      // A frame this client cannot decode: treat it as BadFrame (section 11).
      conn.log.push(['bad-frame', err.message]);
      conn.ws.terminate();
      return;
    }
    conn.log.push(msg.finish ? ['finish', msg.streamId] : ['frame', msg.streamId, msg.frame.type]);
    if (msg.streamId === 0) {
      if (!msg.finish) this.onControl(conn, msg.frame);
    } else {
      const stream = conn.streams.get(msg.streamId);
      if (stream && msg.finish) this.onStreamEnd(conn, stream);
      else if (stream) this.onStreamFrame(conn, stream, msg.frame);
    }
    this.emit('update');
  }

  onControl(conn, frame) {
    switch (frame.type) {
      case 'Welcome':
        conn.welcome = frame;
        conn.timer = setInterval(() => this.heartbeat(conn), frame.heartbeat_ms);
        conn.settle.resolve(frame);
        break;
      case 'Pong': if (frame.nonce > conn.lastPong) conn.lastPong = frame.nonce; break;
      case 'Error':
        conn.error = new ProtocolError(frame.code, frame.reason);
        conn.settle.reject(conn.error);
        break;
      case 'GoAway': conn.goAway = frame; break;
      default: break; // the list, presence and other events: not used here (7.1)
    }
  }

  /** Ping every heartbeat_ms; nothing heard for 3 × heartbeat_ms means dead (7.3). */
  heartbeat(conn) {
    if (Date.now() - conn.lastHeard > 3 * conn.welcome.heartbeat_ms) {
      clearInterval(conn.timer);
      conn.ws.terminate();
      return;
    }
    this.write(conn, 0, { type: 'Ping', nonce: ++conn.nonce });
  }

  onStreamFrame(conn, stream, frame) {
    const conv = stream.conv;
    switch (frame.type) {
      case 'Joined': {
        stream.joined = frame;
        // 7.5: a new or other-epoch cursor restarts from from_seq; otherwise keep the higher.
        if (!conv.cursor || conv.cursor.epoch !== frame.epoch) {
          conv.cursor = { epoch: frame.epoch, seq: frame.from_seq };
          conv.messages = [];
        } else if (frame.from_seq > conv.cursor.seq) {
          conv.cursor.seq = frame.from_seq;
        }
        for (const entry of conv.outbox.values()) {
          entry.refused = false;
          this.write(conn, stream.id, { type: 'Send', client_id: entry.clientId, body: entry.body });
        }
        break;
      }
      case 'Message': {
        stream.received.push(frame.value);
        const m = frame.value;
        // 7.5: at or below the cursor is a duplicate; cursor + 1 is delivered. (A gap is not
        // expected on one stream from this server; it is left undelivered here.)
        if (conv.cursor && m.seq === conv.cursor.seq + 1n) {
          conv.messages.push(m);
          conv.cursor.seq = m.seq;
        }
        break;
      }
      case 'Sent': {
        const entry = conv.outbox.get(frame.client_id);
        conv.outbox.delete(frame.client_id);
        if (entry) entry.sent = frame;
        break;
      }
      case 'Rejected': {
        const entry = conv.outbox.get(frame.client_id);
        if (!entry) break;
        const retry = frame.code === 'RateLimited' && /retry in (\d+) ms$/.exec(frame.reason);
        if (retry) {
          entry.refused = true;
          this.scheduleResend(conn, stream, Date.now() + Number(retry[1]));
        } else {
          conv.outbox.delete(frame.client_id);
          entry.error = new ProtocolError(frame.code, frame.reason);
        }
        break;
      }
      case 'Deleted': {
        stream.deleted.push(frame.seq);
        const m = conv.messages.find((held) => held.seq === frame.seq);
        if (m) Object.assign(m, { body: '', client_id: 0n });
        break;
      }
      case 'Error': stream.error = new ProtocolError(frame.code, frame.reason); break;
      case 'Lagged': stream.lagged = frame; break;
      case 'HistoryPage': stream.pages.push(frame); break;
      default: break;
    }
  }

  /**
   * 7.4: after a RateLimited refusal, wait the longest "retry in N ms" asked for, then resend
   * every refused send of the stream in their original (outbox) order.
   */
  scheduleResend(conn, stream, at) {
    if (stream.resendAt >= at) return;
    clearTimeout(stream.resendTimer);
    stream.resendAt = at;
    stream.resendTimer = setTimeout(() => {
      stream.resendAt = 0;
      if (stream.conv.stream !== stream || stream.ended) return; // a new Joined resends all
      for (const entry of stream.conv.outbox.values()) {
        if (!entry.refused) continue;
        entry.refused = false;
        this.write(conn, stream.id, { type: 'Send', client_id: entry.clientId, body: entry.body });
      }
    }, at - Date.now());
  }

  /** 7.7: a stream the server ended is rejoined from the cursor, unless the error is final. */
  onStreamEnd(conn, stream) {
    stream.ended = true;
    const final = ['UnknownConversation', 'Forbidden'].includes(stream.error?.code);
    const current = () => stream.conv.stream === stream && !conn.closing && !conn.close;
    if (final || !current()) return;
    const delay = stream.error ? 1000 : 0;
    setTimeout(() => {
      if (current()) this.openStream(conn, stream.conv);
    }, delay);
  }

  onClose(conn, code, reason) {
    clearInterval(conn.timer);
    conn.close = { code, reason };
    conn.log.push(['close', code, reason]);
    for (const stream of conn.streams.values()) stream.ended = true;
    conn.settle.reject(conn.error ?? new Error(`connection closed (${code} ${reason}) before Welcome`));
    this.emit('update');
  }
}
