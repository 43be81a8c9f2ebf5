// The `ws` peer of `quibble-bench versus`: the minimal chat server Node's `ws` library shows
// (a WebSocketServer, JSON text messages, a broadcast loop over a room's sockets), nothing
// slowed on purpose. A client names its user and room in the query string
// (`/?user=U&room=R`) and is told `{"t":"joined"}`; each message `{"c": client_id, "b": body}`
// is acknowledged to its sender with the room's next sequence number
// (`{"t":"ack","c","s"}`) and broadcast to every member of the room, its author included
// (`{"t":"msg","r","a","c","s","b"}`). Like Quibble it bounds frames and texts and refuses
// malformed input; unlike Quibble it keeps nothing on disk (its ack means "received", not
// "durable"), has no accounts, and compresses nothing (neither does Quibble).
// Usage: node ws-server.mjs PORT (0: any free port); prints `listening PORT` once it listens.
import { WebSocketServer, WebSocket } from 'ws';

const MAX_TEXT = 4096;
const port = Number.parseInt(process.argv[2] ?? '0', 10);
// Room name -> { seq, members: Set<WebSocket> }; a room goes away with its last member.
const rooms = new Map();

const wss = new WebSocketServer({
  host: '127.0.0.1',
  port,
  perMessageDeflate: false,
  maxPayload: 64 * 1024,
});

wss.on('connection', (ws, req) => {
  const query = new URL(req.url ?? '/', 'http://localhost').searchParams;
  const user = query.get('user');
  const name = query.get('room');
  if (!user || !name) {
    ws.close(1008, 'user and room are required');
    return;
  }
  let room = rooms.get(name);
  if (!room) {
    room = { seq: 0, members: new Set() };
    rooms.set(name, room);
  }
  room.members.add(ws);
  ws.on('close', () => {
    room.members.delete(ws);
    if (room.members.size === 0) rooms.delete(name);
  });
  ws.on('message', (data, isBinary) => {
    let msg;
    try {
      msg = isBinary ? null : JSON.parse(data);
    } catch {
      msg = null;
    }
    if (typeof msg?.c !== 'number' || typeof msg.b !== 'string' || msg.b.length > MAX_TEXT) {
      ws.send(JSON.stringify({ t: 'error', reason: 'expected {"c": number, "b": text}' }));
      return;
    }
    room.seq += 1;
    ws.send(JSON.stringify({ t: 'ack', c: msg.c, s: room.seq }));
    const out = JSON.stringify({ t: 'msg', r: name, a: user, c: msg.c, s: room.seq, b: msg.b });
    for (const member of room.members) {
      if (member.readyState === WebSocket.OPEN) member.send(out);
    }
  });
  ws.send(JSON.stringify({ t: 'joined', r: name }));
});

wss.on('listening', () => console.log(`listening ${wss.address().port}`));
