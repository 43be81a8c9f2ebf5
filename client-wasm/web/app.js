// Quibble's page: the UI only. Connection, framing, resume, resends and backoff live in the
// wasm client (quibble-client-wasm, driving protocol::session); this module renders its events
// and turns clicks and keys into calls on it.

import init, {
  Client, account, createRoom, listRooms, login, logout, signup,
} from './pkg/quibble_client_wasm.js';

const AUTH_KEY = 'quibble.auth';
// sessionStorage (this tab): the conversation on screen, reopened after a reload.
const OPEN_KEY = 'quibble.open';
// localStorage, per user: own messages the server has not acknowledged, resent after a reload.
const OUTBOX_KEY = 'quibble.outbox';
const PAGE = 50;
const MAX_BODY_BYTES = 4096;
const NEAR_BOTTOM_PX = 80;
const NEAR_TOP_PX = 80;

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const encoder = new TextEncoder();
const timeFormat = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
const dayFormat = new Intl.DateTimeFormat(undefined, { weekday: 'long', day: 'numeric', month: 'long' });
const dayYearFormat = new Intl.DateTimeFormat(undefined, { day: 'numeric', month: 'long', year: 'numeric' });
// What the tick icon of an own message says, per state. The page sets pending, sent and
// failed; delivered and read are for receipts (set with setOwnState).
const STATE_LABELS = {
  pending: 'Sending', sent: 'Sent', delivered: 'Delivered', read: 'Read', failed: 'Not sent',
};
// A clock (pending) and two ticks (one: sent; both: delivered or read); CSS shows the parts
// that the message's data-state calls for.
const STATUS_ICON = '<svg viewBox="0 0 18 12" aria-hidden="true" focusable="false">'
  + '<g class="clock"><circle cx="6" cy="6" r="4.6"/><path d="M6 3.4V6l1.7 1.1"/></g>'
  + '<path class="tick1" d="M1.2 6.4l3 3L10.4 2.6"/>'
  + '<path class="tick2" d="M7.6 9.4l6.2-6.8"/></svg>';

/** @type {{token: string, user: {id: number, username: string}} | null} */
let auth = null;
/** @type {Client | null} */
let client = null;
let rooms = new Map(); // room id → Room from the REST API
let roomsNext = null; // the cursor of the room list's next page; null when all are loaded
const chats = new Map(); // room id → chat view state
let current = null; // the open room's id

// ---- start ----

async function main() {
  // Lets a reload work while the server is unreachable (see sw.js).
  navigator.serviceWorker?.register('sw.js').catch((error) => {
    console.info(`quibble: no offline page: ${error.message ?? error}`);
  });
  try {
    await init();
  } catch (error) {
    $('boot').textContent = `Could not load the client: ${error.message ?? error}`;
    return;
  }
  $('boot').hidden = true;
  bindUi();
  const saved = readSavedAuth();
  if (!saved) {
    showAuth();
    return;
  }
  try {
    startApp({ token: saved.token, user: await account(saved.token) });
  } catch (error) {
    if (error.status === 401) {
      forgetAuth();
      showAuth('Your session has ended; log in again.');
    } else {
      // The server may just be restarting: the client reconnects by itself.
      startApp(saved);
    }
  }
}

function readSavedAuth() {
  try {
    const saved = JSON.parse(localStorage.getItem(AUTH_KEY) ?? 'null');
    return saved && typeof saved.token === 'string' && saved.user ? saved : null;
  } catch {
    return null;
  }
}

function forgetAuth() {
  localStorage.removeItem(AUTH_KEY);
}

function bindUi() {
  $('auth-form').addEventListener('submit', onAuthSubmit);
  $('logout').addEventListener('click', () => endSession());
  $('refresh').addEventListener('click', () => refreshRooms());
  $('create-room').addEventListener('submit', onCreateRoom);
  $('back').addEventListener('click', showRoomList);
  $('jump').addEventListener('click', () => {
    if (current !== null) scrollToBottom(chatFor(current));
  });
  $('composer').addEventListener('submit', (event) => { event.preventDefault(); sendComposed(); });
  const body = $('body');
  body.addEventListener('keydown', (event) => {
    if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      sendComposed();
    }
  });
  body.addEventListener('input', fitComposer);
  document.addEventListener('keydown', (event) => {
    if (event.key === 'Escape' && $('app').dataset.view === 'chat') showRoomList();
  });
}

