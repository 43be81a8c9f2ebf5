// Quibble's page: the UI only. Connection, framing, resume, resends, backoff, receipts and
// typing rate limits live in the wasm client (quibble-client-wasm, driving protocol::session);
// this module renders its events and turns clicks and keys into calls on it.
//
// The sidebar has three panels: Chats (the conversation list the session keeps current from
// the control stream: rooms the user is in and DM threads, newest activity first, with unread
// badges), Friends (requests both ways and friends, live from `friend` and `presence` events)
// and Rooms (every room, to join or create one). DM threads stay joined so that their messages
// are reported delivered as soon as they reach this page; a room is joined when opened.
//
// Moderation: a message menu (Delete: own messages; any for admins), a user menu on authors'
// names (Block or Unblock; Ban for admins), the Blocked list in the Friends panel, an admin
// panel for admins (bans, banned addresses, roles, the audit log), and a full-screen notice
// when the account or the address is banned (login refused, a live connection closed with
// `banned`, or any API call answered `address_banned`). Deleted messages show as "message
// deleted" in place; messages of blocked users come as hidden markers and show collapsed.

import init, * as wasm from './pkg/quibble_client_wasm.js';

const { Client } = wasm;
// The REST calls, each watched for the answers that mean a ban (see noteRefusal).
const {
  account, addFriend, addIpBan, audit, ban, bans, block, blocks, createRoom, deleteMessage, demote,
  friends: listFriends, ipBans, joinRoom, leaveRoom, listRooms, login, logout, memberReceipts,
  openDm, promote, removeFriend, removeIpBan, signup, unban, unblock,
} = watchRefusals(wasm);

const AUTH_KEY = 'quibble.auth';
// sessionStorage (this tab): the conversation on screen, reopened after a reload.
const OPEN_KEY = 'quibble.open';
// localStorage, per user: own messages the server has not acknowledged, resent after a reload.
const OUTBOX_KEY = 'quibble.outbox';
const PAGE = 50;
const MAX_BODY_BYTES = 4096;
const NEAR_BOTTOM_PX = 80;
const NEAR_TOP_PX = 80;
// DM threads kept joined (the most recent ones), so their messages are delivered at once.
const MAX_JOINED_DMS = 50;
// A typing indicator the server never ended (e.g. the connection dropped) goes after this.
const TYPING_GIVE_UP_MS = 7_000;
// At most this many names in a "Seen by" line.
const SEEN_BY_NAMES = 3;

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const encoder = new TextEncoder();
const phone = window.matchMedia('(max-width: 700px)');
const timeFormat = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
const dayFormat = new Intl.DateTimeFormat(undefined, { weekday: 'long', day: 'numeric', month: 'long' });
const shortDayFormat = new Intl.DateTimeFormat(undefined, { day: 'numeric', month: 'short' });
const dayYearFormat = new Intl.DateTimeFormat(undefined, { day: 'numeric', month: 'long', year: 'numeric' });
const fullFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });
// What the tick icon of an own message says, per state. The page sets pending, sent and
// failed; delivered and read come from the DM peer's receipts (set with setOwnState).
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
const convs = new Map(); // conversation id → ConversationSummary (the session's list)
let directory = new Map(); // room id → Room from the REST room list (the Rooms panel)
let directoryNext = null; // the cursor of the room list's next page; null when all are loaded
const people = new Map(); // user id → {id, username, status, dm}: friends and requests
let friendsLoaded = false; // whether `people` holds the server's lists yet
const presence = new Map(); // user id → {online, lastSeenMs}
const peerCursors = new Map(); // DM id → the peer's {delivered, read}
const chats = new Map(); // conversation id → chat view state
const blocked = new Map(); // user id → {id, username, since_ms}: the users this user blocks
let current = null; // the open conversation's id
let viewing = null; // what the client was last told is on screen

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
    if (error.code === 'banned' || error.code === 'address_banned') {
      // The banned screen is up (see noteRefusal).
    } else if (error.status === 401) {
      forgetAuth();
      showAuth('Your session has ended; log in again.');
    } else {
      // The server may just be restarting: the client reconnects by itself.
      startApp(saved);
    }
  }
}

/** Wrap every REST call of the module so that a ban answer shows the banned screen. */
function watchRefusals(module) {
  const calls = {};
  for (const [name, call] of Object.entries(module)) {
    if (typeof call !== 'function' || name === 'default' || name === 'initSync' || name === 'Client') continue;
    calls[name] = async (...args) => {
      try {
        return await call(...args);
      } catch (error) {
        noteRefusal(error);
        throw error;
      }
    };
  }
  return calls;
}

