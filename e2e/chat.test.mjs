// Browser tests: Debian's headless Chromium (driven by playwright-core) against a real
// `quibble serve` on a free loopback port with a temporary data directory.
//
// - alice and bob chat over WebTransport, both ways;
// - carol's page is given a WebTransport port where a UDP socket swallows every packet (QUIC
//   is black-holed, as behind a firewall): her client still tries WebTransport first, the
//   WebSocket raced after it wins, and she chats with the other two;
// - carol, joining late, sees the earlier messages; dave joins a room with more than a page
//   of history and scrolling up loads the older page;
// - the server restarts on the same port: everyone reconnects (carol tries WebTransport again
//   before falling back), and what carol wrote while it was down is sent exactly once;
// - screenshots of the chat view at desktop and phone widths go to test-artifacts/, with the
//   server's log and the browsers' console.
//
// Run with `node --test` in e2e/ (scripts/test does, after scripts/build-web and
// scripts/setup-browser-tests).

import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import dgram from 'node:dgram';
import { createWriteStream, existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
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
const ARTIFACTS = join(ROOT, 'test-artifacts');
const CHROMIUM = '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];
const PASSWORD = 'correct horse battery';
const DESKTOP = { width: 1280, height: 800 };
const PHONE = { width: 390, height: 844 };
const WAIT = { timeout: 20_000 };

let server; // the quibble child process
let baseUrl;
let dataDir;
let browser;
let blackHole; // UDP socket that swallows carol's QUIC packets
let blackHolePackets = 0;
const pageErrors = [];
const foreignRequests = []; // anything the pages asked of another origin
const browserLog = [];

/**
 * A port free on 127.0.0.1 for both TCP and UDP, below Linux's ephemeral range (32768+), so
 * that the browsers' own outgoing sockets cannot take it while the server restarts on it.
 */
async function freePort() {
  for (let attempt = 0; attempt < 50; attempt += 1) {
    const port = 20_000 + Math.floor(Math.random() * 12_000);
    const tcp = createServer();
    const udp = dgram.createSocket('udp4');
    const free = await new Promise((resolve) => {
      tcp.once('error', () => resolve(false));
      tcp.listen(port, '127.0.0.1', () => {
        udp.once('error', () => resolve(false));
        udp.bind(port, '127.0.0.1', () => resolve(true));
      });
    });
    await new Promise((resolve) => tcp.close(() => resolve()));
    try { udp.close(); } catch { /* never bound */ }
    if (free) return port;
  }
  throw new Error('no free port for the server');
}

/** Start `quibble serve` on `port` and resolve to the URL it prints first. */
function startServer(port, { restart = false } = {}) {
  dataDir ??= mkdtempSync(join(tmpdir(), 'quibble-e2e-'));
  const log = createWriteStream(join(ARTIFACTS, 'server.log'), { flags: restart ? 'a' : 'w' });
  server = spawn(SERVER_BIN, [
    'serve', '--listen', `127.0.0.1:${port}`, '--data-dir', dataDir, '--web-dir', WEB_DIR,
  ], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, RUST_LOG: process.env.RUST_LOG ?? 'info' } });
  server.stderr.pipe(log);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(
      'quibble serve printed no URL within 60 s; see test-artifacts/server.log')), 60_000);
    server.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`quibble serve exited early (${signal ?? code}); see test-artifacts/server.log`));
    });
    createInterface({ input: server.stdout }).once('line', (line) => {
      clearTimeout(timer);
      const match = line.match(/listening on (http:\/\/\S+?)\/?$/);
      if (match) resolve(match[1]);
      else reject(new Error(`unexpected first line from quibble serve: ${line}`));
    });
  });
}