// ---- sign up / log in ----

function showAuth(message) {
  $('app').hidden = true;
  $('auth').hidden = false;
  showError($('auth-error'), message);
  $('username').focus();
}

async function onAuthSubmit(event) {
  event.preventDefault();
  const action = event.submitter?.value === 'signup' ? signup : login;
  const username = $('username').value.trim();
  const password = $('password').value;
  if (username.length < 3 || password.length < 8) {
    showError($('auth-error'),
      'A username has 3–32 letters, digits, “_”, “.” or “-”; a password at least 8 characters.');
    return;
  }
  setBusy($('auth-form'), true);
  try {
    const result = await action(username, password);
    const saved = { token: result.token, user: result.user };
    localStorage.setItem(AUTH_KEY, JSON.stringify(saved));
    $('password').value = '';
    startApp(saved);
  } catch (error) {
    showError($('auth-error'), error.message ?? String(error));
  } finally {
    setBusy($('auth-form'), false);
  }
}

function startApp(session) {
  auth = session;
  $('auth').hidden = true;
  $('app').hidden = false;
  $('app').dataset.view = 'rooms';
  $('me').textContent = auth.user.username;
  const wtport = Number(params.get('wtport'));
  client = Client.connect({
    token: auth.token,
    onEvent,
    // A different UDP port for WebTransport (e.g. to exercise the WebSocket fallback).
    webTransportPort: Number.isInteger(wtport) && wtport > 0 ? wtport : undefined,
  });
  restoreUnsent();
  const open = readOpenRoom();
  if (open) {
    if (!rooms.has(open.id)) rooms.set(open.id, { id: open.id, name: open.name });
    openRoom(open.id, { focus: false });
  }
  refreshRooms();
}

async function endSession(message) {
  const token = auth?.token;
  const old = client;
  client = null;
  if (old) {
    old.close();
    // Not from inside a call into the client (this may run in its event handler).
    setTimeout(() => old.free(), 0);
  }
  if (auth && !message) {
    // Logging out on purpose: what was not sent is not kept on this device.
    localStorage.removeItem(outboxKey());
  }
  auth = null;
  forgetAuth();
  sessionStorage.removeItem(OPEN_KEY);
  for (const chat of chats.values()) chat.log.remove();
  chats.clear();
  current = null;
  showRoom(null);
  showConnection({ state: 'connecting', transport: null });
  showAuth(message);
  if (token && !message) {
    try { await logout(token); } catch { /* the token is forgotten either way */ }
  }
}

// ---- connection events ----

function onEvent(event) {
  switch (event.type) {
    case 'state':
      showConnection(event);
      // Back online after the room list failed to load: load it now.
      if (event.state === 'ready' && !$('rooms-error').hidden) refreshRooms();
      if (event.state === 'failed' && event.code === 'unauthorized') {
        endSession('Your session has ended; log in again.');
      }
      break;
    case 'transportFailed':
    case 'transportClosed':
      console.info(`quibble: ${event.transport}: ${event.reason}`);
      $('conn').title = event.reason;
      break;
    case 'joined': {
      const chat = chats.get(event.conversation);
      if (chat) {
        chat.joined = true;
        // A page asked for on a connection that then dropped is not coming: ask again later.
        chat.loading = false;
        // What the first join replays was there before the page: not unread. (What a rejoin
        // after a reconnect replays came meanwhile: unread.)
        chat.seenUpTo ??= event.headSeq;
        if (event.headSeq === 0) chat.hasMore = false;
        updateLogTop(chat);
      }
      break;
    }
    case 'reset': {
      const chat = chats.get(event.conversation);
      if (chat) clearChat(chat);
      break;
    }
    case 'message':
      onMessage(event.message);
      break;
    case 'history':
      onHistory(event);
      break;
    case 'sent':
      onSent(event);
      break;
    case 'throttled':
      onThrottled(event);
      break;
    case 'rejected':
      onRejected(event);
      break;
    case 'error': {
      const chat = event.conversation === null ? null : chats.get(event.conversation);
      if (chat) {
        appendNotice(chat, `Error: ${event.reason}`);
        if (event.code === 'forbidden' || event.code === 'unknown_conversation') {
          // The session no longer wants this conversation; its pending sends will not go.
          client?.leave(chat.id);
          chat.joining = false;
          if (chat.id === current) sessionStorage.removeItem(OPEN_KEY); // not to reopen
          for (const clientId of [...chat.pending.keys()]) {
            onRejected({ conversation: chat.id, clientId, reason: event.reason });
          }
        }
      } else {
        console.warn(`quibble: ${event.code}: ${event.reason}`);
      }
      break;
    }
    default:
      break;
  }
}

