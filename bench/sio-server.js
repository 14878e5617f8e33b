// A Socket.IO presence server of the kind apps hand-roll, as a baseline for
// presenced-bench. Two designs, chosen with --mode:
//
//   full  (the seed-style design): Map<userId, Set<socketId>>, a JWT check
//         on connect, and on every change the FULL list is broadcast: a
//         room's whole member list to the whole room on every enter/leave,
//         and the whole online/away map to every client that watches
//         statuses on every status change.
//   delta (the fairer variant): the same state, but the entrant alone gets
//         the full list (as the ack of its request) and everybody else gets
//         only the change (join/leave to the room, presence to the watchers
//         of that one user).
//
// Membership is per user, aggregated over the user's sockets (join on the
// first socket, leave on the last). No grace window: a socket that goes
// ends its presence at once.
//
// Events (client -> server; acks carry the snapshot):
//   enter {room, data}   -> ack {room, members:[{user,data}]}   (full: + broadcast)
//   subscribe {room}     -> ack {room, members}                 (observer, not a member)
//   leave {room}
//   watch {users:[...]}  -> ack {users:{id: status}}
//   status {status}      ('online' | 'away')
// Server -> client:
//   full:  members {room, members}, online {user: status, ...}
//   delta: join {room, member}, leave {room, user}, presence {user, status}
//
// Usage: node sio-server.js --port 7500 --secret S --mode full|delta
'use strict';

const http = require('http');
const { Server } = require('socket.io');
const jwt = require('jsonwebtoken');

function arg(name, dflt) {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : dflt;
}
const PORT = Number(arg('port', '7500'));
const SECRET = arg('secret', 'secret');
const MODE = arg('mode', 'delta');
if (MODE !== 'full' && MODE !== 'delta') {
  console.error(`--mode must be full or delta, not ${MODE}`);
  process.exit(2);
}

const httpServer = http.createServer((req, res) => {
  res.writeHead(404);
  res.end();
});
const io = new Server(httpServer, {
  transports: ['websocket'],
  serveClient: false,
  perMessageDeflate: false,
  maxHttpBufferSize: 64 * 1024,
});

/** userId -> Set<socketId> */
const online = new Map();
/** userId -> 'online' | 'away' (user level: away when every socket is away) */
const userStatus = new Map();
/** room -> Map<userId, {data, sockets: Set<socketId>}> */
const rooms = new Map();

function memberList(room) {
  const m = rooms.get(room);
  if (!m) return [];
  const out = [];
  for (const [user, e] of m) out.push({ user, data: e.data });
  return out;
}

function roomChanged(socket, room, change) {
  if (MODE === 'full') {
    io.to(`r:${room}`).emit('members', { room, members: memberList(room) });
  } else if (change.join) {
    socket.to(`r:${room}`).emit('join', { room, member: change.join });
  } else if (change.leave) {
    socket.to(`r:${room}`).emit('leave', { room, user: change.leave });
  }
}

function computeStatus(user) {
  const sockets = online.get(user);
  if (!sockets || sockets.size === 0) return 'offline';
  for (const id of sockets) {
    const s = io.sockets.sockets.get(id);
    if (s && s.data.status !== 'away') return 'online';
  }
  return 'away';
}

function statusChanged(user) {
  const now = computeStatus(user);
  const before = userStatus.get(user) || 'offline';
  if (now === before) return;
  if (now === 'offline') userStatus.delete(user);
  else userStatus.set(user, now);
  if (MODE === 'full') {
    io.to('watchers').emit('online', Object.fromEntries(userStatus));
  } else {
    io.to(`w:${user}`).emit('presence', { user, status: now });
  }
}

function leaveRoom(socket, room) {
  const m = rooms.get(room);
  const user = socket.data.user;
  if (!socket.data.entered.delete(room) || !m) return;
  const e = m.get(user);
  if (e) {
    e.sockets.delete(socket.id);
    if (e.sockets.size === 0) {
      m.delete(user);
      roomChanged(socket, room, { leave: user });
    }
  }
  if (m.size === 0) rooms.delete(room);
}

io.use((socket, next) => {
  const token = socket.handshake.auth && socket.handshake.auth.token;
  try {
    const claims = jwt.verify(token, SECRET, { algorithms: ['HS256'] });
    if (!claims.sub) throw new Error('no sub');
    socket.data.user = String(claims.sub);
    next();
  } catch (e) {
    next(new Error('unauthorized'));
  }
});

io.on('connection', (socket) => {
  const user = socket.data.user;
  socket.data.entered = new Set();
  socket.data.status = 'online';
  let set = online.get(user);
  if (!set) {
    set = new Set();
    online.set(user, set);
  }
  set.add(socket.id);
  statusChanged(user);

  const ack = (cb, v) => {
    if (typeof cb === 'function') cb(v);
  };

  socket.on('enter', (msg, cb) => {
    const room = msg && String(msg.room);
    if (!room) return ack(cb, { error: 'bad_request' });
    const data = (msg.data && typeof msg.data === 'object') ? msg.data : {};
    socket.join(`r:${room}`);
    socket.data.entered.add(room);
    let m = rooms.get(room);
    if (!m) {
      m = new Map();
      rooms.set(room, m);
    }
    let e = m.get(user);
    const isNew = !e;
    if (!e) {
      e = { data, sockets: new Set() };
      m.set(user, e);
    } else {
      e.data = data;
    }
    e.sockets.add(socket.id);
    if (MODE === 'full') {
      // The broadcast reaches the entrant too; the ack confirms.
      roomChanged(socket, room, {});
      ack(cb, { room, ok: true });
    } else {
      ack(cb, { room, members: memberList(room) });
      if (isNew) roomChanged(socket, room, { join: { user, data } });
    }
  });

  socket.on('subscribe', (msg, cb) => {
    const room = msg && String(msg.room);
    if (!room) return ack(cb, { error: 'bad_request' });
    socket.join(`r:${room}`);
    ack(cb, { room, members: memberList(room) });
  });

  socket.on('leave', (msg, cb) => {
    const room = msg && String(msg.room);
    leaveRoom(socket, room);
    socket.leave(`r:${room}`);
    ack(cb, { room, ok: true });
  });

  socket.on('watch', (msg, cb) => {
    const users = (msg && Array.isArray(msg.users)) ? msg.users.slice(0, 1000) : [];
    if (MODE === 'full') {
      socket.join('watchers');
    } else {
      for (const u of users) socket.join(`w:${u}`);
    }
    const out = {};
    for (const u of users) out[u] = userStatus.get(String(u)) || 'offline';
    ack(cb, { users: out });
  });

  socket.on('status', (msg) => {
    const s = msg && msg.status === 'away' ? 'away' : 'online';
    socket.data.status = s;
    statusChanged(user);
  });

  socket.on('disconnect', () => {
    for (const room of [...socket.data.entered]) leaveRoom(socket, room);
    const sockets = online.get(user);
    if (sockets) {
      sockets.delete(socket.id);
      if (sockets.size === 0) online.delete(user);
    }
    statusChanged(user);
  });
});

httpServer.listen(PORT, '127.0.0.1', () => {
  console.log(`listening on http://127.0.0.1:${PORT} (socket.io ${MODE})`);
});

function shutdown() {
  io.close();
  process.exit(0);
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
