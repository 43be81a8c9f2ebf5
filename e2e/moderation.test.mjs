// Browser tests of moderation: Debian's headless Chromium (driven by playwright-core) against a
// real `quibble serve` on a free loopback port with a temporary data directory; the admin is
// made with `quibble admin promote` against the running server, as an operator would.
//
// - alice deletes her own message from its menu: it shows "message deleted" in place, live,
//   on bob's page, and its text is gone from both;
// - bob (a USER) is offered no Delete on others' messages, no Ban in the user menu and no
//   admin panel; the admin (boss) deletes bob's message;
// - alice blocks bob from his name: his next message reaches her page as a collapsed hidden
//   marker without its text while boss sees it; the Blocked list unblocks him;
// - boss adds a banned range (192.0.2.0/24: not the tests' loopback) in the admin panel, sees
//   it listed and removes it, promotes and demotes alice, and the audit log shows each action
//   once (and his deletion of bob's message, and the operator's promotion of boss);
// - boss bans bob from his name: bob's open pages, one over WebTransport and one over
//   WebSocket, show the banned screen with the reason at once, and his login is refused
//   with the same screen; the ban is listed and unbanning lets him log in again;
// - screenshots (blocked.png, admin-panel.png, banned.png) go to test-artifacts/, with the
//   server's log and the browsers' console;
// - last, the operator bans the tests' own address (127.0.0.1): alice's page is cut off and
//   shows the banned-address screen, still after a reload (the page loads; the API answers
//   `address_banned`), and carries on once the ban is removed.
//
// Run with `node --test` in e2e/ (scripts/test does, after scripts/build-web and
// scripts/setup-browser-tests).

import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { createWriteStream, existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
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
const WAIT = { timeout: 20_000 };
const ROOM = 'town-square';
// A documentation range (RFC 5737): banning it never touches the tests' own loopback traffic.
const TEST_NET = '192.0.2.0/24';

let server;
let dataDir;
let browser;
let baseUrl;
const pageErrors = [];
const browserLog = [];

function startServer() {
  dataDir = mkdtempSync(join(tmpdir(), 'quibble-moderation-'));
  const log = createWriteStream(join(ARTIFACTS, 'moderation-server.log'));
  server = spawn(SERVER_BIN, [
    'serve', '--listen', '127.0.0.1:0', '--data-dir', dataDir, '--web-dir', WEB_DIR,
  ], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, RUST_LOG: process.env.RUST_LOG ?? 'info' } });
  server.stderr.pipe(log);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('quibble serve printed no URL within 60 s')), 60_000);
    server.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`quibble serve exited early (${signal ?? code}); see test-artifacts/moderation-server.log`));
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

/** `quibble admin ARGS --data-dir DIR` against the running server. */
function operator(...args) {
  return execFileSync(SERVER_BIN, ['admin', ...args, '--data-dir', dataDir], {
    encoding: 'utf8', timeout: 30_000,
  });
}

/** A fresh browser context and page at the server, console and errors collected. */
async function openPage(name, query = '') {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  page.on('pageerror', (error) => pageErrors.push(`${name}: ${error.message}`));
  page.on('console', (message) => browserLog.push(`${name} ${message.type()}: ${message.text()}`));
  await page.goto(`${baseUrl}/${query}`);
  await page.locator('#auth').waitFor({ state: 'visible', ...WAIT });
  return { name, context, page };
}

async function signUp(name) {
  const user = await openPage(name);
  await user.page.fill('#username', name);
  await user.page.fill('#password', PASSWORD);
  await user.page.click('#signup');
  await user.page.locator('#me', { hasText: name }).waitFor(WAIT);
  return user;
}

/** Log in `name` on `page` (at the auth form). */
async function logIn(page, name) {
  await page.fill('#username', name);
  await page.fill('#password', PASSWORD);
  await page.click('#login');
}

async function ready(user) {
  await user.page.locator('#conn[data-state="ready"]').waitFor(WAIT);
}

/** Open (joining if needed) the room from the Rooms panel. */
async function openRoom(user, name) {
  const { page } = user;
  await page.click('#tab-rooms');
  await page.locator(`button.room[data-room-name="${name}"]`).click(WAIT);
  await page.locator('#room-title', { hasText: `# ${name}` }).waitFor(WAIT);
  await page.locator('.log:not([hidden]) .log-top', { hasText: /\S/ }).waitFor(WAIT);
}

/** The open room's message whose text is exactly `text`. */
function message(user, text) {
  return user.page.locator('.log:not([hidden]) li.msg').filter({
    has: user.page.locator('.body', { hasText: new RegExp(`^${escape(text)}$`) }),
  });
}