let countdown = null; // re-renders "Reconnecting in N s" every second

function showConnection(event) {
  const conn = $('conn');
  conn.dataset.state = event.state;
  conn.dataset.transport = event.transport ?? '';
  clearInterval(countdown);
  countdown = null;
  const name = event.transport === 'webtransport' ? 'WebTransport' : 'WebSocket';
  const text = $('conn-text');
  switch (event.state) {
    case 'ready': text.textContent = name; break;
    case 'handshaking': text.textContent = `${name}: logging in…`; break;
    case 'reconnecting': {
      const tick = () => {
        const seconds = Math.round((event.retryAtMs - Date.now()) / 1000);
        text.textContent = seconds > 0 ? `Reconnecting in ${seconds} s…` : 'Reconnecting…';
      };
      tick();
      countdown = setInterval(tick, 1000);
      break;
    }
    case 'failed': text.textContent = `Offline (${event.code})`; break;
    default: text.textContent = 'Connecting…';
  }
}

// ---- rooms ----

/** Reload the room list from its first page; later pages load on "More rooms". */
async function refreshRooms() {
  if (!auth) return;
  await loadRooms(null);
}

/** Load the page of rooms after the cursor `after` (null: the first page, replacing the list). */
async function loadRooms(after) {
  try {
    const page = await listRooms(auth.token, after ?? undefined);
    const loaded = page.rooms.map((room) => [room.id, room]);
    rooms = after === null ? new Map(loaded) : new Map([...rooms, ...loaded]);
    roomsNext = page.next;
    showError($('rooms-error'));
    renderRooms();
  } catch (error) {
    if (error.status === 401) endSession('Your session has ended; log in again.');
    else showError($('rooms-error'), error.message);
  }
}

function renderRooms() {
  const items = [...rooms.values()].map((room) => {
    const button = document.createElement('button');
    button.type = 'button';
    button.className = 'room';
    button.dataset.roomId = room.id;
    button.dataset.roomName = room.name;
    if (room.id === current) button.setAttribute('aria-current', 'true');
    const name = document.createElement('span');
    name.className = 'room-name';
    name.textContent = `# ${room.name}`;
    name.title = room.name; // the whole name, when it does not fit
    button.append(name);
    const unread = chats.get(room.id)?.unread ?? 0;
    if (unread > 0) {
      const badge = document.createElement('span');
      badge.className = 'badge';
      badge.textContent = unread > 99 ? '99+' : String(unread);
      badge.setAttribute('aria-label', `${unread} unread`);
      button.append(badge);
    }
    button.addEventListener('click', () => openRoom(room.id));
    const item = document.createElement('li');
    item.append(button);
    return item;
  });
  if (items.length === 0) {
    const item = document.createElement('li');
    item.className = 'muted';
    item.textContent = 'No rooms yet: create one.';
    items.push(item);
  }
  if (roomsNext !== null) {
    const more = document.createElement('button');
    more.type = 'button';
    more.id = 'more-rooms';
    more.className = 'link';
    more.textContent = 'More rooms';
    more.addEventListener('click', () => loadRooms(roomsNext));
    const item = document.createElement('li');
    item.append(more);
    items.push(item);
  }
  $('rooms').replaceChildren(...items);
}

