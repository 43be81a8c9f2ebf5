// Browser test of the wasm client's social API (the calls and events the page builds its
// friends panel, DM threads, ticks and typing on): two headless Chromium contexts load the
// module from a real `quibble serve` and drive it directly, without the page's UI.
//
// - friend request and accept over REST (addFriend), heard live on both sides (`friend`,
//   `conversationUpdated` with the new DM);
// - bob is offline while alice writes twice in their DM; bob's new client lists the DM with
//   unread 2, `joinFrom(dm, readSeq)` delivers exactly those two, `setViewing` reports them
//   read and alice's client gets the `receipt`; `memberReceipts` agrees;
// - `typing` reaches bob as a `typing` event; `joinRoom` / `leaveRoom` answer membership.
//
// Run with `node --test` in e2e/ (after scripts/build-web and scripts/setup-browser-tests).

import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const WEB_DIR = join(ROOT, 'client-wasm', 'web');
const WASM = join(WEB_DIR, 'pkg', 'quibble_client_wasm_bg.wasm');
const TARGET_DIR = process.env.CARGO_TARGET_DIR ?? join(ROOT, 'target');
const SERVER_BIN = join(TARGET_DIR, 'debug', 'quibble');
const CHROMIUM = '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];
const PASSWORD = 'correct horse battery';
const WAIT = { timeout: 20_000 };

let server;
let dataDir;
let browser;
let baseUrl;

function startServer() {
  dataDir = mkdtempSync(join(tmpdir(), 'quibble-wasm-api-'));
  server = spawn(SERVER_BIN, [
    'serve', '--listen', '127.0.0.1:0', '--data-dir', dataDir, '--web-dir', WEB_DIR,
  ], { stdio: ['ignore', 'pipe', 'ignore'] });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('quibble serve printed no URL')), 60_000);
    createInterface({ input: server.stdout }).once('line', (line) => {
      clearTimeout(timer);
      const match = line.match(/listening on (http:\/\/\S+?)\/?$/);
      if (match) resolve(match[1]);
      else reject(new Error(`unexpected first line from quibble serve: ${line}`));
    });
  });
}

/** A context at the server's origin with the module loaded and `name` signed up. */
async function user(name) {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(`${baseUrl}/healthz`);
  await page.evaluate(async ({ name, password }) => {
    window.q = await import('/pkg/quibble_client_wasm.js');
    await window.q.default();
    window.auth = await window.q.signup(name, password);
  }, { name, password: PASSWORD });
  return page;
}

/** (Re)connect the page's client; its events collect in `window.events`. */
async function connect(page) {
  await page.evaluate(() => {
    window.client?.close();
    window.events = [];
    window.client = window.q.Client.connect({
      token: window.auth.token,
      onEvent: (event) => window.events.push(event),
    });
  });
}

/** The first event (from the current client) `predicate` (page-side source) accepts. */
async function event(page, predicate) {
  const handle = await page.waitForFunction(
    (source) => window.events.find(new Function('e', `return ${source};`)),
    predicate, WAIT,
  );
  return handle.jsonValue();
}