async function stopServer() {
  if (!server || server.exitCode !== null || server.signalCode !== null) return;
  const exited = new Promise((resolve) => server.once('exit', resolve));
  server.kill('SIGTERM');
  const timer = setTimeout(() => server.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(timer);
}

/** A fresh browser context that has signed up as `name`. */
async function signUp(name, { viewport = DESKTOP, query = '', screenshot } = {}) {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  page.on('pageerror', (error) => pageErrors.push(`${name}: ${error.message}`));
  page.on('request', (request) => {
    if (new URL(request.url()).origin !== baseUrl) foreignRequests.push(request.url());
  });
  page.on('console', (message) => browserLog.push(`${name} ${message.type()}: ${message.text()}`));
  await page.goto(`${baseUrl}/${query}`);
  await page.locator('#auth').waitFor({ state: 'visible', ...WAIT });
  if (screenshot) await page.screenshot({ path: join(ARTIFACTS, screenshot) });
  await page.fill('#username', name);
  await page.fill('#password', PASSWORD);
  await page.click('#signup');
  await page.locator('#app').waitFor({ state: 'visible', ...WAIT });
  await page.locator('#me', { hasText: name }).waitFor(WAIT);
  return { name, context, page };
}

async function expectTransport(user, transport, label) {
  await user.page.locator(`#conn[data-state="ready"][data-transport="${transport}"]`).waitFor(WAIT);
  assert.equal(await user.page.locator('#conn-text').textContent(), label);
}

async function createRoom(user, name) {
  await user.page.fill('#room-name', name);
  await user.page.press('#room-name', 'Enter');
  await user.page.locator('#room-title', { hasText: `# ${name}` }).waitFor(WAIT);
}

async function openRoom(user, name) {
  const { page } = user;
  if (await page.locator('#back').isVisible()) await page.click('#back'); // phone widths
  await page.click('#refresh');
  await page.locator(`button.room[data-room-name="${name}"]`).click(WAIT);
  await page.locator('#room-title', { hasText: `# ${name}` }).waitFor(WAIT);
  await page.locator('.log:not([hidden]) .log-top', { hasText: /\S/ }).waitFor(WAIT);
}

/** The open room's message whose body is exactly `text`. */
function message(user, text) {
  return user.page.locator('.log:not([hidden]) li.msg').filter({
    has: user.page.locator('.body', { hasText: new RegExp(`^${escape(text)}$`) }),
  });
}

function escape(text) {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** Record every state an own message's element shows, from its insertion on. */
async function watchStates(user) {
  await user.page.evaluate(() => {
    window.seenStates = [];
    const record = (element) => {
      if (element instanceof HTMLElement && element.matches('li.msg.own')) {
        window.seenStates.push([element.querySelector('.body').textContent, element.dataset.state]);
      }
    };
    new MutationObserver((mutations) => {
      for (const mutation of mutations) {
        if (mutation.type === 'attributes') record(mutation.target);
        else mutation.addedNodes.forEach(record);
      }
    }).observe(document.getElementById('logs'), {
      subtree: true, childList: true, attributes: true, attributeFilter: ['data-state'],
    });
  });
}

/** Send `text` with the composer (Enter) and wait until it shows as sent. */
async function say(user, text) {
  await user.page.fill('#body', text);
  await user.page.press('#body', 'Enter');
  await message(user, text).and(user.page.locator('[data-state="sent"]')).waitFor(WAIT);
  const states = (await user.page.evaluate(() => window.seenStates))
    .filter(([body]) => body === text)
    .map(([, state]) => state);
  assert.deepEqual(states.slice(0, 1), ['pending'], `${user.name}: "${text}" starts pending`);
  assert.equal(states.at(-1), 'sent', `${user.name}: "${text}" ends sent`);
}

async function sees(user, text, author) {
  const item = message(user, text);
  await item.waitFor(WAIT);
  assert.equal(await item.locator('.author').textContent(), author);
}

describe('Quibble in a real browser', () => {
  const users = {};

  before(async () => {
    mkdirSync(ARTIFACTS, { recursive: true });
    if (!existsSync(WASM)) {
      throw new Error(`${WASM} is missing: build the browser client first with scripts/build-web`);
    }
    if (!existsSync(CHROMIUM)) {
      throw new Error(`${CHROMIUM} is missing: install it with scripts/setup-browser-tests`);
    }
    execFileSync('cargo', ['build', '-p', 'quibble-server', '--bin', 'quibble'], {
      cwd: ROOT, stdio: 'inherit',
    });
    baseUrl = await startServer(await freePort());
    blackHole = dgram.createSocket('udp4');
    blackHole.on('message', () => { blackHolePackets += 1; });
    await new Promise((resolve) => blackHole.bind(0, '127.0.0.1', resolve));
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  });

  after(async () => {
    await browser?.close();
    blackHole?.close();
    await stopServer();
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
    if (browserLog.length) {
      createWriteStream(join(ARTIFACTS, 'browser.log')).end(`${browserLog.join('\n')}\n`);
    }
  });

  it('serves the page and the wasm with the right types and no stale caching', async () => {
    const page = await fetch(`${baseUrl}/`);
    assert.equal(page.status, 200);
    assert.match(page.headers.get('content-type'), /^text\/html/);
    const wasm = await fetch(`${baseUrl}/pkg/quibble_client_wasm_bg.wasm`);
    assert.equal(wasm.status, 200);
    assert.equal(wasm.headers.get('content-type'), 'application/wasm');
    assert.match(wasm.headers.get('cache-control') ?? '', /no-cache/);
    assert.ok(wasm.headers.get('etag') || wasm.headers.get('last-modified'), 'revalidatable');
    for (const [path, type] of [['/app.js', /^text\/javascript/], ['/style.css', /^text\/css/]]) {
      const response = await fetch(`${baseUrl}${path}`);
      assert.equal(response.status, 200, path);
      assert.match(response.headers.get('content-type'), type, path);
    }
  });

  it('two contexts sign up, join one room over WebTransport and chat both ways', async () => {
    users.alice = await signUp('alice');
    users.bob = await signUp('bob');
    await expectTransport(users.alice, 'webtransport', 'WebTransport');
    await expectTransport(users.bob, 'webtransport', 'WebTransport');

    await createRoom(users.alice, 'lobby');
    await openRoom(users.bob, 'lobby');
    await watchStates(users.alice);
    await watchStates(users.bob);

    await say(users.alice, 'hello from alice');
    await sees(users.bob, 'hello from alice', 'alice');
    await say(users.bob, 'hi alice, bob here');
    await sees(users.alice, 'hi alice, bob here', 'bob');
    await sees(users.alice, 'hello from alice', 'alice');
    await sees(users.bob, 'hi alice, bob here', 'bob');
  });

  it('a context with QUIC unreachable falls back to WebSocket and chats with both', async () => {
    users.carol = await signUp('carol', {
      viewport: PHONE,
      screenshot: 'signup-phone.png',
      query: `?wtport=${blackHole.address().port}`,
    });
    await expectTransport(users.carol, 'websocket', 'WebSocket');
    assert.ok(blackHolePackets > 0, 'carol tried WebTransport first (QUIC packets sent)');

    await openRoom(users.carol, 'lobby');
    await watchStates(users.carol);
    // Joining late: the earlier messages are there.
    await sees(users.carol, 'hello from alice', 'alice');
    await sees(users.carol, 'hi alice, bob here', 'bob');

    await say(users.carol, 'carol on a WebSocket');
    await sees(users.alice, 'carol on a WebSocket', 'carol');
    await sees(users.bob, 'carol on a WebSocket', 'carol');
    await say(users.alice, 'welcome carol');
    await sees(users.carol, 'welcome carol', 'alice');
    await sees(users.bob, 'welcome carol', 'alice');
    await expectTransport(users.alice, 'webtransport', 'WebTransport');

    await users.alice.page.screenshot({ path: join(ARTIFACTS, 'chat-desktop.png') });
    await users.carol.page.screenshot({ path: join(ARTIFACTS, 'chat-phone.png') });
    await users.carol.page.click('#back');
    await users.carol.page.screenshot({ path: join(ARTIFACTS, 'rooms-phone.png') });
  });

  it('a late joiner gets the recent page, and scrolling up loads the older one', async () => {
    const total = 65;
    await createRoom(users.alice, 'archive');
    for (let i = 1; i <= total; i += 1) {
      await users.alice.page.fill('#body', `old #${i}`);
      await users.alice.page.press('#body', 'Enter');
    }
    await message(users.alice, `old #${total}`).and(users.alice.page.locator('[data-state="sent"]'))
      .waitFor(WAIT);
    assert.equal(await users.alice.page.locator('.log:not([hidden]) li.msg[data-state="sent"]').count(), total);

    users.dave = await signUp('dave');
    await expectTransport(users.dave, 'webtransport', 'WebTransport');
    await openRoom(users.dave, 'archive');
    const { page } = users.dave;
    await message(users.dave, `old #${total}`).waitFor(WAIT);
    await message(users.dave, `old #${total - 49}`).waitFor(WAIT);
    assert.equal(await page.locator('.log:not([hidden]) li.msg').count(), 50, 'one page at first');
    assert.equal(await message(users.dave, 'old #1').count(), 0);

    // Scroll up with the mouse wheel until the older page is in.
    const log = page.locator('.log:not([hidden])');
    await log.hover();
    for (let i = 0; i < 20 && (await message(users.dave, 'old #1').count()) === 0; i += 1) {
      await page.mouse.wheel(0, -2_000);
      await page.waitForTimeout(150);
    }
    await message(users.dave, 'old #1').waitFor(WAIT);
    const bodies = await log.locator('li.msg .body').allTextContents();
    assert.deepEqual(bodies, Array.from({ length: total }, (_, i) => `old #${i + 1}`));
    await log.locator('.log-top', { hasText: 'The beginning of the room.' }).waitFor(WAIT);
    await page.screenshot({ path: join(ARTIFACTS, 'history-desktop.png') });
  });

  it('after a server restart all reconnect, WebTransport first again, and unsent messages go out once', async () => {
    const { alice, bob, carol } = users;
    await openRoom(carol, 'lobby');
    const port = Number(new URL(baseUrl).port);
    const tried = blackHolePackets;

    await stopServer();
    for (const user of [alice, bob, carol]) {
      await user.page.locator('#conn:not([data-state="ready"])').waitFor(WAIT);
    }
    const text = 'written while the server was down';
    await carol.page.fill('#body', text);
    await carol.page.press('#body', 'Enter');
    assert.equal(await message(carol, text).getAttribute('data-state'), 'pending');
    await bob.page.screenshot({ path: join(ARTIFACTS, 'reconnecting-desktop.png') });

    assert.equal(await startServer(port, { restart: true }), baseUrl);
    await expectTransport(alice, 'webtransport', 'WebTransport');
    await expectTransport(bob, 'webtransport', 'WebTransport');
    await expectTransport(carol, 'websocket', 'WebSocket');
    assert.ok(blackHolePackets > tried, "carol's reconnect tried WebTransport again");

    await message(carol, text).and(carol.page.locator('[data-state="sent"]')).waitFor(WAIT);
    await sees(bob, text, 'carol');
    await openRoom(alice, 'lobby');
    await sees(alice, text, 'carol');
    await say(alice, 'back again');
    await sees(carol, 'back again', 'alice');
    for (const user of [alice, bob, carol]) {
      assert.equal(await message(user, text).count(), 1, `${user.name} has it once`);
    }
  });

  it('logs out, and logs back in with the password', async () => {
    const { page } = users.dave;
    await page.click('#logout');
    await page.locator('#auth').waitFor({ state: 'visible', ...WAIT });
    await page.fill('#username', 'dave');
    await page.fill('#password', 'not the password');
    await page.click('#login');
    await page.locator('#auth-error', { hasText: /\S/ }).waitFor(WAIT);
    await page.fill('#password', PASSWORD);
    await page.press('#password', 'Enter');
    await page.locator('#me', { hasText: 'dave' }).waitFor(WAIT);
    await expectTransport(users.dave, 'webtransport', 'WebTransport');
    await openRoom(users.dave, 'lobby');
    await sees(users.dave, 'back again', 'alice');
  });

  it('raised no page errors and loaded nothing from elsewhere', () => {
    assert.deepEqual(pageErrors, []);
    assert.deepEqual(foreignRequests, []);
  });
});