async function onCreateRoom(event) {
  event.preventDefault();
  const input = $('room-name');
  const name = input.value.trim();
  if (!name) return;
  setBusy($('create-room'), true);
  try {
    const room = await createRoom(auth.token, name);
    input.value = '';
    showError($('rooms-error'));
    rooms.set(room.id, room);
    openRoom(room.id);
  } catch (error) {
    showError($('rooms-error'), error.message);
  } finally {
    setBusy($('create-room'), false);
  }
}

/** Phone widths: back from a chat to the room list (which may have grown meanwhile). */
function showRoomList() {
  $('app').dataset.view = 'rooms';
  sessionStorage.removeItem(OPEN_KEY);
  refreshRooms();
}

function openRoom(id, { focus = true } = {}) {
  const chat = chatFor(id);
  joinChat(chat);
  current = id;
  chat.unread = 0;
  showRoom(chat);
  renderRooms();
  $('app').dataset.view = 'chat';
  sessionStorage.setItem(OPEN_KEY, JSON.stringify({
    user: auth.user.id, id, name: rooms.get(id)?.name ?? String(id),
  }));
  if (focus) $('body').focus();
}

/** The room this tab showed before a reload, if it was this user's. */
function readOpenRoom() {
  try {
    const open = JSON.parse(sessionStorage.getItem(OPEN_KEY) ?? 'null');
    const valid = open && open.user === auth.user.id && Number.isSafeInteger(open.id)
      && typeof open.name === 'string';
    return valid ? open : null;
  } catch {
    return null;
  }
}

function joinChat(chat) {
  if (!chat.joining) {
    chat.joining = true;
    client.join(chat.id);
  }
}

function showRoom(chat) {
  for (const other of chats.values()) other.log.hidden = other !== chat;
  $('empty').hidden = chat !== null;
  $('composer').hidden = chat === null;
  const title = $('room-title');
  title.textContent = chat ? `# ${rooms.get(chat.id)?.name ?? chat.id}` : 'Pick a room';
  title.title = title.textContent;
  if (chat && chat.pinned) scrollToBottom(chat);
  showJump(chat);
}

// ---- the chat log ----

function chatFor(id) {
  let chat = chats.get(id);
  if (chat) return chat;
  const log = document.createElement('div');
  log.className = 'log';
  log.hidden = true;
  log.tabIndex = 0;
  log.setAttribute('role', 'log');
  log.dataset.roomId = id;
  const top = document.createElement('div');
  top.className = 'log-top';
  const list = document.createElement('ol');
  list.className = 'messages';
  log.append(top, list);
  $('logs').append(log);
  chat = {
    id, log, top, list,
    bySeq: new Map(), // seq → element
    pending: new Map(), // client id → element of an own message not yet durable
    oldest: null, // lowest seq shown
    hasMore: true,
    loading: false,
    joining: false,
    joined: false,
    pinned: true, // follow new messages
    unread: 0, // messages that came while another room was open
    seenUpTo: null, // the head seq at the first join: messages up to it are not unread
    unseen: 0, // messages that came below while the reader was scrolled up
  };
  log.addEventListener('scroll', () => {
    chat.pinned = log.scrollHeight - log.scrollTop - log.clientHeight < NEAR_BOTTOM_PX;
    if (chat.pinned) chat.unseen = 0;
    if (chat.id === current) showJump(chat);
    if (log.scrollTop < NEAR_TOP_PX) loadOlder(chat);
  });
  chats.set(id, chat);
  updateLogTop(chat);
  return chat;
}

/** The store was replaced: forget every durable message (own unsent ones stay pending). */
function clearChat(chat) {
  chat.list.replaceChildren(...chat.pending.values());
  markDays(chat);
  chat.bySeq.clear();
  chat.seenUpTo = null;
  chat.oldest = null;
  chat.hasMore = true;
  chat.loading = false;
  updateLogTop(chat);
}

function loadOlder(chat) {
  if (chat.loading || !chat.hasMore || !chat.joined || chat.oldest === null || !client) return;
  if (client.loadOlder(chat.id, PAGE)) {
    chat.loading = true;
  } else {
    chat.hasMore = false;
  }
  updateLogTop(chat);
}