function escape(text) {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** Send `text` and wait until it is stored; resolves to its seq. */
async function say(user, text) {
  await user.page.fill('#body', text);
  await user.page.press('#body', 'Enter');
  const item = message(user, text).and(user.page.locator('[data-state="sent"]'));
  await item.waitFor(WAIT);
  return Number(await item.getAttribute('data-seq'));
}

/** The open room's element for `seq`. */
function bySeq(user, seq) {
  return user.page.locator(`.log:not([hidden]) li.msg[data-seq="${seq}"]`);
}

/** The open menu's item labels. */
async function menuItems(page) {
  await page.locator('#menu:not([hidden])').waitFor(WAIT);
  return page.locator('#menu [role="menuitem"]').allTextContents();
}

/**
 * Wait until `text` is nowhere in the page's DOM (the chat, the conversation list's
 * previews); fails naming the element still holding it.
 */
async function gone(user, text) {
  const deadline = Date.now() + WAIT.timeout;
  for (;;) {
    const holder = await holderOf(user, text);
    if (holder === null) return;
    assert.ok(Date.now() < deadline, `${user.name}: "${text}" is still in ${holder}`);
    await user.page.waitForTimeout(100);
  }
}

/** The start of the element whose text holds `text`, or null when none does. */
function holderOf(user, text) {
  return user.page.evaluate((text) => {
    const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      if (node.textContent.includes(text)) return node.parentElement.outerHTML.slice(0, 200);
    }
    return null;
  }, text);
}

/** The visible text of the whole page (hidden elements left out). */
function visibleText(page) {
  return page.evaluate(() => document.body.innerText);
}

