// Proof that protocol/PROTOCOL.md is enough to write a client from: protocol-client/ is a Node
// client written from that document and docs/api.md alone (no Rust source, no other JS of this
// repository), with its own postcard codec and WebSocket envelope.
//
// - Its codec decodes every byte-by-byte example of section 10 to the document's `value:` line
//   and encodes that value back to the same bytes (no server needed).
// - Against the real `quibble` binary (temp data dir, ephemeral port): a bad token is refused
//   as 3.1 says; alice and bob sign up (REST), alice creates a room, both join over WebSocket;
//   bob receives alice's message (text, seq, author, client id); bob's connection drops, alice
//   sends three more, bob reconnects, resumes from his cursor and gets exactly the missed
//   messages in order, then live ones, no duplicates; a resent client id gets the original seq
//   back and is delivered once, on the same connection and after a reconnect; a send cut by a
//   drop goes out again from the outbox after the next Joined and is stored once; 50 pipelined
//   sends past the rate limit are refused in part, resent after the "retry in N ms" hint and
//   stored once each, in send order; a history page; deletions heard live and after a resume.
//
// Run with `node --test spec_client.test.mjs` in e2e/ (scripts/test runs every e2e test).

import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

import {
  SpecClient, createRoom, deadline, deleteMessage, signUp,
} from './protocol-client/client.mjs';
import { encodeMessage, parseMessage } from './protocol-client/mux.mjs';
import { debug } from './protocol-client/postcard.mjs';
import { ClientFrame, ServerFrame, wsCloseCode } from './protocol-client/schema.mjs';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const TARGET_DIR = process.env.CARGO_TARGET_DIR ?? join(ROOT, 'target');
const SERVER_BIN = join(TARGET_DIR, 'debug', 'quibble');
const PASSWORD = 'correct horse battery';
const WAIT_MS = 10_000;
// Low enough that the flood test below is refused as RateLimited part of the way, high enough
// that the other tests never are.
const SERVER_CONFIG = 'messages_per_second = 20\nmessage_burst = 20\n';