function updateLogTop(chat) {
  const top = chat.top;
  top.replaceChildren();
  if (chat.loading) {
    top.textContent = 'Loading older messages…';
  } else if (chat.hasMore && chat.oldest !== null && chat.oldest > 1) {
    const button = document.createElement('button');
    button.type = 'button';
    button.className = 'link';
    button.textContent = 'Load older messages';
    button.addEventListener('click', () => loadOlder(chat));
    top.append(button);
  } else if (chat.joined) {
    top.textContent = chat.oldest === null ? 'No messages yet. Say hello!' : 'The beginning of the room.';
  }
}

function onMessage(message) {
  const chat = chats.get(message.conversation);
  if (!chat || chat.bySeq.has(message.seq)) return;
  const own = message.author === auth?.user.id;
  let element = own ? chat.pending.get(message.clientId) : undefined;
  if (own) forgetUnsent(chat.id, message.clientId);
  if (element) {
    chat.pending.delete(message.clientId);
  } else {
    element = renderMessage(message.authorName, message.body, own);
  }
  if (!own && !chat.pinned && chat.id === current) {
    chat.unseen += 1;
    showJump(chat);
  }
  confirm(chat, element, message.seq, message.sentAtMs);
  if (chat.id !== current && !own && message.seq > chat.seenUpTo) {
    chat.unread += 1;
    renderRooms();
  }
}

function onSent(event) {
  forgetUnsent(event.conversation, event.clientId);
  const chat = chats.get(event.conversation);
  const element = chat?.pending.get(event.clientId);
  if (!element) return;
  chat.pending.delete(event.clientId);
  if (chat.bySeq.has(event.seq)) {
    element.remove(); // the echoed message got here first
    markDays(chat);
    return;
  }
  confirm(chat, element, event.seq, event.sentAtMs);
}

/** Refused for sending too fast: still pending, the client sends it again by itself. */
function onThrottled(event) {
  const element = chats.get(event.conversation)?.pending.get(event.clientId);
  if (!element) return;
  element.dataset.throttled = '';
  setOwnState(element, 'pending', 'Sending too fast; retrying…');
}

function onRejected(event) {
  forgetUnsent(event.conversation, event.clientId);
  const chat = chats.get(event.conversation);
  const element = chat?.pending.get(event.clientId);
  if (!element) return;
  chat.pending.delete(event.clientId);
  element.classList.remove('pending');
  setOwnState(element, 'failed');
  const failure = document.createElement('div');
  failure.className = 'failure';
  failure.textContent = `Not sent: ${event.reason}`;
  element.append(failure);
}

function onHistory(event) {
  const chat = chats.get(event.conversation);
  if (!chat) return;
  const { log } = chat;
  const height = log.scrollHeight;
  const fragment = document.createDocumentFragment();
  for (const message of event.messages) {
    if (chat.bySeq.has(message.seq)) continue;
    const element = renderMessage(message.authorName, message.body, message.author === auth?.user.id);
    setConfirmed(element, message.seq, message.sentAtMs);
    chat.bySeq.set(message.seq, element);
    fragment.append(element);
    chat.oldest = chat.oldest === null ? message.seq : Math.min(chat.oldest, message.seq);
  }
  chat.list.prepend(fragment);
  markDays(chat);
  // Keep what the reader was looking at in place.
  log.scrollTop += log.scrollHeight - height;
  chat.loading = false;
  chat.hasMore = event.hasMore;
  updateLogTop(chat);
}

/** Mark an element durable with `seq` and put it in seq order, before any pending ones. */
function confirm(chat, element, seq, sentAtMs) {
  const { list } = chat;
  const follow = chat.pinned || element.classList.contains('pending');
  setConfirmed(element, seq, sentAtMs);
  chat.bySeq.set(seq, element);
  element.remove();
  let before = list.querySelector('li.pending');
  let node = before ? before.previousElementSibling : list.lastElementChild;
  while (node && Number(node.dataset.seq) > seq) {
    before = node;
    node = node.previousElementSibling;
  }
  list.insertBefore(element, before);
  markDays(chat);
  const wasEmpty = chat.oldest === null;
  chat.oldest = wasEmpty ? seq : Math.min(chat.oldest, seq);
  if (wasEmpty) updateLogTop(chat);
  if (follow && chat.id === current) scrollToBottom(chat);
}