describe('moderation in a real browser', () => {
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
    baseUrl = await startServer();
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
    users.boss = await signUp('boss');
    operator('promote', 'boss');
    // The page reads the role on load.
    await users.boss.page.reload();
    await users.boss.page.locator('#admin-open').waitFor({ state: 'visible', ...WAIT });
    users.alice = await signUp('alice');
    users.bob = await signUp('bob');
    await users.alice.page.click('#tab-rooms');
    await users.alice.page.fill('#room-name', ROOM);
    await users.alice.page.press('#room-name', 'Enter');
    await users.alice.page.locator('#room-title', { hasText: `# ${ROOM}` }).waitFor(WAIT);
    await openRoom(users.bob, ROOM);
    await openRoom(users.boss, ROOM);
    await Promise.all(Object.values(users).map(ready));
  });

  after(async () => {
    await browser?.close();
    await stopServer();
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
    if (browserLog.length) {
      createWriteStream(join(ARTIFACTS, 'moderation-browser.log')).end(`${browserLog.join('\n')}\n`);
    }
  });

  it('a user deletes her own message and it vanishes live for another page', async () => {
    const { alice, bob } = users;
    const seq = await say(alice, 'oops, my password is hunter2');
    await message(bob, 'oops, my password is hunter2').waitFor(WAIT);

    await bySeq(alice, seq).locator('.msg-menu').click();
    assert.deepEqual(await menuItems(alice.page), ['Delete']);
    await alice.page.click('#menu [role="menuitem"]:has-text("Delete")');

    for (const user of [alice, bob]) {
      const item = bySeq(user, seq);
      await item.and(user.page.locator('.deleted')).waitFor(WAIT);
      assert.equal(await item.locator('.body').textContent(), 'message deleted');
      assert.equal(await item.locator('.author').textContent(), 'alice');
      await gone(user, 'hunter2');
    }
  });

  it('a user gets no Delete on others\' messages, no Ban and no admin panel', async () => {
    const { alice, bob } = users;
    const seq = await say(alice, 'a message bob cannot delete');
    await bySeq(bob, seq).waitFor(WAIT);
    assert.equal(await bySeq(bob, seq).locator('.msg-menu').isVisible(), false);
    assert.equal(await bob.page.locator('#admin-open').isVisible(), false);
    // The user menu on alice's name: Block only.
    await bySeq(bob, seq).locator('button.author').click();
    assert.deepEqual(await menuItems(bob.page), ['Block alice']);
    await bob.page.keyboard.press('Escape');
    await bob.page.locator('#menu').waitFor({ state: 'hidden', ...WAIT });
    // And the server refuses it anyway.
    const refused = await bob.page.evaluate(async (seq) => {
      const { token } = JSON.parse(localStorage.getItem('quibble.auth'));
      const response = await fetch(`/api/conversations/${document.querySelector('.log:not([hidden])').dataset.conversationId}/messages/${seq}`, {
        method: 'DELETE', headers: { authorization: `Bearer ${token}` },
      });
      return response.status;
    }, seq);
    assert.equal(refused, 403);
    assert.equal(await bySeq(alice, seq).locator('.body').textContent(), 'a message bob cannot delete');
  });

  it('an admin deletes another user\'s message', async () => {
    const { alice, bob, boss } = users;
    const seq = await say(bob, 'buy cheap watches');
    await bySeq(boss, seq).waitFor(WAIT);
    await bySeq(boss, seq).locator('.msg-menu').click();
    assert.deepEqual(await menuItems(boss.page), ['Delete']);
    await boss.page.click('#menu [role="menuitem"]:has-text("Delete")');
    for (const user of [alice, bob, boss]) {
      await bySeq(user, seq).and(user.page.locator('.deleted')).waitFor(WAIT);
      await gone(user, 'cheap watches');
    }
  });

  it('block hides a user\'s messages for the blocker only, and unblock brings them back', async () => {
    const { alice, bob, boss } = users;
    const before = await say(bob, 'said before the block');
    await bySeq(alice, before).waitFor(WAIT);
    await bySeq(alice, before).locator('button.author').click();
    await alice.page.click('#menu [role="menuitem"]:has-text("Block bob")');
    await alice.page.locator('#blocked-list li[data-username="bob"]').waitFor({ state: 'attached', ...WAIT });
    // What is on screen from bob collapses at once.
    await bySeq(alice, before).and(alice.page.locator('.blocked')).waitFor(WAIT);
    await alice.page.screenshot({ path: join(ARTIFACTS, 'blocked.png') });
    assert.ok(!(await visibleText(alice.page)).includes('said before the block'));

    const seq = await say(bob, 'can anyone hear me');
    await bySeq(boss, seq).locator('.body', { hasText: 'can anyone hear me' }).waitFor(WAIT);
    // alice gets the server's hidden marker: the seq, no author, no text.
    const marker = bySeq(alice, seq);
    await marker.and(alice.page.locator('.marker')).waitFor(WAIT);
    assert.equal(await marker.innerText(), 'hidden: blocked user');
    assert.equal(await marker.locator('.author').count(), 0);
    assert.equal(await holderOf(alice, 'can anyone hear me'), null, 'the text never reached alice');

    // The Blocked list in the Friends panel unblocks.
    await alice.page.click('#tab-friends');
    await alice.page.click('#blocked-list button[aria-label="Unblock: bob"]');
    await alice.page.locator('#blocked-section').waitFor({ state: 'hidden', ...WAIT });
    await alice.page.click('#tab-chats');
    const later = await say(bob, 'back in the conversation');
    await bySeq(alice, later).locator('.body', { hasText: 'back in the conversation' }).waitFor(WAIT);
    assert.equal(await bySeq(alice, before).isVisible(), true);
  });

  it('the admin panel lists, adds and removes a banned range, and audits it', async () => {
    const { boss } = users;
    const { page } = boss;
    await page.click('#admin-open');
    await page.locator('#admin[open]').waitFor(WAIT);
    await page.fill('#ip-ban-network', TEST_NET);
    await page.fill('#ip-ban-reason', 'a test range');
    await page.selectOption('#ip-ban-duration', '3600');
    await page.click('#ip-ban-form button[type="submit"]');
    const row = page.locator(`#ip-ban-list li[data-network="${TEST_NET}"]`);
    await row.waitFor(WAIT);
    assert.match(await row.textContent(), /a test range · until .* · by boss/);
    await row.locator('button', { hasText: 'Remove' }).click();
    await row.waitFor({ state: 'detached', ...WAIT });
    // Promote and demote from the panel.
    for (const [button, said] of [['Promote', 'alice is an admin now.'], ['Demote', 'alice is a user now.']]) {
      await page.fill('#role-name', 'alice');
      await page.click(`#role-form button:has-text("${button}")`);
      await page.locator('#role-status', { hasText: said }).waitFor(WAIT);
    }
    const audit = page.locator('#audit-list');
    await audit.locator('li[data-action="demote"][data-target="alice"]').waitFor(WAIT);
    await audit.locator('li[data-action="promote"][data-target="alice"]').waitFor(WAIT);
    await audit.locator(`li[data-action="ip_ban_remove"][data-target="${TEST_NET}"]`).waitFor(WAIT);
    const entries = await audit.locator(`li[data-target="${TEST_NET}"]`).evaluateAll(
      (items) => items.map((item) => item.dataset.action),
    );
    assert.deepEqual(entries, ['ip_ban_remove', 'ip_ban_add'], 'newest first, each once');
    assert.match(await audit.locator('li[data-action="ip_ban_add"]').first().textContent(),
      /boss banned the address 192\.0\.2\.0\/24: a test range/);
    // The operator's promotion and boss's deletion of bob's message are there too (alice's
    // deletion of her own message is no moderation).
    await audit.locator('li[data-action="promote"][data-target="boss"]').waitFor({ state: 'attached', ...WAIT });
    assert.match(await audit.locator('li[data-action="promote"][data-target="boss"]').textContent(),
      /operator made an admin: boss$/);
    const deletions = await audit.locator('li[data-action="delete_message"]').allTextContents();
    assert.equal(deletions.length, 1);
    assert.match(deletions[0], /boss deleted the message \d+\/\d+$/);
    await page.screenshot({ path: join(ARTIFACTS, 'admin-panel.png') });
    await page.click('#admin-close');
  });

  it('a banned user\'s open pages show the banned screen at once, and login is refused', async () => {
    const { bob, boss } = users;
    // bob's second page reaches the server over WebSocket (Chromium refuses WebTransport to
    // port 9, an unsafe port, at once).
    const bobWs = await openPage('bob-ws', '?wtport=9');
    await logIn(bobWs.page, 'bob');
    await bobWs.page.locator('#conn[data-state="ready"][data-transport="websocket"]').waitFor(WAIT);
    await bob.page.locator('#conn[data-state="ready"][data-transport="webtransport"]').waitFor(WAIT);

    const seq = await say(bob, 'one last message');
    await bySeq(boss, seq).locator('button.author').click();
    assert.deepEqual(await menuItems(boss.page), ['Block bob', 'Ban bob…']);
    await boss.page.click('#menu [role="menuitem"]:has-text("Ban bob")');
    await boss.page.locator('#ban-dialog[open]').waitFor(WAIT);
    await boss.page.fill('#ban-reason', 'selling watches');
    await boss.page.selectOption('#ban-duration', '86400');
    const banned = Date.now();
    await boss.page.click('#ban-submit');
    await boss.page.locator('#ban-dialog').waitFor({ state: 'hidden', ...WAIT });

    for (const page of [bob.page, bobWs.page]) {
      await page.locator('#banned').waitFor({ state: 'visible', timeout: 5_000 });
      assert.equal(await page.locator('#banned-title').textContent(), 'You are banned');
      assert.equal(await page.locator('#banned-reason').textContent(), 'Reason: selling watches');
      assert.match(await page.locator('#banned-until').textContent(), /^Until \S/);
      assert.equal(await page.locator('#app').isVisible(), false);
    }
    assert.ok(Date.now() - banned < 5_000, 'the pages heard of it at once');
    await bob.page.screenshot({ path: join(ARTIFACTS, 'banned.png') });

    // Logging in again is refused with the same screen.
    await bob.page.click('#banned-back');
    await logIn(bob.page, 'bob');
    await bob.page.locator('#banned').waitFor({ state: 'visible', ...WAIT });
    assert.equal(await bob.page.locator('#banned-reason').textContent(), 'Reason: selling watches');

    // The admin panel lists the ban and the audit log has it; unban lets bob back in.
    await boss.page.click('#admin-open');
    const row = boss.page.locator('#ban-list li[data-username="bob"]');
    await row.waitFor(WAIT);
    assert.match(await row.textContent(), /selling watches · until .* · by boss/);
    await boss.page.locator('#audit-list li[data-action="ban"][data-target="bob"]').waitFor(WAIT);
    await row.locator('button', { hasText: 'Unban' }).click();
    await row.waitFor({ state: 'detached', ...WAIT });
    await boss.page.locator('#audit-list li[data-action="unban"][data-target="bob"]').waitFor(WAIT);
    await boss.page.click('#admin-close');

    await bob.page.click('#banned-back');
    await logIn(bob.page, 'bob');
    await bob.page.locator('#me', { hasText: 'bob' }).waitFor(WAIT);
    await ready(bob);
    await bobWs.context.close();
  });

  it('a banned address is cut off live, told why after a reload, and let back in', async () => {
    const { alice } = users;
    const { page } = alice;
    await ready(alice);
    // Last: this bans the tests' own address.
    operator('ip-ban', 'add', '127.0.0.1', '--reason', 'lab test');
    try {
      await page.locator('#banned[data-kind="address"]').waitFor({ state: 'visible', timeout: 5_000 });
      assert.equal(await page.locator('#banned-title').textContent(), 'This address is banned');
      await page.reload();
      await page.locator('#banned[data-kind="address"]').waitFor({ state: 'visible', ...WAIT });
      assert.match(await page.locator('#banned-reason').textContent(), /lab test/);
      assert.equal(await page.locator('#app').isVisible(), false);
    } finally {
      operator('ip-ban', 'remove', '127.0.0.1');
    }
    // The session was kept: "Try again" carries on.
    await page.click('#banned-back');
    await page.locator('#me', { hasText: 'alice' }).waitFor(WAIT);
    await ready(alice);
  });

  it('raised no page errors', () => {
    assert.deepEqual(pageErrors, []);
  });
});
