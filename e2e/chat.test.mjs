// Browser tests: Debian's headless Chromium (driven by playwright-core) against a real
// `quibble serve` on a free loopback port with a temporary data directory.
//
// - alice and bob chat over WebTransport, both ways;
// - carol's page is given a WebTransport port where a UDP socket swallows every packet (QUIC
//   is black-holed, as behind a firewall): her client still tries WebTransport first, the
//   WebSocket raced after it wins, her page says so in a notice, and she chats with the other
//   two;
// - carol, joining late, sees the earlier messages; dave joins a room with more than a page
//   of history and scrolling up loads the older page;
// - the server restarts on the same port: everyone reconnects (carol tries WebTransport again
//   before falling back), and what carol wrote while it was down is sent exactly once;
// - erin, whose clock runs a day ahead (so today's messages are "Yesterday" to her), writes
//   while the server is down and reloads: her room reopens, the message is still pending, and
//   once the server is back it is stored exactly once;
// - the server's send rate is low (20 a second, bursts of 40), so alice's 65 quick messages are
//   refused as RateLimited on the way and must all end sent, in order, none "Not sent";
// - at 390 px wide, a 64-character room name and long unbroken words put nothing off-screen;
// - own messages show a tick icon (a clock while pending); days are separated; a reader
//   scrolled up gets a jump-to-latest cue when a message arrives;
// - alice and bob become friends through the Friends panel (request, live badge, accept) and
//   the DM thread enters both conversation lists with a presence dot; alice's DM shows
//   delivered (two ticks) while bob looks at another room, with an unread badge in his list
//   and tab title, then read once he opens it; each sees the other typing, and typing that is
//   not refreshed runs out;
// - an unread badge for a message in another room appears live and survives a reload; the
//   author sees "Seen by bob" once he has read it; leaving a room takes it out of the list;
// - at 390 px the conversation list and the friends panel (32-character name) fit too; a
//   friend who closes the page shows offline with when they were last seen;
// - screenshots of the chat view at desktop and phone widths go to test-artifacts/, with the
//   server's log and the browsers' console.
//
// Run with `node --test` in e2e/ (scripts/test does, after scripts/build-web and
// scripts/setup-browser-tests).