/** `banned` (a login refused) and `address_banned` (any call) end everything. */
function noteRefusal(error) {
  if (error?.code === 'address_banned') showBanned('address', error.message, auth);
  else if (error?.code === 'banned') showBanned('user', error.message);
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
  $('banned-back').addEventListener('click', () => {
    if ($('banned').dataset.kind === 'address') {
      location.reload(); // with the saved session, if any
      return;
    }
    $('banned').hidden = true;
    showAuth();
  });
  bindModeration();
  // The sidebar's tabs: click, or the arrow keys from one tab to the next (ARIA tabs pattern).
  const tabs = [...document.querySelectorAll('.tabs [role="tab"]')];
  tabs.forEach((tab, index) => {
    tab.addEventListener('click', () => showPanel(tab.dataset.panel));
    tab.addEventListener('keydown', (event) => {
      const step = { ArrowRight: 1, ArrowLeft: -1 }[event.key];
      if (!step) return;
      event.preventDefault();
      const next = tabs[(index + step + tabs.length) % tabs.length];
      showPanel(next.dataset.panel);
      next.focus();
    });
  });
  $('create-room').addEventListener('submit', onCreateRoom);
  $('add-friend').addEventListener('submit', onAddFriend);
  $('back').addEventListener('click', showList);
  $('leave').addEventListener('click', onLeaveRoom);
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
  body.addEventListener('input', () => {
    fitComposer();
    // The client sends a Typing frame at most every few seconds, however often it is told.
    if (current !== null && client && body.value.trim()) client.typing(current);
  });
  document.addEventListener('keydown', (event) => {
    if (event.key !== 'Escape' || event.defaultPrevented) return;
    if (!$('menu').hidden) {
      closeMenu(true);
      return;
    }
    if ($('app').dataset.view === 'chat' && !document.querySelector('dialog[open]')) showList();
  });
  // Read receipts follow what is really on screen.
  document.addEventListener('visibilitychange', updateViewing);
  window.addEventListener('focus', updateViewing);
  window.addEventListener('blur', updateViewing);
  phone.addEventListener('change', updateViewing);
  // A closed tab ends its connection at once, so friends see it offline now rather than
  // after the server's heartbeat timeout; a page the browser brings back starts afresh.
  window.addEventListener('pagehide', () => client?.close());
  window.addEventListener('pageshow', (event) => {
    if (event.persisted) location.reload();
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
  $('banned').hidden = true;
  $('app').hidden = false;
  applyRole();
  $('app').dataset.view = 'list';
  $('me').textContent = auth.user.username;
  showPanel('chats');
  renderConversations();
  renderFriends();
  const wtport = Number(params.get('wtport'));
  client = Client.connect({
    token: auth.token,
    onEvent,
    // A different UDP port for WebTransport (e.g. to exercise the WebSocket fallback).
    webTransportPort: Number.isInteger(wtport) && wtport > 0 ? wtport : undefined,
  });
  restoreUnsent();
  const open = readOpenConversation();
  if (open) openConversation(open.id, { focus: false, title: open.name, kind: open.kind });
}

async function endSession(message) {
  const token = auth?.token;
  stopSession(message);
  showAuth(message);
  if (token && !message) {
    try { await logout(token); } catch { /* the token is forgotten either way */ }
  }
}

/**
 * Close the client and forget the session and everything shown of it. `keepUnsent`: the
 * session ended by itself, so what was not sent stays on this device for the next login.
 */
function stopSession(keepUnsent) {
  const old = client;
  client = null;
  if (old) {
    old.close();
    // Not from inside a call into the client (this may run in its event handler).
    setTimeout(() => old.free(), 0);
  }
  if (auth && !keepUnsent) {
    // Logging out on purpose: what was not sent is not kept on this device.
    localStorage.removeItem(outboxKey());
  }
  auth = null;
  forgetAuth();
  sessionStorage.removeItem(OPEN_KEY);
  for (const chat of chats.values()) {
    chat.log.remove();
    for (const typer of chat.typing.values()) clearTimeout(typer.timer);
  }
  chats.clear();
  convs.clear();
  directory.clear();
  people.clear();
  friendsLoaded = false;
  presence.clear();
  peerCursors.clear();
  blocked.clear();
  current = null;
  viewing = null;
  showChat(null);
  updateTitle();
  showConnection({ state: 'connecting', transport: null });
  closeMenu();
  for (const dialog of document.querySelectorAll('dialog[open]')) dialog.close();
}

// ---- connection events ----

function onEvent(event) {
  switch (event.type) {
    case 'state':
      showConnection(event);
      if (event.state === 'ready') {
        // Friend changes made while away came as no event: read the lists afresh.
        refreshFriends();
        refreshBlocks();
        refreshAccount(); // the role may have changed
        if ($('sidebar').dataset.panel === 'rooms') refreshDirectory();
        updateViewing();
      }
      if (event.state === 'failed' && event.code === 'unauthorized') {
        endSession('Your session has ended; log in again.');
      }
      // The `error` event before it said why; this is the fallback.
      if (event.state === 'failed' && event.code === 'banned' && $('banned').hidden) {
        onLiveBan('');
      }
      break;
    case 'transportFailed':
    case 'transportClosed':
      console.info(`quibble: ${event.transport}: ${event.reason}`);
      $('conn').title = event.reason;
      if (event.type === 'transportFailed' && event.transport === 'webtransport') {
        $('conn-note').title = `WebTransport: ${event.reason}`;
      }
      break;
    case 'disconnected':
      // The server ends nobody's typing for a page that is not connected.
      for (const chat of chats.values()) clearTyping(chat);
      break;
    case 'joined': {
      const chat = chats.get(event.conversation);
      if (chat) {
        chat.joined = true;
        // A page asked for on a connection that then dropped is not coming: ask again later.
        chat.loading = false;
        if (event.headSeq === 0) chat.hasMore = false;
        updateLogTop(chat);
        if (kindOf(chat.id) === 'room') loadSeenBy(chat);
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
      } else if (event.conversation === null && event.code === 'banned') {
        // The account (or the address) was banned: the client does not reconnect.
        onLiveBan(event.reason);
      } else {
        console.warn(`quibble: ${event.code}: ${event.reason}`);
      }
      break;
    }
    case 'deleted':
      onDeleted(event);
      break;
    case 'conversations':
      convs.clear();
      for (const summary of event.conversations) putSummary(summary);
      joinDms();
      renderConversations();
      break;
    case 'conversationUpdated':
      putSummary(event.summary);
      if (event.summary.kind === 'dm') joinDms();
      renderConversations();
      break;
    case 'conversationRemoved':
      convs.delete(event.conversation);
      renderConversations();
      break;
    case 'receipt':
      onReceipt(event);
      break;
    case 'friend':
      onFriend(event);
      break;
    case 'presence':
      presence.set(event.user, { online: event.online, lastSeenMs: event.lastSeenMs });
      renderConversations();
      renderFriends();
      showChatHead();
      break;
    case 'typing':
      onTyping(event);
      break;
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
  // Ready over WebSocket means WebTransport did not connect first: say so, and why it may be.
  $('conn-note').hidden = !(event.state === 'ready' && event.transport === 'websocket');
  if (event.state === 'connecting') $('conn-note').title = '';
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

// ---- the sidebar ----

function showPanel(panel) {
  $('sidebar').dataset.panel = panel;
  for (const tab of document.querySelectorAll('.tabs [role="tab"]')) {
    const selected = tab.dataset.panel === panel;
    tab.setAttribute('aria-selected', String(selected));
    tab.tabIndex = selected ? 0 : -1;
    $(tab.getAttribute('aria-controls')).hidden = !selected;
  }
  if (panel === 'rooms') refreshDirectory();
}

/** Phone widths: back from a chat to the lists. */
function showList() {
  $('app').dataset.view = 'list';
  sessionStorage.removeItem(OPEN_KEY);
  updateViewing();
}

// ---- the conversation list ----

function putSummary(summary) {
  convs.set(summary.conversation, summary);
  if (summary.kind === 'dm') {
    notePeerCursors(summary.conversation, summary.peerDeliveredSeq ?? 0, summary.peerReadSeq ?? 0);
  }
  const chat = chats.get(summary.conversation);
  if (chat && chat.id === current) showChatHead();
}

/** Keep the most recent DM threads joined: their messages are then delivered on arrival. */
function joinDms() {
  if (!client) return;
  const dms = sortedConversations().filter((s) => s.kind === 'dm').slice(0, MAX_JOINED_DMS);
  for (const summary of dms) joinChat(chatFor(summary.conversation));
}

function sortedConversations() {
  return [...convs.values()].sort((a, b) => b.activityMs - a.activityMs || b.conversation - a.conversation);
}

function kindOf(id) {
  return convs.get(id)?.kind ?? chats.get(id)?.kind ?? 'room';
}

function titleOf(id) {
  return convs.get(id)?.title ?? chats.get(id)?.title ?? String(id);
}

/** Unread messages of a conversation, as the badge shows them (none for the one being read). */
function unreadOf(summary) {
  return summary.conversation === viewing ? 0 : summary.unread;
}

function renderConversations() {
  const items = sortedConversations().map((summary) => {
    const id = summary.conversation;
    const button = document.createElement('button');
    button.type = 'button';
    button.className = 'conv';
    button.dataset.conversationId = id;
    button.dataset.kind = summary.kind;
    button.dataset.title = summary.title;
    if (id === current) button.setAttribute('aria-current', 'true');
    const head = document.createElement('span');
    head.className = 'conv-head';
    if (summary.kind === 'dm') head.append(presenceDot(summary.peer));
    const name = document.createElement('span');
    name.className = 'conv-title';
    name.textContent = summary.kind === 'dm' ? summary.title : `# ${summary.title}`;
    name.title = summary.title; // the whole name, when it does not fit
    head.append(name);
    if (summary.last) {
      const at = new Date(summary.last.sentAtMs);
      const time = document.createElement('time');
      time.className = 'conv-time';
      time.dateTime = at.toISOString();
      const day = dayLabel(summary.last.sentAtMs);
      time.textContent = day === 'Today' ? timeFormat.format(at) : shortDayFormat.format(at);
      head.append(time);
    }
    const unread = unreadOf(summary);
    if (unread > 0) head.append(badge(unread));
    const preview = document.createElement('span');
    preview.className = 'conv-preview';
    const { last } = summary;
    if (last && last.author === 0) {
      preview.textContent = 'hidden: blocked user'; // a hidden marker has no author
    } else if (last) {
      const who = last.author === auth?.user.id ? 'You' : last.authorName;
      // A real message is never empty: an empty preview is a deleted message's.
      preview.textContent = `${who}: ${last.preview || 'message deleted'}`;
    } else {
      preview.textContent = 'No messages yet';
    }
    button.append(head, preview);
    button.addEventListener('click', () => openConversation(id));
    const item = document.createElement('li');
    item.append(button);
    return item;
  });
  if (items.length === 0) {
    const item = document.createElement('li');
    item.className = 'muted';
    item.textContent = 'No conversations yet: join a room or add a friend.';
    items.push(item);
  }
  replaceKeepingFocus($('convs'), items, (element) => element.dataset.conversationId);
  updateTitle();
}

function badge(count) {
  const element = document.createElement('span');
  element.className = 'badge';
  element.textContent = count > 99 ? '99+' : String(count);
  element.setAttribute('aria-label', `${count} unread`);
  return element;
}

/** The tab title counts what is unread everywhere: "(3) Quibble". */
function updateTitle() {
  let total = 0;
  for (const summary of convs.values()) total += unreadOf(summary);
  const shown = total > 99 ? '99+' : String(total);
  document.title = total > 0 ? `(${shown}) Quibble` : 'Quibble';
  const tab = $('unread-badge');
  tab.hidden = total === 0;
  tab.textContent = shown;
  tab.setAttribute('aria-label', `${total} unread`);
}

// ---- rooms ----

/** Reload the room list from its first page; later pages load on "More rooms". */
async function refreshDirectory() {
  if (!auth) return;
  await loadDirectory(null);
}

/** Load the page of rooms after the cursor `after` (null: the first page, replacing the list). */
async function loadDirectory(after) {
  try {
    const page = await listRooms(auth.token, after ?? undefined);
    const loaded = page.rooms.map((room) => [room.id, room]);
    directory = after === null ? new Map(loaded) : new Map([...directory, ...loaded]);
    directoryNext = page.next;
    showError($('rooms-error'));
    renderDirectory();
  } catch (error) {
    if (error.status === 401) endSession('Your session has ended; log in again.');
    else showError($('rooms-error'), error.message);
  }
}

function renderDirectory() {
  const items = [...directory.values()].map((room) => {
    const button = document.createElement('button');
    button.type = 'button';
    button.className = 'room';
    button.dataset.roomId = room.id;
    button.dataset.roomName = room.name;
    const name = document.createElement('span');
    name.className = 'room-name';
    name.textContent = `# ${room.name}`;
    name.title = room.name;
    button.append(name);
    const member = convs.has(room.id) || room.member;
    const action = document.createElement('span');
    action.className = 'room-action';
    action.textContent = member ? 'Open' : 'Join';
    button.append(action);
    button.addEventListener('click', () => enterRoom(room));
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
  if (directoryNext !== null) {
    const more = document.createElement('button');
    more.type = 'button';
    more.id = 'more-rooms';
    more.className = 'link';
    more.textContent = 'More rooms';
    more.addEventListener('click', () => loadDirectory(directoryNext));
    const item = document.createElement('li');
    item.append(more);
    items.push(item);
  }
  $('rooms').replaceChildren(...items);
}

/** Join a room (durable membership: it enters the conversation list) and open it. */
async function enterRoom(room) {
  if (!convs.has(room.id)) {
    try {
      await joinRoom(auth.token, room.id);
      showError($('rooms-error'));
    } catch (error) {
      showError($('rooms-error'), error.message);
      return;
    }
  }
  openConversation(room.id, { title: room.name, kind: 'room' });
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
    directory.set(room.id, { ...room, member: true });
    renderDirectory();
    openConversation(room.id, { title: room.name, kind: 'room' });
  } catch (error) {
    showError($('rooms-error'), error.message);
  } finally {
    setBusy($('create-room'), false);
  }
}

async function onLeaveRoom() {
  const id = current;
  if (id === null || kindOf(id) !== 'room') return;
  try {
    await leaveRoom(auth.token, id);
  } catch (error) {
    const chat = chats.get(id);
    if (chat) appendNotice(chat, `Could not leave: ${error.message}`);
    return;
  }
  client?.leave(id);
  forgetChat(id);
  convs.delete(id); // the server's ConversationRemoved follows
  renderConversations();
  showPanel('chats');
  showList();
}

// ---- friends ----

async function refreshFriends() {
  if (!auth) return;
  try {
    const lists = await listFriends(auth.token);
    people.clear();
    for (const [status, list] of [['friends', lists.friends], ['incoming', lists.incoming],
      ['outgoing', lists.outgoing]]) {
      for (const friend of list) people.set(friend.id, { ...friend, status });
    }
    friendsLoaded = true;
    renderFriends();
  } catch (error) {
    if (error.status === 401) endSession('Your session has ended; log in again.');
    else showError($('friends-error'), error.message);
  }
}

function onFriend(event) {
  // What the last action said is old news now, unless this is that action's own echo (it
  // may come over the realtime connection after the action's HTTP answer).
  const echo = statusAbout && statusAbout.user === event.user && statusAbout.status === event.status;
  if (!echo) showStatus();
  if (event.status === 'none') people.delete(event.user);
  else people.set(event.user, { id: event.user, username: event.username, status: event.status, dm: event.dm });
  renderFriends();
}

async function onAddFriend(event) {
  event.preventDefault();
  const input = $('friend-name');
  const username = input.value.trim();
  if (!username) return;
  setBusy($('add-friend'), true);
  try {
    const result = await addFriend(auth.token, username);
    input.value = '';
    const name = result.user.username;
    const said = {
      requested: `Request sent to ${name}.`,
      already_requested: `You already asked ${name}.`,
      accepted: `You and ${name} are friends now.`,
      already_friends: `You and ${name} are friends already.`,
    };
    const status = result.status.endsWith('requested') ? 'outgoing' : 'friends';
    showStatus(said[result.status] ?? '', { user: result.user.id, status });
    people.set(result.user.id, { ...result.user, status });
    renderFriends();
  } catch (error) {
    showStatus();
    showError($('friends-error'), error.message);
  } finally {
    setBusy($('add-friend'), false);
  }
}

/** Accept (add) or decline, cancel, unfriend (remove) `person`. */
async function changeFriend(person, action) {
  try {
    const result = await (action === 'add' ? addFriend : removeFriend)(auth.token, person.username);
    const said = {
      accepted: `You and ${person.username} are friends now.`,
      declined: `Declined ${person.username}'s request.`,
      cancelled: `Cancelled your request to ${person.username}.`,
      unfriended: `You and ${person.username} are no longer friends.`,
    };
    showStatus(said[result.status] ?? '', {
      user: person.id,
      status: action === 'add' ? 'friends' : 'none',
    });
    if (action === 'add') people.set(person.id, { ...result.user, status: 'friends' });
    else people.delete(person.id);
    renderFriends();
  } catch (error) {
    showError($('friends-error'), error.message);
  }
}

async function messageFriend(person) {
  let { dm } = person;
  if (dm === null || dm === undefined) {
    try {
      dm = (await openDm(auth.token, person.username)).conversation;
    } catch (error) {
      showError($('friends-error'), error.message);
      return;
    }
  }
  openConversation(dm, { title: person.username, kind: 'dm' });
}

function renderFriends() {
  const lists = { friends: [], incoming: [], outgoing: [] };
  for (const person of people.values()) lists[person.status]?.push(person);
  for (const list of Object.values(lists)) list.sort((a, b) => a.username.localeCompare(b.username));
  const row = (person, actions) => {
    const item = document.createElement('li');
    item.className = 'person';
    item.dataset.username = person.username;
    const who = document.createElement('span');
    who.className = 'person-name';
    if (person.status === 'friends') who.append(presenceDot(person.id));
    const name = document.createElement('span');
    name.className = 'name';
    name.textContent = person.username;
    name.title = person.username;
    who.append(name);
    if (person.status === 'friends') {
      const seen = document.createElement('span');
      seen.className = 'seen';
      seen.textContent = presenceText(person.id);
      who.append(seen);
    }
    const buttons = document.createElement('span');
    buttons.className = 'person-actions';
    for (const [label, onClick, primary] of actions) {
      const button = document.createElement('button');
      button.type = 'button';
      button.textContent = label;
      button.className = primary ? 'primary small' : 'small';
      button.setAttribute('aria-label', `${label}: ${person.username}`);
      button.addEventListener('click', onClick);
      buttons.append(button);
    }
    item.append(who, buttons);
    return item;
  };
  const byLabel = (element) => element.getAttribute('aria-label');
  replaceKeepingFocus($('incoming'), lists.incoming.map((p) => row(p, [
    ['Accept', () => changeFriend(p, 'add'), true],
    ['Decline', () => changeFriend(p, 'remove')],
  ])), byLabel);
  replaceKeepingFocus($('outgoing'), lists.outgoing.map((p) => row(p, [
    ['Cancel', () => changeFriend(p, 'remove')],
  ])), byLabel);
  const friendItems = lists.friends.map((p) => row(p, [
    ['Message', () => messageFriend(p), true],
    ['Unfriend', () => changeFriend(p, 'remove')],
  ]));
  if (friendItems.length === 0) {
    const item = document.createElement('li');
    item.className = 'muted';
    item.textContent = 'No friends yet: add one by username.';
    friendItems.push(item);
  }
  replaceKeepingFocus($('friend-list'), friendItems, byLabel);
  $('incoming-section').hidden = lists.incoming.length === 0;
  $('outgoing-section').hidden = lists.outgoing.length === 0;
  const requests = $('requests-badge');
  requests.hidden = lists.incoming.length === 0;
  requests.textContent = String(lists.incoming.length);
  requests.setAttribute('aria-label', `${lists.incoming.length} friend requests`);
  showChatHead(); // an open DM may have become read-only, or writable again
}

/** The friendship the friends panel's status line reports (`{ user, status }`), if any. */
let statusAbout = null;

function showStatus(message, about = null) {
  statusAbout = message ? about : null;
  showError($('friends-error'));
  const status = $('friends-status');
  status.hidden = !message;
  status.textContent = message ?? '';
}

// ---- presence ----

function presenceDot(user) {
  const dot = document.createElement('span');
  dot.className = 'presence';
  const online = presence.get(user)?.online === true;
  dot.dataset.online = String(online);
  dot.setAttribute('role', 'img');
  dot.setAttribute('aria-label', online ? 'online' : 'offline');
  dot.title = presenceText(user);
  return dot;
}

/** "online", "last seen 14:03", "last seen Yesterday 14:03", or "" when nothing is known. */
function presenceText(user) {
  const state = presence.get(user);
  if (!state) return '';
  if (state.online) return 'online';
  if (!state.lastSeenMs) return 'offline';
  const day = dayLabel(state.lastSeenMs);
  const time = timeFormat.format(new Date(state.lastSeenMs));
  return day === 'Today' ? `last seen ${time}` : `last seen ${day} ${time}`;
}

// ---- the open conversation ----

function openConversation(id, { focus = true, title, kind } = {}) {
  const chat = chatFor(id);
  if (title !== undefined) chat.title = title;
  if (kind !== undefined) chat.kind = kind;
  joinChat(chat);
  current = id;
  showChat(chat);
  renderConversations();
  $('app').dataset.view = 'chat';
  sessionStorage.setItem(OPEN_KEY, JSON.stringify({
    user: auth.user.id, id, name: titleOf(id), kind: kindOf(id),
  }));
  updateViewing();
  if (focus) $('body').focus();
}

/** The conversation this tab showed before a reload, if it was this user's. */
function readOpenConversation() {
  try {
    const open = JSON.parse(sessionStorage.getItem(OPEN_KEY) ?? 'null');
    const valid = open && open.user === auth.user.id && Number.isSafeInteger(open.id)
      && typeof open.name === 'string' && (open.kind === 'room' || open.kind === 'dm');
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

/** Drop a conversation's view (after leaving it). */
function forgetChat(id) {
  const chat = chats.get(id);
  if (!chat) return;
  clearTyping(chat);
  chat.log.remove();
  chats.delete(id);
  if (current === id) {
    current = null;
    sessionStorage.removeItem(OPEN_KEY);
    showChat(null);
    updateViewing();
  }
}

function showChat(chat) {
  for (const other of chats.values()) other.log.hidden = other !== chat;
  $('empty').hidden = chat !== null;
  showChatHead();
  showTyping();
  if (chat && chat.pinned) scrollToBottom(chat);
  showJump(chat);
}

/** The title of the open conversation, with the peer's presence (DMs) or Leave (rooms). */
function showChatHead() {
  const title = $('room-title');
  const sub = $('chat-sub');
  if (current === null) {
    title.textContent = 'Pick a conversation';
    sub.hidden = true;
    $('leave').hidden = true;
  } else {
    const dm = kindOf(current) === 'dm';
    title.textContent = dm ? titleOf(current) : `# ${titleOf(current)}`;
    const peer = convs.get(current)?.peer;
    let text = dm && peer !== null && peer !== undefined ? presenceText(peer) : '';
    if (!canSend(current)) text = 'Not friends any more: this conversation is read-only';
    sub.textContent = text;
    sub.hidden = !text;
    $('leave').hidden = dm;
  }
  title.title = title.textContent;
  $('composer').hidden = current === null || !canSend(current);
}

/** Whether the user may write in a conversation: a DM needs the friendship to stand. */
function canSend(id) {
  const peer = convs.get(id)?.peer;
  if (kindOf(id) !== 'dm' || peer === null || peer === undefined || !friendsLoaded) return true;
  return people.get(peer)?.status === 'friends';
}

/**
 * Tell the client which conversation is on screen: the open one while the page is visible
 * and focused and the chat pane shows (phones show one pane) scrolled to its latest
 * messages. The client reports it read now and as messages arrive, debounced.
 */
function updateViewing() {
  const chat = current === null ? null : chats.get(current);
  const onScreen = chat && document.visibilityState === 'visible' && document.hasFocus()
    && (!phone.matches || $('app').dataset.view === 'chat') && chat.pinned;
  const next = onScreen ? current : null;
  if (next === viewing || !client) return;
  viewing = next;
  client.setViewing(next ?? undefined);
  renderConversations();
}

// ---- receipts ----

function onReceipt(event) {
  const chat = chats.get(event.conversation);
  if (kindOf(event.conversation) === 'dm') {
    if (event.user !== auth?.user.id) notePeerCursors(event.conversation, event.delivered, event.read);
    return;
  }
  if (!chat) return;
  const known = chat.readers.get(event.user);
  if (known) {
    known.read = Math.max(known.read, event.read);
    showSeenBy(chat);
  } else if (!chat.askedAbout.has(event.user)) {
    chat.askedAbout.add(event.user); // once: the list holds the first 200 members only
    loadSeenBy(chat); // a member this page has no name for yet
  }
}

/** The DM peer's cursors moved (they never go back): tick own messages up to them. */
function notePeerCursors(id, delivered, read) {
  const known = peerCursors.get(id) ?? { delivered: 0, read: 0 };
  const next = { delivered: Math.max(known.delivered, delivered, read), read: Math.max(known.read, read) };
  if (next.delivered === known.delivered && next.read === known.read) return;
  peerCursors.set(id, next);
  const chat = chats.get(id);
  if (!chat) return;
  for (const [seq, element] of chat.bySeq) {
    if (element.classList.contains('own')) tick(element, seq, next);
  }
}

/** The state of an own DM message by the peer's cursors. */
function tick(element, seq, cursors) {
  let state = 'sent';
  if (seq <= cursors.read) state = 'read';
  else if (seq <= cursors.delivered) state = 'delivered';
  if (element.dataset.state !== state) setOwnState(element, state);
}

/** The members' read cursors of a room, for its "Seen by" line. */
async function loadSeenBy(chat) {
  if (chat.loadingReaders) return;
  chat.loadingReaders = true;
  try {
    const { receipts } = await memberReceipts(auth.token, chat.id);
    for (const r of receipts) {
      const known = chat.readers.get(r.user_id);
      chat.readers.set(r.user_id, { name: r.username, read: Math.max(known?.read ?? 0, r.read_seq) });
    }
    showSeenBy(chat);
  } catch (error) {
    console.info(`quibble: no receipts for ${chat.id}: ${error.message ?? error}`);
  } finally {
    chat.loadingReaders = false;
  }
}

/** "Seen by alice, bob": the others who have read up to the latest message of a room. */
function showSeenBy(chat) {
  if (kindOf(chat.id) !== 'room') {
    chat.seenBy.hidden = true; // a DM's own messages carry ticks instead
    return;
  }
  const latest = Math.max(0, ...chat.bySeq.keys());
  const author = chat.bySeq.get(latest)?.dataset.author;
  const names = [];
  if (latest > 0) {
    for (const [user, { name, read }] of chat.readers) {
      if (user !== auth?.user.id && String(user) !== author && read >= latest) names.push(name);
    }
  }
  names.sort((a, b) => a.localeCompare(b));
  const shown = names.slice(0, SEEN_BY_NAMES).join(', ');
  const more = names.length - SEEN_BY_NAMES;
  chat.seenBy.textContent = names.length === 0 ? ''
    : `Seen by ${shown}${more > 0 ? ` and ${more} other${more === 1 ? '' : 's'}` : ''}`;
  chat.seenBy.hidden = names.length === 0;
}

// ---- typing ----

function onTyping(event) {
  // Shown for the conversations this page has open (DM threads, rooms opened).
  const chat = chats.get(event.conversation);
  if (!chat || event.user === auth?.user.id) return;
  const known = chat.typing.get(event.user);
  if (known) clearTimeout(known.timer);
  if (event.typing) {
    const timer = setTimeout(() => stopTyping(chat, event.user), TYPING_GIVE_UP_MS);
    chat.typing.set(event.user, { name: event.username, timer });
  } else {
    chat.typing.delete(event.user);
  }
  if (chat.id === current) showTyping();
}

function stopTyping(chat, user) {
  const known = chat.typing.get(user);
  if (!known) return;
  clearTimeout(known.timer);
  chat.typing.delete(user);
  if (chat.id === current) showTyping();
}

function clearTyping(chat) {
  for (const user of [...chat.typing.keys()]) stopTyping(chat, user);
}

/** "bob is typing…" under the open conversation. */
function showTyping() {
  const line = $('typing');
  const chat = current === null ? null : chats.get(current);
  const names = chat ? [...chat.typing.values()].map((t) => t.name) : [];
  line.hidden = chat === null || chat === undefined;
  if (names.length === 0) line.textContent = '';
  else if (names.length === 1) line.textContent = `${names[0]} is typing…`;
  else if (names.length === 2) line.textContent = `${names[0]} and ${names[1]} are typing…`;
  else line.textContent = 'Several people are typing…';
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
  log.dataset.conversationId = id;
  const top = document.createElement('div');
  top.className = 'log-top';
  const list = document.createElement('ol');
  list.className = 'messages';
  const seenBy = document.createElement('p');
  seenBy.className = 'seen-by';
  seenBy.hidden = true;
  log.append(top, list, seenBy);
  $('logs').append(log);
  chat = {
    id, log, top, list, seenBy,
    kind: convs.get(id)?.kind ?? 'room',
    title: convs.get(id)?.title ?? String(id),
    bySeq: new Map(), // seq → element
    pending: new Map(), // client id → element of an own message not yet durable
    oldest: null, // lowest seq shown
    hasMore: true,
    loading: false,
    joining: false,
    joined: false,
    pinned: true, // follow new messages
    unseen: 0, // messages that came below while the reader was scrolled up
    readers: new Map(), // rooms: user id → {name, read} for "Seen by"
    loadingReaders: false,
    askedAbout: new Set(), // members whose name was fetched for a receipt
    typing: new Map(), // user id → {name, timer}: who is typing here
  };
  log.addEventListener('scroll', () => {
    chat.pinned = log.scrollHeight - log.scrollTop - log.clientHeight < NEAR_BOTTOM_PX;
    if (chat.pinned) chat.unseen = 0;
    if (chat.id === current) {
      showJump(chat);
      updateViewing();
    }
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
  chat.oldest = null;
  showSeenBy(chat);
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
    const start = kindOf(chat.id) === 'dm' ? 'The beginning of your conversation.' : 'The beginning of the room.';
    top.textContent = chat.oldest === null ? 'No messages yet. Say hello!' : start;
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
    if (message.deleted) markDeleted(element);
  } else {
    element = renderChatMessage(message, own);
  }
  if (!own && !chat.pinned && chat.id === current) {
    chat.unseen += 1;
    showJump(chat);
  }
  stopTyping(chat, message.author);
  confirm(chat, element, message.seq, message.sentAtMs);
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
    const element = renderChatMessage(message, message.author === auth?.user.id);
    setConfirmed(chat, element, message.seq, message.sentAtMs);
    chat.bySeq.set(message.seq, element);
    fragment.append(element);
    chat.oldest = chat.oldest === null ? message.seq : Math.min(chat.oldest, message.seq);
  }
  chat.list.prepend(fragment);
  markDays(chat);
  showSeenBy(chat);
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
  setConfirmed(chat, element, seq, sentAtMs);
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
  showSeenBy(chat);
  if (follow && chat.id === current) scrollToBottom(chat);
}

function setConfirmed(chat, element, seq, sentAtMs) {
  element.dataset.seq = seq;
  element.classList.remove('pending');
  delete element.dataset.throttled;
  setTime(element, sentAtMs);
  if (!element.classList.contains('own')) return;
  if (kindOf(chat.id) === 'dm') tick(element, seq, peerCursors.get(chat.id) ?? { delivered: 0, read: 0 });
  else setOwnState(element, 'sent');
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

/** A message from the server: a hidden marker, a tombstone or a message. */
function renderChatMessage(message, own) {
  if (message.hidden) return renderMarker();
  const element = renderMessage(message.author, message.authorName, message.body, own);
  if (message.deleted) markDeleted(element);
  else if (blocked.has(message.author)) element.classList.add('blocked');
  return element;
}

function renderMessage(authorId, author, body, own) {
  const element = document.createElement('li');
  element.className = own ? 'msg own' : 'msg';
  element.dataset.author = authorId;
  const meta = document.createElement('div');
  meta.className = 'meta';
  // Others' names open the user menu (block, ban).
  const name = document.createElement(own ? 'span' : 'button');
  name.className = 'author';
  name.textContent = author;
  if (!own) {
    name.type = 'button';
    name.setAttribute('aria-haspopup', 'menu');
    name.title = `${author}: block, ban…`;
  }
  const time = document.createElement('time');
  meta.append(name, time);
  if (own) {
    const status = document.createElement('span');
    status.className = 'status';
    status.setAttribute('role', 'img');
    status.innerHTML = STATUS_ICON;
    meta.append(status);
  }
  // Shown (by CSS) on durable messages the user may delete: own ones, any for admins.
  const actions = document.createElement('button');
  actions.type = 'button';
  actions.className = 'msg-menu';
  actions.setAttribute('aria-haspopup', 'menu');
  actions.setAttribute('aria-label', 'Message actions');
  actions.textContent = '⋯';
  meta.append(actions);
  const text = document.createElement('div');
  text.className = 'body';
  text.textContent = body;
  element.append(meta, text);
  return element;
}

/** In place of a message from a blocked user: collapsed, only its time. */
function renderMarker() {
  const element = document.createElement('li');
  element.className = 'msg marker';
  element.dataset.author = '0';
  const meta = document.createElement('div');
  meta.className = 'meta';
  meta.append(document.createElement('time'));
  const text = document.createElement('div');
  text.className = 'body';
  text.textContent = 'hidden: blocked user';
  element.append(meta, text);
  return element;
}

/** A deleted message: its author and time stay, its text is gone. */
function markDeleted(element) {
  element.classList.add('deleted');
  element.classList.remove('blocked');
  element.querySelector('.body').textContent = 'message deleted';
  element.querySelector('.failure')?.remove();
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
  const element = renderMessage(auth.user.id, auth.user.username, body, true);
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

// ---- roles ----

function isAdmin() {
  return auth?.user.role === 'admin';
}

/** Admins get Delete on every message, Ban in the user menu and the admin panel. */
function applyRole() {
  const admin = isAdmin();
  $('app').dataset.role = admin ? 'admin' : 'user';
  $('admin-open').hidden = !admin;
  if (!admin && $('admin').open) $('admin').close();
}

/** Read the account afresh (its role may have changed while the page was away). */
async function refreshAccount() {
  const token = auth?.token;
  if (!token) return;
  try {
    const user = await account(token);
    if (auth?.token !== token) return;
    auth.user = user;
    localStorage.setItem(AUTH_KEY, JSON.stringify(auth));
    applyRole();
  } catch (error) {
    if (error.status === 401 && auth?.token === token) endSession('Your session has ended; log in again.');
  }
}

// ---- banned ----

/**
 * The server closed the connection with `banned`: the account's ban (its tokens are void now)
 * or the address's. An API call tells which: `address_banned` for the address.
 */
async function onLiveBan(reason) {
  const session = auth;
  if (!session) return;
  showBanned(/address/i.test(reason) ? 'address' : 'user', reason, session);
  try {
    await account(session.token); // answered `address_banned`: noteRefusal switches the screen
  } catch {
    // 401: the account's ban revoked the token, as the screen says.
  }
}

/**
 * The full-screen notice for a banned account (`user`) or address (`address`); `message` is
 * the server's, e.g. "banned until 2026-12-01T10:00:00Z: spam" or "banned: spam". An
 * address ban keeps the session (`session`) on this device: its token still holds, and a
 * reload once the ban is lifted carries on.
 */
function showBanned(kind, message, session = null) {
  if (auth) stopSession(true);
  auth = null;
  if (kind === 'address' && session) localStorage.setItem(AUTH_KEY, JSON.stringify(session));
  else if (kind === 'user') forgetAuth();
  $('app').hidden = true;
  $('auth').hidden = true;
  $('banned').hidden = false;
  $('banned').dataset.kind = kind;
  $('banned-title').textContent = kind === 'address' ? 'This address is banned' : 'You are banned';
  $('banned-back').textContent = kind === 'address' ? 'Try again' : 'Back to log in';
  const ban = describeBan(message ?? '');
  $('banned-reason').textContent = ban.reason ? `Reason: ${ban.reason}` : '';
  $('banned-reason').hidden = !ban.reason;
  $('banned-until').textContent = ban.until ? `Until ${fullFormat.format(ban.until)}`
    : ban.parsed ? 'Until an admin lifts it.' : '';
  $('banned-back').focus();
}

/** The reason and the end of a ban from the server's message ("banned until …: reason"). */
function describeBan(message) {
  const match = /^(?:[\w ]*?)banned(?: until (\S+?))?: ([\s\S]*)$/i.exec(message.trim());
  if (!match) return { reason: message.trim(), until: null, parsed: false };
  const until = match[1] ? new Date(match[1]) : null;
  return {
    reason: match[2].trim(),
    until: until && !Number.isNaN(until.getTime()) ? until : null,
    parsed: true,
  };
}

// ---- menus ----

let menuAnchor = null; // the button the open menu belongs to

function bindModeration() {
  // One listener for every message's menu and author name.
  $('logs').addEventListener('click', (event) => {
    const button = event.target.closest('button.msg-menu, button.author');
    const element = button?.closest('li.msg');
    if (!element) return;
    if (menuAnchor === button) {
      closeMenu();
      return;
    }
    if (button.classList.contains('msg-menu')) openMessageMenu(button, element);
    else openUserMenu(button, Number(element.dataset.author), button.textContent);
  });
  document.addEventListener('click', (event) => {
    if (!$('menu').hidden && !$('menu').contains(event.target) && event.target !== menuAnchor
        && !menuAnchor?.contains(event.target)) {
      closeMenu();
    }
  });
  $('menu').addEventListener('keydown', (event) => {
    const step = { ArrowDown: 1, ArrowUp: -1 }[event.key];
    if (!step) return;
    event.preventDefault();
    const items = [...$('menu').querySelectorAll('[role="menuitem"]')];
    const index = items.indexOf(document.activeElement);
    items[(index + step + items.length) % items.length]?.focus();
  });
  window.addEventListener('resize', () => closeMenu());
  $('ban-form').addEventListener('submit', onBanSubmit);
  $('ban-cancel').addEventListener('click', () => $('ban-dialog').close());
  $('admin-open').addEventListener('click', openAdmin);
  $('admin-close').addEventListener('click', () => $('admin').close());
  $('ban-user').addEventListener('submit', (event) => {
    event.preventDefault();
    const name = $('ban-user-name').value.trim();
    if (name) openBanDialog(name);
  });
  $('ip-ban-form').addEventListener('submit', onIpBanSubmit);
  $('role-form').addEventListener('submit', onRoleSubmit);
  $('audit-more').addEventListener('click', () => loadAudit(auditNext));
}

/** Open the menu under `anchor` with `items`: [label, action] pairs. */
function openMenu(anchor, items) {
  closeMenu();
  const menu = $('menu');
  menu.replaceChildren(...items.map(([label, action]) => {
    const item = document.createElement('button');
    item.type = 'button';
    item.setAttribute('role', 'menuitem');
    item.textContent = label;
    item.addEventListener('click', () => {
      closeMenu(true);
      action();
    });
    return item;
  }));
  menu.hidden = false;
  const at = anchor.getBoundingClientRect();
  const width = menu.offsetWidth;
  const height = menu.offsetHeight;
  menu.style.left = `${Math.max(8, Math.min(at.left, window.innerWidth - width - 8))}px`;
  const below = at.bottom + 4;
  menu.style.top = `${below + height > window.innerHeight - 8 ? Math.max(8, at.top - height - 4) : below}px`;
  menuAnchor = anchor;
  anchor.setAttribute('aria-expanded', 'true');
  menu.querySelector('[role="menuitem"]')?.focus();
}

/** Close the menu; `refocus`: give the focus back to the button that opened it. */
function closeMenu(refocus = false) {
  const menu = $('menu');
  if (menu.hidden) return;
  menu.hidden = true;
  menu.replaceChildren();
  const anchor = menuAnchor;
  menuAnchor = null;
  anchor?.setAttribute('aria-expanded', 'false');
  if (refocus && anchor?.isConnected) anchor.focus();
}

// ---- delete ----

/** Delete: own messages, or any for admins (the server decides; this only offers it). */
function openMessageMenu(button, element) {
  const chatId = Number(element.closest('.log')?.dataset.conversationId);
  const seq = Number(element.dataset.seq);
  if (!Number.isSafeInteger(chatId) || !Number.isSafeInteger(seq)) return;
  const own = element.classList.contains('own');
  if (!own && !isAdmin()) return;
  openMenu(button, [['Delete', () => removeMessage(chatId, seq)]]);
}

async function removeMessage(conversation, seq) {
  try {
    await deleteMessage(auth.token, conversation, seq);
    onDeleted({ conversation, seq });
  } catch (error) {
    const chat = chats.get(conversation);
    if (chat && auth) appendNotice(chat, `Could not delete: ${error.message}`);
  }
}

/** A message was deleted (by its author or an admin): it shows as deleted in place. */
function onDeleted({ conversation, seq }) {
  const element = chats.get(conversation)?.bySeq.get(seq);
  if (element && !element.classList.contains('marker')) markDeleted(element);
  if (menuAnchor && element?.contains(menuAnchor)) closeMenu();
}

// ---- block ----

/** Block or Unblock the author; Ban for admins. */
function openUserMenu(button, user, username) {
  if (!Number.isSafeInteger(user) || user === 0 || !username || user === auth?.user.id) return;
  const items = blocked.has(user)
    ? [[`Unblock ${username}`, () => setBlocked(username, false)]]
    : [[`Block ${username}`, () => setBlocked(username, true)]];
  if (isAdmin()) items.push([`Ban ${username}…`, () => openBanDialog(username)]);
  openMenu(button, items);
}

async function refreshBlocks() {
  const token = auth?.token;
  if (!token) return;
  try {
    const list = (await blocks(token)).blocks;
    if (auth?.token !== token) return;
    blocked.clear();
    for (const user of list) blocked.set(user.id, user);
    renderBlocked();
  } catch (error) {
    console.info(`quibble: no block list: ${error.message ?? error}`);
  }
}

async function setBlocked(username, blocking) {
  try {
    const result = await (blocking ? block : unblock)(auth.token, username);
    const { user } = result;
    if (blocking) {
      blocked.set(user.id, { ...user, since_ms: Date.now() });
      showStatus(`You blocked ${user.username}: you no longer see their messages.`);
    } else {
      blocked.delete(user.id);
      showStatus(`You unblocked ${user.username}.`);
    }
    // Their messages on screen collapse (or come back); new ones come as hidden markers.
    for (const element of document.querySelectorAll(`#logs li.msg[data-author="${user.id}"]`)) {
      element.classList.toggle('blocked', blocking && !element.classList.contains('deleted'));
    }
    renderBlocked();
  } catch (error) {
    showStatus();
    showError($('friends-error'), error.message);
  }
}

/** The Blocked list of the Friends panel, each with Unblock. */
function renderBlocked() {
  const list = [...blocked.values()].sort((a, b) => a.username.localeCompare(b.username));
  const items = list.map((user) => {
    const item = document.createElement('li');
    item.className = 'person';
    item.dataset.username = user.username;
    const who = document.createElement('span');
    who.className = 'person-name';
    const name = document.createElement('span');
    name.className = 'name';
    name.textContent = user.username;
    name.title = user.username;
    who.append(name);
    const button = document.createElement('button');
    button.type = 'button';
    button.className = 'small';
    button.textContent = 'Unblock';
    button.setAttribute('aria-label', `Unblock: ${user.username}`);
    button.addEventListener('click', () => setBlocked(user.username, false));
    const actions = document.createElement('span');
    actions.className = 'person-actions';
    actions.append(button);
    item.append(who, actions);
    return item;
  });
  replaceKeepingFocus($('blocked-list'), items, (element) => element.getAttribute('aria-label'));
  $('blocked-section').hidden = items.length === 0;
}

// ---- ban (admins) ----

let banTarget = null; // the username the ban dialog is about

function openBanDialog(username) {
  banTarget = username;
  $('ban-name').textContent = username;
  $('ban-reason').value = '';
  showError($('ban-error'));
  $('ban-dialog').showModal();
  $('ban-reason').focus();
}

async function onBanSubmit(event) {
  event.preventDefault();
  const reason = $('ban-reason').value.trim();
  if (!reason) {
    showError($('ban-error'), 'Say why (up to 500 characters).');
    return;
  }
  const duration = $('ban-duration').value;
  setBusy($('ban-form'), true);
  try {
    await ban(auth.token, banTarget, reason, duration === '' ? undefined : Number(duration));
    $('ban-dialog').close();
    $('ban-user-name').value = '';
    if ($('admin').open) refreshAdmin();
  } catch (error) {
    if (auth) showError($('ban-error'), error.message);
    if (error.code === 'forbidden') refreshAccount();
  } finally {
    setBusy($('ban-form'), false);
  }
}

// ---- the admin panel ----

let auditNext = null; // the audit page cursor: older entries before this id

function openAdmin() {
  showError($('admin-error'));
  $('role-status').hidden = true;
  $('admin').showModal();
  refreshAdmin();
}

function refreshAdmin() {
  loadBans();
  loadIpBans();
  loadAudit(null);
}

/** Show what went wrong in the admin panel (and re-check the role on `forbidden`). */
function adminFailed(error) {
  if (!auth) return;
  showError($('admin-error'), error.message);
  if (error.code === 'forbidden') refreshAccount();
}

function untilText(untilMs) {
  return untilMs === null || untilMs === undefined ? 'until lifted' : `until ${fullFormat.format(new Date(untilMs))}`;
}

/** A row of an admin list: the text parts, then one button. */
function adminRow(parts, [label, ariaLabel, action]) {
  const item = document.createElement('li');
  const text = document.createElement('span');
  text.className = 'admin-text';
  for (const [className, value] of parts) {
    const part = document.createElement('span');
    part.className = className;
    part.textContent = value;
    text.append(part);
  }
  const button = document.createElement('button');
  button.type = 'button';
  button.className = 'small';
  button.textContent = label;
  button.setAttribute('aria-label', ariaLabel);
  button.addEventListener('click', action);
  item.append(text, button);
  return item;
}

async function loadBans() {
  try {
    const list = (await bans(auth.token)).bans;
    const items = list.map((entry) => {
      const row = adminRow([
        ['name', entry.user.username],
        ['detail', `${entry.reason} · ${untilText(entry.until_ms)} · by ${entry.by}`],
      ], ['Unban', `Unban: ${entry.user.username}`, () => liftBan(entry.user.username)]);
      row.dataset.username = entry.user.username;
      return row;
    });
    $('ban-list').replaceChildren(...(items.length ? items : [emptyRow('Nobody is banned.')]));
  } catch (error) {
    adminFailed(error);
  }
}

async function liftBan(username) {
  try {
    await unban(auth.token, username);
    refreshAdmin();
  } catch (error) {
    adminFailed(error);
  }
}

async function loadIpBans() {
  try {
    const list = (await ipBans(auth.token)).ip_bans;
    const items = list.map((entry) => {
      const row = adminRow([
        ['name', entry.network],
        ['detail', `${entry.reason} · ${untilText(entry.until_ms)} · by ${entry.by}`],
      ], ['Remove', `Remove: ${entry.network}`, () => liftIpBan(entry.network)]);
      row.dataset.network = entry.network;
      return row;
    });
    $('ip-ban-list').replaceChildren(...(items.length ? items : [emptyRow('No address is banned.')]));
  } catch (error) {
    adminFailed(error);
  }
}

async function onIpBanSubmit(event) {
  event.preventDefault();
  const network = $('ip-ban-network').value.trim();
  const reason = $('ip-ban-reason').value.trim();
  if (!network || !reason) {
    showError($('admin-error'), 'A banned address needs the address (or range) and a reason.');
    return;
  }
  const duration = $('ip-ban-duration').value;
  setBusy($('ip-ban-form'), true);
  try {
    await addIpBan(auth.token, network, reason, duration === '' ? undefined : Number(duration));
    $('ip-ban-network').value = '';
    $('ip-ban-reason').value = '';
    showError($('admin-error'));
    refreshAdmin();
  } catch (error) {
    adminFailed(error);
  } finally {
    setBusy($('ip-ban-form'), false);
  }
}

async function liftIpBan(network) {
  try {
    await removeIpBan(auth.token, network);
    refreshAdmin();
  } catch (error) {
    adminFailed(error);
  }
}

async function onRoleSubmit(event) {
  event.preventDefault();
  const username = $('role-name').value.trim();
  if (!username) return;
  const promoting = event.submitter?.value !== 'demote';
  setBusy($('role-form'), true);
  try {
    const user = await (promoting ? promote : demote)(auth.token, username);
    $('role-name').value = '';
    const status = $('role-status');
    status.textContent = `${user.username} is ${user.role === 'admin' ? 'an admin' : 'a user'} now.`;
    status.hidden = false;
    showError($('admin-error'));
    loadAudit(null);
    if (user.id === auth.user.id) refreshAccount();
  } catch (error) {
    adminFailed(error);
  } finally {
    setBusy($('role-form'), false);
  }
}

const AUDIT_ACTIONS = {
  promote: 'made an admin:',
  demote: 'made a user:',
  ban: 'banned',
  unban: 'unbanned',
  ip_ban_add: 'banned the address',
  ip_ban_remove: 'unbanned the address',
  delete_message: 'deleted the message',
};

/** One page of the audit log, newest first: the first (`before` null) or the next older. */
async function loadAudit(before) {
  try {
    const page = await audit(auth.token, before ?? undefined);
    const items = page.entries.map((entry) => {
      const item = document.createElement('li');
      item.dataset.action = entry.action;
      item.dataset.target = entry.target;
      const time = document.createElement('time');
      time.dateTime = new Date(entry.at_ms).toISOString();
      time.textContent = fullFormat.format(new Date(entry.at_ms));
      const what = `${entry.actor} ${AUDIT_ACTIONS[entry.action] ?? entry.action} ${entry.target}`;
      item.append(time, ` ${what}${entry.reason ? `: ${entry.reason}` : ''}`);
      return item;
    });
    const list = $('audit-list');
    if (before === null) list.replaceChildren(...(items.length ? items : [emptyRow('Nothing yet.')]));
    else list.append(...items);
    auditNext = page.next;
    $('audit-more').hidden = page.next === null;
  } catch (error) {
    adminFailed(error);
  }
}

function emptyRow(text) {
  const item = document.createElement('li');
  item.className = 'muted';
  item.textContent = text;
  return item;
}

// ---- small helpers ----

/**
 * Replace the items of a live list without taking the keyboard focus away from whoever is
 * in it: the button that had it (matched by `keyOf`) gets it back.
 */
function replaceKeepingFocus(container, items, keyOf) {
  const active = document.activeElement;
  const focused = active && container.contains(active) ? keyOf(active) : null;
  container.replaceChildren(...items);
  if (focused === null || focused === undefined) return;
  for (const button of container.querySelectorAll('button')) {
    if (keyOf(button) === focused) {
      button.focus();
      return;
    }
  }
}

function showError(element, message) {
  element.hidden = !message;
  element.textContent = message ?? '';
}

function setBusy(form, busy) {
  for (const control of form.querySelectorAll('button, input')) control.disabled = busy;
}

main();