function setConfirmed(element, seq, sentAtMs) {
  element.dataset.seq = seq;
  element.classList.remove('pending');
  delete element.dataset.throttled;
  setTime(element, sentAtMs);
  if (element.classList.contains('own')) setOwnState(element, 'sent');
}

/** When the message was written (pending) or stored (confirmed); it also sets its day. */
function setTime(element, ms) {
  element.dataset.at = ms;
  const time = element.querySelector('time');
  const at = new Date(ms);
  time.dateTime = at.toISOString();
  time.textContent = timeFormat.format(at);
}

/**
 * The state of an own message: pending, sent, delivered, read or failed. The tick icon
 * follows data-state (see style.css); `label` overrides what it says to assistive technology.
 */
function setOwnState(element, state, label) {
  element.dataset.state = state;
  const status = element.querySelector('.status');
  status.setAttribute('aria-label', label ?? STATE_LABELS[state]);
  status.title = label ?? STATE_LABELS[state];
}

function renderMessage(author, body, own) {
  const element = document.createElement('li');
  element.className = own ? 'msg own' : 'msg';
  const meta = document.createElement('div');
  meta.className = 'meta';
  const name = document.createElement('span');
  name.className = 'author';
  name.textContent = author;
  const time = document.createElement('time');
  meta.append(name, time);
  if (own) {
    const status = document.createElement('span');
    status.className = 'status';
    status.setAttribute('role', 'img');
    status.innerHTML = STATUS_ICON;
    meta.append(status);
  }
  const text = document.createElement('div');
  text.className = 'body';
  text.textContent = body;
  element.append(meta, text);
  return element;
}

/**
 * Put a day separator ("Today", "Yesterday", a date) before the first message of each day.
 * One pass over the list that keeps the separators still right, so that a new message
 * changes nothing above it (and the reader's scroll position stays put).
 */
function markDays(chat) {
  let lastDay = null;
  let separator = null; // the last separator met and not yet matched to a message
  for (const node of [...chat.list.children]) {
    if (node.classList.contains('day')) {
      separator?.remove();
      separator = node;
      continue;
    }
    if (!node.classList.contains('msg')) continue;
    const at = Number(node.dataset.at);
    const day = startOfDay(at);
    if (day !== lastDay) {
      lastDay = day;
      const label = dayLabel(at);
      if (separator?.textContent !== label) {
        separator?.remove();
        separator = document.createElement('li');
        separator.className = 'day';
        separator.setAttribute('role', 'separator');
        separator.setAttribute('aria-label', label);
        separator.textContent = label;
        node.before(separator);
      }
    } else {
      separator?.remove();
    }
    separator = null;
  }
  separator?.remove();
}

function startOfDay(ms) {
  const date = new Date(ms);
  date.setHours(0, 0, 0, 0);
  return date.getTime();
}

function dayLabel(ms) {
  const today = new Date();
  today.setHours(0, 0, 0, 0);
  const day = startOfDay(ms);
  if (day === today.getTime()) return 'Today';
  today.setDate(today.getDate() - 1);
  if (day === today.getTime()) return 'Yesterday';
  const date = new Date(ms);
  const thisYear = date.getFullYear() === new Date().getFullYear();
  return thisYear ? dayFormat.format(date) : dayYearFormat.format(date);
}

function appendNotice(chat, text) {
  const notice = document.createElement('li');
  notice.className = 'notice';
  notice.textContent = text;
  chat.list.append(notice);
}

function scrollToBottom(chat) {
  chat.log.scrollTop = chat.log.scrollHeight;
  chat.pinned = true;
  chat.unseen = 0;
  if (chat.id === current) showJump(chat);
}