import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import dgram from 'node:dgram';
import {
  createWriteStream, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync,
} from 'node:fs';
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
// A page that failed to reach a stopped server many times waits out its session's reconnect
// backoff (full jitter, capped at 30 s: protocol/src/session) before it tries the restarted one.
const RECONNECT_WAIT = { timeout: 40_000 };
const DAY_MS = 24 * 60 * 60 * 1000;
// Low enough that the 65-message test is refused as RateLimited part of the way.
const SERVER_CONFIG = 'messages_per_second = 20\nmessage_burst = 40\n';

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
  const config = join(dataDir, 'e2e.toml');
  writeFileSync(config, SERVER_CONFIG);
  const log = createWriteStream(join(ARTIFACTS, 'server.log'), { flags: restart ? 'a' : 'w' });
  server = spawn(SERVER_BIN, [
    'serve', '--listen', `127.0.0.1:${port}`, '--data-dir', dataDir, '--web-dir', WEB_DIR,
    '--config', config,
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

/**
 * A fresh browser context that has signed up as `name`; `clockAheadMs` sets its clock that
 * far ahead of the real one (still running).
 */
async function signUp(name, { viewport = DESKTOP, query = '', screenshot, clockAheadMs } = {}) {
  const context = await browser.newContext({ viewport });
  if (clockAheadMs) {
    await context.clock.install({ time: Date.now() + clockAheadMs });
    await context.clock.resume();
  }
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

async function expectTransport(user, transport, label, wait = WAIT) {
  await user.page.locator(`#conn[data-state="ready"][data-transport="${transport}"]`).waitFor(wait);
  assert.equal(await user.page.locator('#conn-text').textContent(), label);
}

/** Show a sidebar panel (chats, friends, rooms); at phone widths, back from a chat first. */
async function showPanel(user, panel) {
  const { page } = user;
  if (await page.locator('#back').isVisible()) await page.click('#back');
  await page.click(`#tab-${panel}`);
  await page.locator(`#panel-${panel}`).waitFor({ state: 'visible', ...WAIT });
}

async function createRoom(user, name) {
  await showPanel(user, 'rooms');
  await user.page.fill('#room-name', name);
  await user.page.press('#room-name', 'Enter');
  await user.page.locator('#room-title', { hasText: `# ${name}` }).waitFor(WAIT);
}

/** Open room `name`: from the conversation list if the user is in it, else from all rooms. */
async function openRoom(user, name) {
  const { page } = user;
  await showPanel(user, 'chats');
  const listed = conversation(user, name, 'room');
  if (await listed.count() === 0) {
    await showPanel(user, 'rooms');
    await page.locator(`button.room[data-room-name="${name}"]`).click(WAIT);
  } else {
    await listed.click();
  }
  await page.locator('#room-title', { hasText: `# ${name}` }).waitFor(WAIT);
  await page.locator('.log:not([hidden]) .log-top', { hasText: /\S/ }).waitFor(WAIT);
}

/** The entry of the conversation list titled `title` (a room's name, a friend's username). */
function conversation(user, title, kind) {
  return user.page.locator(`#convs button.conv[data-kind="${kind}"][data-title="${title}"]`);
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

/**
 * Record every state an own message's element shows, from its insertion on, and the bodies
 * of those the page marked as refused for sending too fast.
 */
async function watchStates(user) {
  await user.page.evaluate(() => {
    window.seenStates = [];
    window.throttled = new Set();
    const record = (element) => {
      if (element instanceof HTMLElement && element.matches('li.msg.own')) {
        const body = element.querySelector('.body').textContent;
        window.seenStates.push([body, element.dataset.state]);
        if (element.dataset.throttled !== undefined) window.throttled.add(body);
      }
    };
    new MutationObserver((mutations) => {
      for (const mutation of mutations) {
        if (mutation.type === 'attributes') record(mutation.target);
        else mutation.addedNodes.forEach(record);
      }
    }).observe(document.getElementById('logs'), {
      subtree: true,
      childList: true,
      attributes: true,
      attributeFilter: ['data-state', 'data-throttled'],
    });
  });
}

/** The parts of an own message's tick icon that show, and what it says. */
async function statusIcon(item) {
  const status = item.locator('.status');
  const shown = [];
  for (const part of ['clock', 'tick1', 'tick2']) {
    if (await status.locator(`.${part}`).isVisible()) shown.push(part);
  }
  return {
    label: await status.getAttribute('aria-label'),
    text: (await status.textContent()).trim(),
    shown,
  };
}

/** The day separators of the open room, top to bottom. */
function days(user) {
  return user.page.locator('.log:not([hidden]) li.day').allTextContents();
}

/** Nothing of the page sticks out of the viewport or scrolls sideways. */
async function assertFits(user, what) {
  const { page } = user;
  const report = await page.evaluate(() => {
    const width = document.documentElement.clientWidth;
    const name = (el) => `${el.tagName.toLowerCase()}${el.id ? `#${el.id}` : ''}.${[...el.classList].join('.')}`;
    const off = [];
    for (const el of document.querySelectorAll('body *')) {
      const style = getComputedStyle(el);
      if (style.display === 'none' || el.closest('[hidden]')) continue;
      const rect = el.getBoundingClientRect();
      if (rect.width > 0 && (rect.left < -0.5 || rect.right > width + 0.5)) {
        off.push(`${name(el)} spans ${Math.round(rect.left)}..${Math.round(rect.right)}`);
      }
      if (/auto|scroll/.test(style.overflowX) && el.scrollWidth > el.clientWidth + 1) {
        off.push(`${name(el)} scrolls sideways (${el.scrollWidth} > ${el.clientWidth})`);
      }
    }
    return { scrollWidth: document.documentElement.scrollWidth, off };
  });
  const width = page.viewportSize().width;
  assert.ok(report.scrollWidth <= width,
    `${what}: the document is ${report.scrollWidth} px wide at ${width} px: ${report.off.join("; ")}`);
  assert.deepEqual(report.off, [], `${what}: off-screen`);
}

/** The head seq of room `name` from the REST room list, as `user` sees it. */
async function headSeq(user, name) {
  const { token } = JSON.parse(await user.page.evaluate(() => localStorage.getItem('quibble.auth')));
  const response = await fetch(`${baseUrl}/api/rooms`, { headers: { authorization: `Bearer ${token}` } });
  assert.equal(response.status, 200);
  const room = (await response.json()).rooms.find((r) => r.name === name);
  assert.ok(room, `room ${name} is listed`);
  return room.head_seq;
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
  // Compact: one tick, no words under the bubble.
  assert.deepEqual(await statusIcon(message(user, text)), { label: 'Sent', text: '', shown: ['tick1'] });
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
    // The fallback is said plainly on the page, not only in the connection pill.
    await users.carol.page.locator('#conn-note').waitFor({ state: 'visible', ...WAIT });
    assert.match(await users.carol.page.locator('#conn-note').textContent(),
      /Connected over WebSocket:\s+WebTransport did not connect/);
    assert.equal(await users.alice.page.locator('#conn-note').isVisible(), false);

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
    // All at once, as fast as the composer takes them.
    await users.alice.page.evaluate((count) => {
      for (let i = 1; i <= count; i += 1) {
        document.getElementById('body').value = `old #${i}`;
        document.getElementById('composer').requestSubmit();
      }
    }, total);
    const alicesLog = users.alice.page.locator('.log:not([hidden])');
    await alicesLog.locator('li.msg[data-state="sent"]').nth(total - 1).waitFor(WAIT);
    assert.equal(await alicesLog.locator('li.msg[data-state="sent"]').count(), total);
    // Sent faster than the server allows: some were refused as RateLimited on the way, were
    // resent by themselves after the hinted delay, and none was ever shown as not sent.
    const throttled = await users.alice.page.evaluate(() => window.throttled.size);
    assert.ok(throttled > 0, 'some sends were refused as RateLimited');
    const states = await users.alice.page.evaluate(() => window.seenStates);
    assert.deepEqual(states.filter(([, state]) => state === 'failed'), []);
    assert.deepEqual(await alicesLog.locator('li.msg .body').allTextContents(),
      Array.from({ length: total }, (_, i) => `old #${i + 1}`), 'in the order written');

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
    assert.deepEqual(await days(users.dave), ['Today'], 'one day, one separator');
    await page.screenshot({ path: join(ARTIFACTS, 'history-desktop.png') });
  });

  it('a reader scrolled up is told of a new message and can jump to it', async () => {
    const { alice, dave } = users;
    const { page } = dave;
    const log = page.locator('.log:not([hidden])');
    await log.evaluate((element) => { element.scrollTop = 0; });
    const jump = page.locator('#jump');
    await jump.waitFor(WAIT);
    assert.match(await jump.textContent(), /Latest/);
    await say(alice, 'fresh news');
    await sees(dave, 'fresh news', 'alice');
    await page.locator('#jump', { hasText: '1 new message' }).waitFor(WAIT);
    assert.equal(await log.evaluate((element) => element.scrollTop), 0, 'not scrolled away');
    await page.screenshot({ path: join(ARTIFACTS, 'new-messages-desktop.png') });
    await jump.click();
    await jump.waitFor({ state: 'hidden', ...WAIT });
    await page.waitForFunction(() => {
      const element = document.querySelector('.log:not([hidden])');
      return element.scrollHeight - element.scrollTop - element.clientHeight < 2;
    }, null, WAIT);
    assert.ok(await message(dave, 'fresh news').isVisible());
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
    assert.deepEqual(await statusIcon(message(carol, text)), { label: 'Sending', text: '', shown: ['clock'] });
    await bob.page.screenshot({ path: join(ARTIFACTS, 'reconnecting-desktop.png') });

    assert.equal(await startServer(port, { restart: true }), baseUrl);
    await expectTransport(alice, 'webtransport', 'WebTransport', RECONNECT_WAIT);
    await expectTransport(bob, 'webtransport', 'WebTransport', RECONNECT_WAIT);
    await expectTransport(carol, 'websocket', 'WebSocket', RECONNECT_WAIT);
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

  it('a message written offline survives a reload and goes out once; the room reopens', async () => {
    const { alice } = users;
    // A day ahead: everything the server stamps today is "Yesterday" to erin.
    const erin = await signUp('erin', { clockAheadMs: DAY_MS });
    users.erin = erin;
    await openRoom(erin, 'lobby');
    await sees(erin, 'back again', 'alice');
    assert.deepEqual(await days(erin), ['Yesterday']);
    const before = await headSeq(erin, 'lobby');
    // The page's files are cached for offline reloads once the service worker is active.
    await erin.page.evaluate(() => navigator.serviceWorker.ready);
    const port = Number(new URL(baseUrl).port);

    await stopServer();
    await erin.page.locator('#conn:not([data-state="ready"])').waitFor(WAIT);
    const text = 'erin, offline, then reloaded';
    await erin.page.fill('#body', text);
    await erin.page.press('#body', 'Enter');
    assert.equal(await message(erin, text).getAttribute('data-state'), 'pending');
    assert.deepEqual(await days(erin), ['Yesterday', 'Today'], 'written "today", pending');

    for (let reload = 0; reload < 2; reload += 1) {
      await erin.page.reload();
      await erin.page.locator('#app').waitFor({ state: 'visible', ...WAIT });
      // The room it showed is open again, the message pending in it, still not sent.
      await erin.page.locator('#room-title', { hasText: '# lobby' }).waitFor(WAIT);
      await message(erin, text).and(erin.page.locator('[data-state="pending"]')).waitFor(WAIT);
      assert.equal(await message(erin, text).count(), 1);
      assert.deepEqual(await days(erin), ['Today']);
    }
    await erin.page.screenshot({ path: join(ARTIFACTS, 'offline-reloaded-desktop.png') });

    assert.equal(await startServer(port, { restart: true }), baseUrl);
    await expectTransport(erin, 'webtransport', 'WebTransport', RECONNECT_WAIT);
    await message(erin, text).and(erin.page.locator('[data-state="sent"]')).waitFor(WAIT);
    await sees(erin, 'back again', 'alice');
    assert.deepEqual(await days(erin), ['Yesterday'], 'stored today by the server');
    await openRoom(alice, 'lobby');
    await sees(alice, text, 'erin');
    assert.equal(await message(alice, text).count(), 1);
    assert.equal(await headSeq(erin, 'lobby'), before + 1, 'stored exactly once');
    assert.equal(await message(erin, text).count(), 1);
    assert.equal(await erin.page.evaluate(() => Object.keys(localStorage)
      .filter((key) => key.startsWith('quibble.outbox')).length), 0, 'nothing left to send');

    // Three days on (a new context with erin's login), the day is named by its date.
    const context = await browser.newContext({ storageState: await erin.context.storageState() });
    await context.clock.install({ time: Date.now() + 3 * DAY_MS });
    await context.clock.resume();
    const later = { name: 'erin, 3 days on', context, page: await context.newPage() };
    later.page.on('pageerror', (error) => pageErrors.push(`${later.name}: ${error.message}`));
    await later.page.goto(`${baseUrl}/`);
    await later.page.locator('#me', { hasText: 'erin' }).waitFor(WAIT);
    await openRoom(later, 'lobby');
    await sees(later, text, 'erin');
    const [label, ...more] = await days(later);
    assert.deepEqual(more, []);
    assert.doesNotMatch(label, /Today|Yesterday/);
    assert.match(label, new RegExp(`\\b${new Date().getDate()}\\b`), label);
    await context.close();
  });

  it('two contexts become friends in the friends panel, DM, and see ticks, typing and presence', async () => {
    const { alice, bob } = users;
    await openRoom(bob, 'lobby');

    // A name nobody has is refused, and said so.
    await showPanel(alice, 'friends');
    await alice.page.fill('#friend-name', 'nobody_by_that_name');
    await alice.page.press('#friend-name', 'Enter');
    await alice.page.locator('#friends-error', { hasText: /\S/ }).waitFor(WAIT);
    assert.equal(await alice.page.locator('#outgoing li').count(), 0);

    // alice asks; bob hears it live (the Friends tab counts it) and accepts.
    await alice.page.fill('#friend-name', 'bob');
    await alice.page.press('#friend-name', 'Enter');
    await alice.page.locator('#friends-status', { hasText: 'Request sent to bob.' }).waitFor(WAIT);
    await alice.page.locator('#outgoing li[data-username="bob"]').waitFor(WAIT);
    await bob.page.locator('#requests-badge:not([hidden])', { hasText: '1' }).waitFor(WAIT);
    await showPanel(bob, 'friends');
    await bob.page.getByRole('button', { name: 'Accept: alice' }).click();
    for (const [user, peer] of [[alice, 'bob'], [bob, 'alice']]) {
      const row = user.page.locator(`#friend-list li[data-username="${peer}"]`);
      await row.locator('.presence[data-online="true"]').waitFor(WAIT);
      assert.equal(await row.locator('.seen').textContent(), 'online');
      assert.equal(await user.page.locator('#incoming li, #outgoing li').count(), 0, 'no requests left');
      // The DM thread enters the conversation list by itself.
      await showPanel(user, 'chats');
      await conversation(user, peer, 'dm').locator('.presence[data-online="true"]').waitFor(WAIT);
    }
    assert.ok(await bob.page.locator('#requests-badge').isHidden());

    // bob opens the thread; alice types in it and bob sees it.
    await conversation(bob, 'alice', 'dm').click();
    await bob.page.locator('#room-title', { hasText: /^alice$/ }).waitFor(WAIT);
    await bob.page.locator('#chat-sub', { hasText: 'online' }).waitFor(WAIT);
    await showPanel(alice, 'friends');
    await alice.page.getByRole('button', { name: 'Message: bob' }).click();
    await alice.page.locator('#room-title', { hasText: /^bob$/ }).waitFor(WAIT);
    await watchStates(alice);
    await alice.page.locator('#body').pressSequentially('hi bob', { delay: 20 });
    await bob.page.locator('#typing', { hasText: 'alice is typing…' }).waitFor(WAIT);

    // bob looks at another room: alice's DM reaches his page (delivered, unread) but is not read.
    await openRoom(bob, 'lobby');
    await alice.page.fill('#body', 'hi bob, in private');
    await alice.page.press('#body', 'Enter');
    const mine = message(alice, 'hi bob, in private');
    await mine.and(alice.page.locator('[data-state="delivered"]')).waitFor(WAIT);
    assert.deepEqual(await statusIcon(mine), { label: 'Delivered', text: '', shown: ['tick1', 'tick2'] });
    await conversation(bob, 'alice', 'dm').locator('.badge', { hasText: '1' }).waitFor(WAIT);
    assert.match(await bob.page.title(), /^\(1\) Quibble$/);
    await bob.page.waitForTimeout(800); // past the receipt debounce (500 ms): still not read
    assert.equal(await mine.getAttribute('data-state'), 'delivered');

    // bob opens the thread: read, the badge goes, and alice's ticks turn.
    await conversation(bob, 'alice', 'dm').click();
    await sees(bob, 'hi bob, in private', 'alice');
    await mine.and(alice.page.locator('[data-state="read"]')).waitFor(WAIT);
    const states = (await alice.page.evaluate(() => window.seenStates))
      .filter(([body]) => body === 'hi bob, in private').map(([, state]) => state)
      .filter((state, i, all) => state !== all[i - 1]);
    assert.deepEqual(states, ['pending', 'sent', 'delivered', 'read']);
    assert.deepEqual(await statusIcon(mine), { label: 'Read', text: '', shown: ['tick1', 'tick2'] });
    await conversation(bob, 'alice', 'dm').locator('.badge').waitFor({ state: 'detached', ...WAIT });
    assert.equal(await bob.page.title(), 'Quibble');

    // bob answers while alice watches: his typing shows, then the message, and ticks as read.
    await bob.page.locator('#body').pressSequentially('hello', { delay: 20 });
    await alice.page.locator('#typing', { hasText: 'bob is typing…' }).waitFor(WAIT);
    await bob.page.press('#body', 'Enter');
    await sees(alice, 'hello', 'bob');
    await alice.page.locator('#typing', { hasText: /^$/ }).waitFor(WAIT);
    await message(bob, 'hello').and(bob.page.locator('[data-state="read"]')).waitFor(WAIT);
    await alice.page.screenshot({ path: join(ARTIFACTS, 'dm-desktop.png') });

    // Typing that is not refreshed runs out (5 s on the server).
    await bob.page.locator('#body').pressSequentially('x');
    await alice.page.locator('#typing', { hasText: 'bob is typing…' }).waitFor(WAIT);
    await alice.page.locator('#typing', { hasText: /^$/ }).waitFor({ timeout: 9_000 });
    await bob.page.fill('#body', '');

    // bob unfriends alice: her open thread stays readable but takes no more messages.
    await showPanel(bob, 'friends');
    await bob.page.getByRole('button', { name: 'Unfriend: alice' }).click();
    await alice.page.locator('#chat-sub', { hasText: 'read-only' }).waitFor(WAIT);
    assert.ok(await alice.page.locator('#composer').isHidden());
    assert.ok(await message(alice, 'hello').isVisible());
    assert.equal(await alice.page.locator('#friend-list li[data-username="bob"]').count(), 0);
  });

  it('an unread badge for another room appears live, survives a reload, and "seen by" follows', async () => {
    const { alice, bob } = users;
    await createRoom(alice, 'side');
    await openRoom(bob, 'side'); // joins it (from all rooms)
    await openRoom(bob, 'lobby');
    await openRoom(alice, 'side');
    // bob is on the list with the keyboard: the live list must not take his focus away.
    await conversation(bob, 'lobby', 'room').focus();
    await say(alice, 'psst, over here');
    const badge = conversation(bob, 'side', 'room').locator('.badge');
    await badge.filter({ hasText: /^1$/ }).waitFor(WAIT);
    assert.equal(await bob.page.evaluate(() => document.activeElement.dataset.title), 'lobby');
    // The list is sorted by activity: the room just written in comes first.
    assert.equal(await bob.page.locator('#convs button.conv').first().getAttribute('data-title'), 'side');
    assert.match(await bob.page.title(), /^\(1\) Quibble$/);
    assert.ok(await conversation(bob, 'side', 'room').locator('.conv-preview', { hasText: 'alice: psst, over here' }).isVisible());
    assert.equal(await alice.page.locator('.log:not([hidden]) .seen-by').isVisible(), false, 'nobody has seen it');

    await bob.page.reload();
    await bob.page.locator('#room-title', { hasText: '# lobby' }).waitFor(WAIT);
    await badge.filter({ hasText: /^1$/ }).waitFor(WAIT);
    assert.match(await bob.page.title(), /^\(1\) Quibble$/);
    assert.equal(await bob.page.locator('#unread-badge').textContent(), '1', 'on the Chats tab too');

    await conversation(bob, 'side', 'room').click();
    await sees(bob, 'psst, over here', 'alice');
    await badge.waitFor({ state: 'detached', ...WAIT });
    await alice.page.locator('.log:not([hidden]) .seen-by', { hasText: 'Seen by bob' }).waitFor(WAIT);
    await alice.page.screenshot({ path: join(ARTIFACTS, 'seen-by-desktop.png') });
    // A new message: seen again once bob's page, still on it, reports it read.
    await say(alice, 'and another');
    await alice.page.locator('.log:not([hidden]) .seen-by', { hasText: 'Seen by bob' }).waitFor(WAIT);

    // Leaving takes the room out of the list (and the membership with it).
    await bob.page.click('#leave');
    await conversation(bob, 'side', 'room').waitFor({ state: 'detached', ...WAIT });
    await bob.page.reload();
    await conversation(bob, 'lobby', 'room').waitFor(WAIT);
    assert.equal(await conversation(bob, 'side', 'room').count(), 0, 'left for good');
  });

  it('the phone layout holds at 390 px with a 64-character room name and long words', async () => {
    const gina = await signUp('gina_has_a_name_of_32_chars_wxyz', { viewport: PHONE });
    users.gina = gina;
    const name = 'Wide'.repeat(16);
    assert.equal(name.length, 64);
    await createRoom(gina, name);
    await watchStates(gina);
    await say(gina, 'W'.repeat(300));
    await say(gina, `see https://example.com/${'a/'.repeat(120)} and ${'Ш'.repeat(100)}`);
    await assertFits(gina, 'chat view');
    // The hook receipts drive: data-state "delivered" shows two ticks, "read" two coloured ones.
    const own = gina.page.locator('.log:not([hidden]) li.msg.own');
    const colours = [];
    for (const [index, state] of [[0, 'delivered'], [1, 'read']]) {
      await own.nth(index).evaluate((element, value) => { element.dataset.state = value; }, state);
      assert.deepEqual((await statusIcon(own.nth(index))).shown, ['tick1', 'tick2'], state);
      colours.push(await own.nth(index).locator('.status').evaluate((e) => getComputedStyle(e).color));
    }
    assert.notEqual(colours[0], colours[1], 'read ticks are coloured');
    await gina.page.screenshot({ path: join(ARTIFACTS, 'chat-phone-long.png') });
    await gina.page.click('#back');
    await gina.page.locator(`button.room[data-room-name="${name}"]`).waitFor(WAIT);
    await assertFits(gina, 'room list');
    await gina.page.screenshot({ path: join(ARTIFACTS, 'rooms-phone-long.png') });
    await showPanel(gina, 'chats');
    await conversation(gina, name, 'room').waitFor(WAIT);
    await assertFits(gina, 'conversation list');
    await gina.page.screenshot({ path: join(ARTIFACTS, 'chats-phone-long.png') });
    // Friends with a long name on both sides: the panels still fit.
    await showPanel(gina, 'friends');
    await gina.page.fill('#friend-name', 'alice');
    await gina.page.press('#friend-name', 'Enter');
    await gina.page.locator('#outgoing li[data-username="alice"]').waitFor(WAIT);
    await assertFits(gina, 'friends panel, a request out');
    const { alice } = users;
    await showPanel(alice, 'friends');
    await alice.page.getByRole('button', { name: `Accept: ${gina.name}` }).click();
    await alice.page.locator(`#friend-list li[data-username="${gina.name}"]`).waitFor(WAIT);
    await assertFits(alice, 'desktop friends panel');
    await gina.page.locator('#friend-list li[data-username="alice"] .presence[data-online="true"]').waitFor(WAIT);
    await assertFits(gina, 'friends panel');
    await gina.page.screenshot({ path: join(ARTIFACTS, 'friends-phone-long.png') });
    await gina.page.getByRole('button', { name: 'Message: alice' }).click();
    await gina.page.locator('#room-title', { hasText: /^alice$/ }).waitFor(WAIT);
    await gina.page.locator('#body').pressSequentially('hi');
    await alice.page.locator(`#convs button.conv[data-title="${gina.name}"]`).waitFor({ state: 'attached', ...WAIT });
    await assertFits(gina, 'DM view');
    await gina.page.setViewportSize(DESKTOP);
    await openRoom(gina, name);
    await assertFits(gina, 'desktop');
    await gina.page.screenshot({ path: join(ARTIFACTS, 'chat-desktop-long.png') });

    // gina logs out: her friend sees her offline, with when she was last seen.
    await gina.page.click('#logout');
    await gina.page.locator('#auth').waitFor({ state: 'visible', ...WAIT });
    await gina.context.close();
    const row = alice.page.locator(`#friend-list li[data-username="${gina.name}"]`);
    await row.locator('.presence[data-online="false"]').waitFor(WAIT);
    assert.match(await row.locator('.seen').textContent(), /^last seen \d/);
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