describe('the wasm client API', () => {
  before(async () => {
    if (!existsSync(WASM)) throw new Error(`${WASM} is missing: run scripts/build-web`);
    execFileSync('cargo', ['build', '-p', 'quibble-server', '--bin', 'quibble'], {
      cwd: ROOT, stdio: 'inherit',
    });
    baseUrl = await startServer();
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  });

  after(async () => {
    await browser?.close();
    server?.kill('SIGTERM');
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  });

  it('friends, offline delivery into a DM, receipts, typing and membership', async () => {
    const alice = await user('alice');
    const bob = await user('bob');
    await connect(alice);
    await connect(bob);
    assert.deepEqual((await event(alice, 'e.type === "conversations"')).conversations, []);
    await event(bob, 'e.type === "conversations"');

    const asked = await alice.evaluate(() => window.q.addFriend(window.auth.token, 'bob'));
    assert.equal(asked.status, 'requested');
    const incoming = await event(bob, 'e.type === "friend"');
    assert.deepEqual([incoming.username, incoming.status, incoming.dm], ['alice', 'incoming', null]);
    const accepted = await bob.evaluate(() => window.q.addFriend(window.auth.token, 'alice'));
    assert.equal(accepted.status, 'accepted');
    const dm = accepted.user.dm;
    assert.equal(typeof dm, 'number');
    const friends = await event(alice, 'e.type === "friend" && e.status === "friends"');
    assert.equal(friends.dm, dm);
    const added = await event(alice, `e.type === "conversationUpdated" && e.summary.conversation === ${dm}`);
    assert.deepEqual([added.summary.kind, added.summary.title], ['dm', 'bob']);
    const opened = await alice.evaluate(() => window.q.openDm(window.auth.token, 'bob'));
    assert.deepEqual([opened.conversation, opened.can_send], [dm, true]);

    // Bob goes offline; Alice writes twice.
    await bob.evaluate(() => window.client.close());
    await alice.evaluate((dm) => {
      window.client.join(dm);
      window.client.send(dm, 'one');
      window.client.send(dm, 'two');
    }, dm);
    await alice.waitForFunction(() => window.events.filter((e) => e.type === 'sent').length === 2, null, WAIT);

    // Bob's next client learns the unread count and gets exactly the two.
    await connect(bob);
    const list = (await event(bob, 'e.type === "conversations"')).conversations;
    const entry = list.find((s) => s.conversation === dm);
    assert.deepEqual([entry.unread, entry.readSeq, entry.last.preview], [2, 0, 'two']);
    await bob.evaluate(({ dm, readSeq }) => window.client.joinFrom(dm, readSeq), { dm, readSeq: entry.readSeq });
    await event(bob, 'e.type === "joined"');
    await bob.waitForFunction(() => window.events.filter((e) => e.type === 'message').length === 2, null, WAIT);
    await bob.waitForTimeout(500);
    const bodies = await bob.evaluate(() => window.events.filter((e) => e.type === 'message').map((e) => e.message.body));
    assert.deepEqual(bodies, ['one', 'two'], 'exactly the missed ones, once, in order');

    // Bob has it on screen: read; Alice sees the receipt live.
    await bob.evaluate((dm) => window.client.setViewing(dm), dm);
    const receipt = await event(alice, `e.type === "receipt" && e.conversation === ${dm} && e.read === 2`);
    assert.equal(receipt.user, await bob.evaluate(() => window.auth.user.id));
    assert.equal(receipt.delivered, 2);
    const seen = await alice.evaluate((dm) => window.q.memberReceipts(window.auth.token, dm), dm);
    assert.equal(seen.receipts.find((r) => r.username === 'bob').read_seq, 2);

    // Typing: the first keystroke goes out, the next within 3 s does not; Bob sees it.
    const sent = await alice.evaluate((dm) => [window.client.typing(dm), window.client.typing(dm)], dm);
    assert.deepEqual(sent, [true, false]);
    const typing = await event(bob, `e.type === "typing" && e.conversation === ${dm}`);
    assert.deepEqual([typing.username, typing.typing], ['alice', true]);

    // Membership.
    const room = await alice.evaluate(() => window.q.createRoom(window.auth.token, 'lobby'));
    const joined = await bob.evaluate((id) => window.q.joinRoom(window.auth.token, id), room.id);
    assert.deepEqual([joined.member, joined.changed], [true, true]);
    await event(bob, `e.type === "conversationUpdated" && e.summary.conversation === ${room.id}`);
    const left = await bob.evaluate((id) => window.q.leaveRoom(window.auth.token, id), room.id);
    assert.deepEqual([left.member, left.changed], [false, true]);
    await event(bob, `e.type === "conversationRemoved" && e.conversation === ${room.id}`);
    const bad = await bob.evaluate(() => window.q.joinRoom(window.auth.token, 999).catch((e) => [e.code, e.status]));
    assert.deepEqual(bad, ['not_found', 404]);
  });
});