describe('the section 10 examples of protocol/PROTOCOL.md', () => {
  const doc = readFileSync(join(ROOT, 'protocol', 'PROTOCOL.md'), 'utf8');
  const examples = [...doc.matchAll(/```text\nexample: (\S+)\nvalue: (.*)\n([\s\S]*?)```/g)];

  it('are all found (every frame variant of both directions has one)', () => {
    assert.ok(examples.length >= 30, `only ${examples.length} examples found`);
    const seen = new Set(examples.map(([, , value]) => value.split(/[ ({]/)[0]));
    for (const [name] of [...ClientFrame.variants, ...ServerFrame.variants]) {
      assert.ok(seen.has(name), `no example of ${name}`);
    }
  });

  it('decode to their value line and encode back to the same bytes', () => {
    for (const [, name, value, body] of examples) {
      const bytes = Uint8Array.from(body.split('\n')
        .flatMap((line) => line.split('#')[0].trim().split(/\s+/).filter(Boolean))
        .map((hex) => parseInt(hex, 16)));
      let type = null;
      if (body.includes('ClientFrame variant')) type = ClientFrame;
      else if (body.includes('ServerFrame variant')) type = ServerFrame;
      const msg = parseMessage(bytes, type ?? ServerFrame);
      if (!type) {
        assert.equal(value, `end of stream ${msg.streamId}`, `${name}: a finish message`);
        assert.equal(msg.finish, true, name);
        continue;
      }
      assert.equal(debug(type, msg.frame), value, `${name}: decoded value`);
      assert.deepEqual([...encodeMessage(msg.streamId, msg.frame, type)], [...bytes], `${name}: re-encoded`);
    }
  });
});

describe('a client written from PROTOCOL.md, against the real server over WebSocket', () => {
  let server;
  let baseUrl;
  let dataDir;
  const clients = [];

  before(async () => {
    execFileSync('cargo', ['build', '-p', 'quibble-server', '--bin', 'quibble'], {
      cwd: ROOT, stdio: 'inherit',
    });
    dataDir = mkdtempSync(join(tmpdir(), 'quibble-spec-client-'));
    const config = join(dataDir, 'spec.toml');
    writeFileSync(config, SERVER_CONFIG);
    server = spawn(SERVER_BIN, [
      'serve', '--listen', '127.0.0.1:0', '--data-dir', dataDir, '--config', config,
    ], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const exited = new Promise((_, reject) => server.once('exit', (code, signal) => {
      reject(new Error(`quibble serve exited early (${signal ?? code})`));
    }));
    const url = new Promise((resolve, reject) => {
      createInterface({ input: server.stdout }).once('line', (line) => {
        const match = line.match(/listening on (http:\/\/\S+?)\/?$/);
        if (match) resolve(match[1]);
        else reject(new Error(`unexpected first line from quibble serve: ${line}`));
      });
    });
    baseUrl = await deadline(Promise.race([url, exited]), 60_000, 'quibble serve to print its URL');
  });

  after(async () => {
    for (const client of clients) client.drop();
    if (server && server.exitCode === null && server.signalCode === null) {
      const exited = new Promise((resolve) => server.once('exit', resolve));
      server.kill('SIGTERM');
      const timer = setTimeout(() => server.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    }
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  });

  const newClient = (token) => {
    const client = new SpecClient(baseUrl, token);
    clients.push(client);
    return client;
  };

  it('a bad token gets Error Unauthorized on stream 0, its finish, then close 4005', async () => {
    const client = newClient('not-a-real-token');
    const refused = await client.connect().then(() => null, (err) => err);
    assert.equal(refused?.code, 'Unauthorized', `connect should be refused: ${refused}`);
    const conn = client.conn;
    await client.waitFor(() => conn.close, WAIT_MS, 'the close');
    assert.deepEqual(conn.log, [
      ['frame', 0, 'Error'], ['finish', 0], ['close', wsCloseCode('Unauthorized'), conn.close.reason],
    ]);
    assert.equal(conn.close.code, 4005);
  });

  it('signs up, joins, sends, receives, resumes after a drop, and de-duplicates resends', async () => {
    const suffix = process.pid.toString(36);
    const alice = await signUp(baseUrl, `alice_${suffix}`, PASSWORD);
    const bob = await signUp(baseUrl, `bob_${suffix}`, PASSWORD);
    const room = await createRoom(baseUrl, alice.token, `spec ${suffix}`);
    const roomId = BigInt(room.id);

    const a = newClient(alice.token);
    const b = newClient(bob.token);
    const welcomeA = await a.connect();
    const welcomeB = await b.connect();
    assert.equal(welcomeA.user, BigInt(alice.user.id));
    assert.equal(welcomeA.username, alice.user.username);
    assert.equal(welcomeA.version, 4);
    assert.equal(welcomeB.user, BigInt(bob.user.id));
    assert.equal(welcomeA.epoch, welcomeB.epoch, 'one store, one epoch');
    await a.ping();

    const joinedA = await a.join(roomId);
    const joinedB = await b.join(roomId);
    for (const joined of [joinedA, joinedB]) {
      assert.equal(joined.conversation, roomId);
      assert.equal(joined.epoch, welcomeA.epoch);
      assert.equal(joined.head_seq, 0n);
      assert.equal(joined.from_seq, 0n);
    }

    // A sends, B receives: exact text, seq, author and client id.
    const first = await a.send(roomId, 'hello from the spec');
    assert.equal(first.seq, 1n);
    const convB = b.conversations.get(roomId);
    await b.waitFor(() => convB.messages.length === 1, WAIT_MS, "bob's first message");
    const got = convB.messages[0];
    assert.deepEqual(
      [got.seq, got.body, got.author, got.author_name, got.client_id, got.sent_at_ms],
      [1n, 'hello from the spec', BigInt(alice.user.id), alice.user.username, first.client_id, first.sent_at_ms],
    );
    assert.deepEqual(convB.cursor, { epoch: welcomeB.epoch, seq: 1n });

    // B's connection drops; A sends three more while B is away.
    b.drop();
    await b.waitFor(() => b.conn.close, WAIT_MS, "bob's drop");
    const missed = ['while you were away 1', 'while you were away 2', 'while you were away 3'];
    const sentWhileAway = [];
    for (const body of missed) sentWhileAway.push(await a.send(roomId, body));
    assert.deepEqual(sentWhileAway.map((s) => s.seq), [2n, 3n, 4n]);

    // B reconnects: Hello and a resuming Join pipelined, from its cursor (epoch, 1).
    await b.connect();
    const stream = convB.stream;
    assert.equal(stream.id, 1, 'stream ids restart at 1 on a new connection');
    await b.waitFor(() => stream.received.length >= 3, WAIT_MS, 'the replay of the missed messages');
    assert.deepEqual([stream.joined.epoch, stream.joined.head_seq, stream.joined.from_seq],
      [welcomeB.epoch, 4n, 1n]);
    const live = await a.send(roomId, 'live after the resume');
    await b.waitFor(() => stream.received.length >= 4, WAIT_MS, 'the live message after the replay');
    const expected = [...missed.map((body, i) => [BigInt(i + 2), body]), [5n, 'live after the resume']];
    assert.equal(live.seq, 5n);
    assert.deepEqual(stream.received.map((m) => [m.seq, m.body]), expected,
      'exactly the missed messages in order, then the live one: nothing twice');
    assert.deepEqual(convB.messages.map((m) => m.seq), [1n, 2n, 3n, 4n, 5n]);

    // The same client id again, on the same connection: the original seq, nothing delivered.
    const again = await a.send(roomId, 'a resend (its body is ignored)', { clientId: first.client_id });
    assert.deepEqual([again.client_id, again.seq, again.sent_at_ms], [first.client_id, 1n, first.sent_at_ms]);
    // ... and after a reconnect of alice, as an outbox resend would do (once her cursor is at 5:
    // `Message` and `Sent` of one send may come in either order).
    const convA = a.conversations.get(roomId);
    await a.waitFor(() => convA.cursor.seq === 5n, WAIT_MS, "alice's own copy of seq 5");
    a.drop();
    await a.waitFor(() => a.conn.close, WAIT_MS, "alice's drop");
    await a.connect();
    await a.waitFor(() => a.conversations.get(roomId).stream.joined, WAIT_MS, "alice's rejoin");
    const afterReconnect = await a.send(roomId, 'resent after reconnect', { clientId: sentWhileAway[2].client_id });
    assert.deepEqual([afterReconnect.seq, afterReconnect.sent_at_ms], [4n, sentWhileAway[2].sent_at_ms]);
    // A new message comes next, seq 6: neither resend made a message (B and A see it right
    // after seq 5, on streams that would have carried any duplicate first).
    const next = await a.send(roomId, 'the next one');
    assert.equal(next.seq, 6n);
    await b.waitFor(() => stream.received.length >= 5, WAIT_MS, 'the next message');
    assert.deepEqual(stream.received.slice(4).map((m) => [m.seq, m.body]), [[6n, 'the next one']]);
    const streamA = a.conversations.get(roomId).stream;
    await a.waitFor(() => streamA.received.some((m) => m.seq === 6n), WAIT_MS, "alice's copy");
    assert.deepEqual(streamA.received.map((m) => m.seq), [6n], 'alice resumed from 5: only seq 6');

    // A send cut by a drop stays in the outbox and goes out again by itself after the next
    // Joined, same client id: stored once, whether or not the first copy reached the store.
    const inFlight = a.send(roomId, 'cut by a drop');
    a.drop();
    await a.waitFor(() => a.conn.close, WAIT_MS, "alice's second drop");
    await a.connect();
    assert.equal((await inFlight).seq, 7n);
    assert.equal((await a.send(roomId, 'after the cut')).seq, 8n);
    await b.waitFor(() => stream.received.length >= 7, WAIT_MS, 'seqs 7 and 8');
    assert.deepEqual(stream.received.slice(5).map((m) => [m.seq, m.body]),
      [[7n, 'cut by a drop'], [8n, 'after the cut']]);
    const streamA2 = convA.stream;
    await a.waitFor(() => streamA2.received.some((m) => m.seq === 8n), WAIT_MS, "alice's seq 8");
    assert.deepEqual(streamA2.received.map((m) => m.seq), [7n, 8n]);
    assert.equal(b.conn.close, null, "bob's connection stayed up");
    // Leaving: finish stream 0; the server finishes it too and closes normally (3.1).
    const closed = await Promise.all([a.close(), b.close()]);
    assert.deepEqual(closed.map((c) => c.code), [1000, 1000]);
    assert.deepEqual(b.conn.log.slice(-2).map(([what, id]) => [what, id]), [['finish', 0], ['close', 1000]]);
  });

  it('rate-limited sends are resent after the hint, in order; history pages; deletions', async () => {
    const carol = await signUp(baseUrl, `carol_${process.pid.toString(36)}`, PASSWORD);
    const room = await createRoom(baseUrl, carol.token, `flood ${process.pid.toString(36)}`);
    const c = newClient(carol.token);
    await c.connect();
    await c.join(room.id);
    const conv = c.conversations.get(BigInt(room.id));

    // 50 pipelined sends against a burst of 20: some are refused, all end up stored once, in
    // the order they were sent.
    const bodies = Array.from({ length: 50 }, (_, i) => `flood ${i + 1}`);
    const sent = await Promise.all(bodies.map((body) => c.send(room.id, body, { timeoutMs: 20_000 })));
    const refusals = c.conn.log.filter(([what, , type]) => what === 'frame' && type === 'Rejected');
    assert.ok(refusals.length > 0, 'the rate limit refused some sends');
    assert.deepEqual(sent.map((s) => s.seq), bodies.map((_, i) => BigInt(i + 1)));
    const stream = conv.stream;
    await c.waitFor(() => stream.received.length >= 50, WAIT_MS, 'the 50 messages');
    assert.deepEqual(stream.received.map((m) => m.body), bodies);

    // Scroll-back: the newest 10 before seq 41, ascending, more before them.
    const page = await c.history(room.id, 41, 10);
    assert.deepEqual(page.messages.map((m) => [m.seq, m.body]),
      bodies.slice(30, 40).map((body, i) => [BigInt(i + 31), body]));
    assert.equal(page.has_more, true);

    // A deletion is heard live; one made while away comes after the resumed join.
    await deleteMessage(baseUrl, carol.token, room.id, 50);
    await c.waitFor(() => stream.deleted.includes(50n), WAIT_MS, 'Deleted of seq 50');
    c.drop();
    await c.waitFor(() => c.conn.close, WAIT_MS, "carol's drop");
    await deleteMessage(baseUrl, carol.token, room.id, 49);
    await c.connect();
    const resumed = conv.stream;
    await c.waitFor(() => resumed.deleted.includes(49n), WAIT_MS, 'Deleted of seq 49 after the resume');
    assert.deepEqual([resumed.joined.from_seq, resumed.received.length], [50n, 0]);
    assert.deepEqual(conv.messages.slice(-3).map((m) => [m.seq, m.body]),
      [[48n, 'flood 48'], [49n, ''], [50n, '']]);
    assert.equal(conv.messages.length, 50);
  });
});
