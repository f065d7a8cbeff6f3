'use strict';
// Tiny stand-in for Gitter's REST API, only what server.js asks: who owns a
// token, and which rooms a user is in. Used by check.sh.
//   token "a" x 40 is user u1, who is in room r1;
//   POST /_stub/join/<roomId> adds a room to u1's list (to prove that
//   server.js does not cache room lists).

const http = require('http');

const GOOD_TOKEN = 'a'.repeat(40);
const rooms = [{ id: 'r1', name: 'org/r1' }];

http.createServer((req, res) => {
  const send = (status, body) => {
    res.writeHead(status, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify(body));
  };
  const authed = req.headers.authorization === 'Bearer ' + GOOD_TOKEN;
  let m;
  if (req.method === 'POST' && (m = /^\/_stub\/join\/(\w+)$/.exec(req.url))) {
    rooms.push({ id: m[1], name: 'org/' + m[1] });
    return send(200, { ok: true });
  }
  if (req.method !== 'GET') return send(405, { error: 'Method not allowed' });
  if (!authed) return send(401, { error: 'Unauthorized' });
  if (req.url === '/v1/user/me') return send(200, { id: 'u1', username: 'user1', displayName: 'User One' });
  if (req.url === '/v1/user/u1/rooms') return send(200, rooms);
  send(404, { error: 'Not Found' });
}).listen(Number(process.env.STUB_PORT || 0), '127.0.0.1', function () {
  console.log('listening http://127.0.0.1:' + this.address().port);
});
