// The Socket.IO 4 peer of `quibble-bench versus`: the minimal chat server Socket.IO's docs
// show (rooms, `socket.on("msg", (data, ack) => ...)` with an acknowledgement, and
// `io.to(room).emit(...)`), WebSocket transport only (the bench connects with
// `?EIO=4&transport=websocket`), nothing slowed on purpose. A client names its user and room in
// the handshake's auth payload (`{"user": U, "room": R}`, checked by a middleware); each event
// `msg` `{"c": client_id, "b": body}` is acknowledged with `{"c", "s"}` (the room's next
// sequence number) and emitted to every member of the room, its author included, as
// `msg` `{"r","a","c","s","b"}`. Like Quibble it bounds payloads and texts and refuses malformed
// input; unlike Quibble it keeps nothing on disk (its ack means "received", not "durable"), has
// no accounts, and compresses nothing (neither does Quibble).
// Usage: node socketio-server.mjs PORT (0: any free port); prints `listening PORT`.
import { createServer } from 'node:http';
import { Server } from 'socket.io';

const MAX_TEXT = 4096;
const port = Number.parseInt(process.argv[2] ?? '0', 10);
// Room name -> the last sequence number given out there.
const seqs = new Map();

const httpServer = createServer();
const io = new Server(httpServer, {
  transports: ['websocket'],
  serveClient: false,
  perMessageDeflate: false,
  httpCompression: false,
  maxHttpBufferSize: 64 * 1024,
});
io.of('/').adapter.on('delete-room', (room) => seqs.delete(room));

io.use((socket, next) => {
  const { user, room } = socket.handshake.auth ?? {};
  if (typeof user !== 'string' || !user || typeof room !== 'string' || !room) {
    next(new Error('user and room are required'));
    return;
  }
  next();
});

io.on('connection', (socket) => {
  const { user, room } = socket.handshake.auth;
  socket.join(room);
  socket.on('msg', (data, ack) => {
    if (typeof ack !== 'function') return;
    if (typeof data?.c !== 'number' || typeof data.b !== 'string' || data.b.length > MAX_TEXT) {
      ack({ error: 'expected {"c": number, "b": text}' });
      return;
    }
    const s = (seqs.get(room) ?? 0) + 1;
    seqs.set(room, s);
    ack({ c: data.c, s });
    io.to(room).emit('msg', { r: room, a: user, c: data.c, s, b: data.b });
  });
});

httpServer.listen(port, '127.0.0.1', () => console.log(`listening ${httpServer.address().port}`));
