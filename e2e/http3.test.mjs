// HTTP/3 in a real browser: `quibble serve` with a certificate from files (made here with
// openssl, an ECDSA P-256 certificate for 127.0.0.1) serves the page and the API over HTTP/3
// on its own UDP port. Debian's headless Chromium is forced onto QUIC for that origin
// (`--origin-to-force-quic-on`) and trusts the certificate by its public key's SHA-256
// (`--ignore-certificate-errors-spki-list`); two pages load over HTTP/3 (the navigation's
// `nextHopProtocol` is `h3`, and the server counts HTTP/3 requests), sign up, and chat both
// ways in one room over WebTransport (on the `--listen` port, which `/api/cert` names).
//
// Run with `node --test` in e2e/ (after scripts/build-web and scripts/setup-browser-tests).

import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { X509Certificate, createHash } from 'node:crypto';
import dgram from 'node:dgram';
import {
  createWriteStream, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync,
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
const PASSWORD = 'correct horse battery';
const WAIT = { timeout: 20_000 };

let server;
let dir;
let browser;
let h3Origin;
const browserLog = [];

/** A port free on 127.0.0.1 for both TCP and UDP, below Linux's ephemeral range. */
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
  throw new Error('no free port');
}

/** An ECDSA P-256 certificate for 127.0.0.1 and its key, in `dir`; returns the SPKI pin. */
function makeCertificate() {
  const cert = join(dir, 'cert.pem');
  const key = join(dir, 'key.pem');
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', key, '-out', cert, '-days', '10', '-subj', '/CN=127.0.0.1',
    '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost',
  ], { stdio: 'ignore' });
  const spki = new X509Certificate(readFileSync(cert)).publicKey.export({ type: 'spki', format: 'der' });
  return { cert, key, pin: createHash('sha256').update(spki).digest('base64') };
}