/** The jump-to-latest button, shown while the open chat is scrolled up from the bottom. */
function showJump(chat) {
  const jump = $('jump');
  jump.hidden = !chat || chat.pinned;
  if (jump.hidden) return;
  const unseen = chat.unseen;
  jump.textContent = unseen === 0 ? '↓ Latest'
    : `↓ ${unseen > 99 ? '99+' : unseen} new message${unseen === 1 ? '' : 's'}`;
}

// ---- composer ----

function sendComposed() {
  const input = $('body');
  const body = input.value;
  if (!body.trim() || current === null || !client) return;
  if (encoder.encode(body).length > MAX_BODY_BYTES) {
    input.setCustomValidity(`A message is at most ${MAX_BODY_BYTES} bytes.`);
    input.reportValidity();
    return;
  }
  input.setCustomValidity('');
  const chat = chatFor(current);
  const unsent = { conversation: current, clientId: client.send(current, body), body, at: Date.now() };
  keepUnsent(unsent);
  showPending(chat, unsent);
  scrollToBottom(chat);
  input.value = '';
  fitComposer();
}

/** An own message the server has not acknowledged yet, at the end of its chat. */
function showPending(chat, { clientId, body, at }) {
  const element = renderMessage(auth.user.username, body, true);
  element.classList.add('pending');
  element.dataset.clientId = clientId;
  setTime(element, at);
  setOwnState(element, 'pending');
  chat.pending.set(clientId, element);
  chat.list.append(element);
  markDays(chat);
}

// ---- unsent messages across reloads ----
//
// Every own message is kept in localStorage (with its client id) from the moment it is
// written until the server acknowledges or refuses it. A new page hands the kept ones back to
// its client under their original ids, so the server stores each at most once even if an
// earlier page got it through and only the acknowledgement was lost. The list is read and
// written whole each time, so two tabs of one user do not drop each other's entries.

function outboxKey() {
  return `${OUTBOX_KEY}.${auth.user.id}`;
}

function readUnsent() {
  try {
    const list = JSON.parse(localStorage.getItem(outboxKey()) ?? '[]');
    return Array.isArray(list) ? list : [];
  } catch {
    return [];
  }
}

function writeUnsent(list) {
  try {
    if (list.length === 0) localStorage.removeItem(outboxKey());
    else localStorage.setItem(outboxKey(), JSON.stringify(list));
  } catch (error) {
    // Storage full or disabled: the message still goes out while this page is open.
    console.warn(`quibble: could not keep unsent messages: ${error.message ?? error}`);
  }
}

function keepUnsent(unsent) {
  writeUnsent([...readUnsent(), unsent]);
}

function forgetUnsent(conversation, clientId) {
  if (!auth) return;
  const list = readUnsent();
  const rest = list.filter((u) => u.conversation !== conversation || u.clientId !== clientId);
  if (rest.length !== list.length) writeUnsent(rest);
}

/** Give the kept messages to the new client and show them pending in their chats. */
function restoreUnsent() {
  const kept = [];
  for (const unsent of readUnsent()) {
    const valid = unsent && Number.isSafeInteger(unsent.conversation)
      && typeof unsent.clientId === 'string' && /^\d{1,20}$/.test(unsent.clientId)
      && typeof unsent.body === 'string'
      && Number.isFinite(unsent.at);
    if (!valid) continue; // not ours to understand: dropped
    try {
      // False when listed twice: the first one stands.
      if (!client.restore(unsent.conversation, BigInt(unsent.clientId), unsent.body)) continue;
    } catch (error) {
      console.warn(`quibble: dropping an unsent message: ${error.message ?? error}`);
      continue;
    }
    kept.push(unsent);
    const chat = chatFor(unsent.conversation);
    joinChat(chat);
    showPending(chat, unsent);
  }
  writeUnsent(kept);
}

function fitComposer() {
  const input = $('body');
  input.style.height = 'auto';
  input.style.height = `${Math.min(input.scrollHeight, 160)}px`;
}

// ---- small helpers ----

function showError(element, message) {
  element.hidden = !message;
  element.textContent = message ?? '';
}

function setBusy(form, busy) {
  for (const control of form.querySelectorAll('button, input')) control.disabled = busy;
}

main();