/** Start the server; resolves once it printed its HTTPS URL and its HTTP/3 address. */
function startServer({ cert, key }, port, h3Port) {
  const log = createWriteStream(join(ARTIFACTS, 'server-http3.log'));
  server = spawn(SERVER_BIN, [
    'serve', '--listen', `127.0.0.1:${port}`, '--http3-port', String(h3Port),
    '--data-dir', join(dir, 'data'), '--web-dir', WEB_DIR, '--tls-cert', cert, '--tls-key', key,
  ], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, RUST_LOG: process.env.RUST_LOG ?? 'info' } });
  server.stderr.pipe(log);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('quibble serve did not start within 60 s')), 60_000);
    server.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`quibble serve exited early (${signal ?? code}); see test-artifacts/server-http3.log`));
    });
    const lines = [];
    createInterface({ input: server.stdout }).on('line', (line) => {
      lines.push(line);
      if (line.startsWith('HTTP/3 on ')) {
        clearTimeout(timer);
        resolve(lines);
      }
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

/** A fresh context on the HTTP/3 origin, signed up as `name`. */
async function signUp(name) {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.on('console', (message) => browserLog.push(`${name} ${message.type()}: ${message.text()}`));
  page.on('pageerror', (error) => browserLog.push(`${name} pageerror: ${error.message}`));
  await page.goto(`${h3Origin}/`);
  await page.locator('#auth').waitFor({ state: 'visible', ...WAIT });
  await page.fill('#username', name);
  await page.fill('#password', PASSWORD);
  await page.click('#signup');
  await page.locator('#app').waitFor({ state: 'visible', ...WAIT });
  await page.locator('#me', { hasText: name }).waitFor(WAIT);
  return { name, context, page };
}

/** The page's own navigation and resource loads, by protocol. */
function protocols(page) {
  return page.evaluate(() => performance.getEntries()
    .filter((e) => e.nextHopProtocol !== undefined)
    .map((e) => [e.entryType, new URL(e.name).pathname, e.nextHopProtocol]));
}

/** A counter's value in the server's `/metrics` text. */
function counter(text, name) {
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line ? Number(line.split(' ')[1]) : 0;
}

function message(user, text) {
  return user.page.locator('.log:not([hidden]) li.msg').filter({
    has: user.page.locator('.body', { hasText: text }),
  });
}

async function say(user, text) {
  await user.page.fill('#body', text);
  await user.page.press('#body', 'Enter');
  await message(user, text).and(user.page.locator('[data-state="sent"]')).waitFor(WAIT);
}

async function sees(user, text, author) {
  const item = message(user, text);
  await item.waitFor(WAIT);
  assert.equal(await item.locator('.author').textContent(), author);
}

describe('the page over HTTP/3', () => {
  const users = {};

  before(async () => {
    mkdirSync(ARTIFACTS, { recursive: true });
    if (!existsSync(WASM)) {
      throw new Error(`${WASM} is missing: build the browser client first with scripts/build-web`);
    }
    execFileSync('cargo', ['build', '-p', 'quibble-server', '--bin', 'quibble'], {
      cwd: ROOT, stdio: 'inherit',
    });
    dir = mkdtempSync(join(tmpdir(), 'quibble-e2e-h3-'));
    const certificate = makeCertificate();
    const port = await freePort();
    let h3Port = await freePort();
    while (h3Port === port) h3Port = await freePort();
    const printed = await startServer(certificate, port, h3Port);
    assert.ok(printed.includes(`HTTP/3 on udp://127.0.0.1:${h3Port}/`), printed.join('\n'));
    h3Origin = `https://127.0.0.1:${h3Port}`;
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: [
        '--headless', '--no-sandbox', '--disable-gpu', '--no-first-run',
        '--disable-background-networking', '--disable-component-update', '--disable-sync',
        `--origin-to-force-quic-on=127.0.0.1:${h3Port}`,
        `--ignore-certificate-errors-spki-list=${certificate.pin}`,
      ],
    });
  });

  after(async () => {
    await browser?.close();
    await stopServer();
    if (dir) rmSync(dir, { recursive: true, force: true });
    if (browserLog.length) {
      createWriteStream(join(ARTIFACTS, 'browser-http3.log')).end(`${browserLog.join('\n')}\n`);
    }
  });

  it('two pages load over HTTP/3, sign up and chat both ways', async () => {
    users.alice = await signUp('alice');
    users.bob = await signUp('bob');
    for (const user of [users.alice, users.bob]) {
      const loads = await protocols(user.page);
      const navigation = loads.find(([type]) => type === 'navigation');
      assert.deepEqual(navigation, ['navigation', '/', 'h3'], JSON.stringify(loads));
      const wasm = loads.find(([, path]) => path.endsWith('.wasm'));
      assert.equal(wasm?.[2], 'h3', JSON.stringify(loads));
    }
    // The server counted them (read over HTTP/3 too).
    const metrics = await users.alice.page.evaluate(() => fetch('/metrics').then((r) => r.text()));
    assert.ok(counter(metrics, 'quibble_http3_connections_total') >= 1, metrics);
    assert.ok(counter(metrics, 'quibble_http3_requests_total') >= 10, metrics);

    for (const user of [users.alice, users.bob]) {
      await user.page.locator('#conn[data-state="ready"]').waitFor(WAIT);
    }
    await users.alice.page.click('#tab-rooms');
    await users.alice.page.fill('#room-name', 'quic');
    await users.alice.page.press('#room-name', 'Enter');
    await users.alice.page.locator('#room-title', { hasText: '# quic' }).waitFor(WAIT);
    await users.bob.page.click('#tab-rooms');
    await users.bob.page.locator('button.room[data-room-name="quic"]').click(WAIT);
    await users.bob.page.locator('#room-title', { hasText: '# quic' }).waitFor(WAIT);

    await say(users.alice, 'hello over h3');
    await sees(users.bob, 'hello over h3', 'alice');
    await say(users.bob, 'hi alice');
    await sees(users.alice, 'hi alice', 'bob');
    const transports = await Promise.all([users.alice, users.bob].map(
      (user) => user.page.locator('#conn').getAttribute('data-transport')));
    browserLog.push(`transports: ${transports.join(', ')}`);
  });
});
