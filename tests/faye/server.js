'use strict';
// A real Faye (Bayeux) server that mimics Gitter's realtime endpoint, so the
// bridge's Rust Bayeux client can be tested against the protocol's reference
// implementation rather than against our own reading of the spec.
//
// Gitter's rules (bayeux/authenticator.js, authorisor.js, push-only.js) are
// re-created as one Faye server extension; token and room checks go to a
// (fake) Gitter REST API at $GITTER_API_URL, exactly as Gitter's realtime
// server asks its own API.

const http = require('http');
const faye = require('faye');

const PORT = Number(process.env.FAYE_PORT || 0); // 0: pick a free port, printed below
const TIMEOUT = Number(process.env.FAYE_TIMEOUT || 25); // long-poll hold, seconds
const API = (process.env.GITTER_API_URL || '').replace(/\/+$/, '');
const SECRET = process.env.FAYE_SECRET || '';

if (!API || !SECRET) {
  // An empty secret would make "ext.secret === SECRET" trivially satisfiable.
  console.error('GITTER_API_URL and FAYE_SECRET must be set');
  process.exit(2);
}

// Never log a credential: at most its first 4 characters.
const redact = (s) => (typeof s === 'string' ? s.slice(0, 4) + '…' : String(s));
// Token channels carry the token in the channel name itself.
const showChannel = (ch) => String(ch).replace(/^(\/api\/v1\/token\/)(.*)$/, (_, p, t) => p + redact(t));
const log = (...parts) => console.log(new Date().toISOString(), ...parts);

// clientId -> { userId, token }: the only state kept across messages (a room
// joined later must become subscribable, so room lists are never cached).
const clients = new Map();
// clientId -> last ext.c sent; Gitter numbers the data messages it delivers.
const sequence = new Map();
// An incoming handshake has no clientId yet, so the validated user is parked
// under the HTTP request object + message id; Faye hands the outgoing reply
// the very same request object (and the same id), which makes the pairing
// exact even when several clients use the same message ids concurrently.
const pendingHandshakes = new WeakMap(); // request -> Map(id -> {userId, token})
// Delivered data messages have had their clientId stripped by Faye, but they
// go out through the request that carried the client's /meta/connect (HTTP
// long-polling) or through the WebSocket's upgrade request, so remembering
// which client last connected on a request tells us the recipient.
const connectRequests = new WeakMap(); // request -> clientId

// GET a path of the Gitter API with the user's token; returns {status, body}.
async function gitterGet(path, token) {
  const res = await fetch(API + path, {
    headers: { Authorization: 'Bearer ' + token, Accept: 'application/json' },
    signal: AbortSignal.timeout(10000),
  });
  let body = null;
  try { body = await res.json(); } catch (_) { /* non-JSON error page */ }
  return { status: res.status, body };
}

async function authenticate(message, request) {
  const token = message.ext && message.ext.token;
  if (typeof token !== 'string') {
    message.error = '401::Access token required';
    return log('refused handshake:', message.error);
  }
  let res;
  try { res = await gitterGet('/v1/user/me', token); } catch (e) { res = { status: 0 }; }
  if (res.status === 401) {
    message.error = '401::Invalid access token';
  } else if (res.status !== 200 || !res.body || res.body.id == null) {
    message.error = '500::Gitter unavailable';
  } else {
    if (!request) return; // local (in-process) client: nothing to correlate with
    if (!pendingHandshakes.has(request)) pendingHandshakes.set(request, new Map());
    pendingHandshakes.get(request).set(String(message.id), { userId: String(res.body.id), token });
    return;
  }
  log('refused handshake:', message.error, 'token=' + redact(token), 'api-status=' + res.status);
}

// Returns an error string, or null when the client may subscribe to channel.
async function authorise(client, channel) {
  let m;
  if ((m = /^\/api\/v1\/user\/(\w+)(?:\/rooms)?$/.exec(channel))) {
    return m[1] === client.userId ? null : '403::Authorisation denied.';
  }
  if ((m = /^\/api\/v1\/token\/(\w+)$/.exec(channel))) {
    return m[1] === client.token ? null : '403::Authorisation denied.';
  }
  if ((m = /^\/api\/v1\/rooms\/(\w+)(?:\/(?:chatMessages|users|events))?$/.exec(channel))) {
    let res;
    try {
      res = await gitterGet('/v1/user/' + encodeURIComponent(client.userId) + '/rooms', client.token);
    } catch (e) {
      return '500::Gitter unavailable';
    }
    const rooms = Array.isArray(res.body) ? res.body : [];
    return res.status === 200 && rooms.some((r) => r && r.id === m[1]) ? null : '403::Authorisation denied.';
  }
  if (/^\/api\/v1\/ping(?:\/\w+)?$/.test(channel)) return null;
  return '404::Unknown subscription ' + channel;
}

async function checkSubscribe(message) {
  const client = clients.get(message.clientId);
  if (!client) {
    message.error = '401::Client ' + message.clientId + ' not authenticated';
    return log('refused subscribe:', message.error);
  }
  for (const channel of [].concat(message.subscription || [])) {
    const error = await authorise(client, channel);
    if (error) {
      message.error = error;
      return log('refused subscribe:', showChannel(channel), error,
        'client=' + message.clientId, 'user=' + client.userId);
    }
    log('subscribe ok:', showChannel(channel), 'client=' + message.clientId, 'user=' + client.userId);
  }
}

function checkPublish(message) {
  const ext = message.ext;
  if (ext && typeof ext === 'object' && ext.secret === SECRET) {
    // Subscribers must never see the secret; Faye delivers this very object.
    delete ext.secret;
    if (Object.keys(ext).length === 0) delete message.ext;
    return;
  }
  message.error = '403::Push access denied';
  log('refused publish:', showChannel(message.channel), 'client=' + (message.clientId || '-'));
}

const gitterRules = {
  incoming(message, request, callback) {
    const done = () => callback(message);
    const fail = (e) => { message.error = '500::Gitter unavailable'; log('error:', e && e.message); done(); };
    switch (message.channel) {
      case '/meta/handshake':
        return authenticate(message, request).then(done, fail);
      case '/meta/subscribe':
        return checkSubscribe(message).then(done, fail);
      case '/meta/connect':
        if (request && message.clientId) connectRequests.set(request, message.clientId);
        return done();
      default:
        if (!String(message.channel).startsWith('/meta/')) checkPublish(message);
        return done();
    }
  },

  outgoing(message, request, callback) {
    if (message.channel === '/meta/handshake') {
      const pending = request && pendingHandshakes.get(request);
      const user = pending && pending.get(String(message.id));
      if (pending) pending.delete(String(message.id));
      if (user && message.successful && message.clientId) {
        clients.set(message.clientId, user);
        message.ext = Object.assign({}, message.ext, { userId: user.userId });
        log('handshake ok: client=' + message.clientId, 'user=' + user.userId, 'token=' + redact(user.token));
      }
    }

    // Gitter's advice: a rejected handshake must not be retried (the token is
    // bad); any other 401 means "handshake again", soon.
    if (typeof message.error === 'string' && message.error.startsWith('401:')) {
      message.advice = message.channel === '/meta/handshake'
        ? { reconnect: 'none', interval: 864000000 }
        : { reconnect: 'handshake', interval: 2000 };
    }

    // A delivered data message (a publish's own reply has no "data").
    if (!String(message.channel).startsWith('/meta/') && message.data !== undefined) {
      const clientId = request && connectRequests.get(request);
      if (clientId) {
        const c = (sequence.get(clientId) || 0) + 1;
        sequence.set(clientId, c);
        // Faye copies the published message per recipient, so this ext is ours.
        message.ext = Object.assign({}, message.ext, { c });
      }
    }
    callback(message);
  },
};

const bayeux = new faye.NodeAdapter({ mount: '/bayeux', timeout: TIMEOUT });
bayeux.addExtension(gitterRules);
// Faye fires this on /meta/disconnect and when a client's session times out.
bayeux.on('disconnect', (clientId) => { clients.delete(clientId); sequence.delete(clientId); });

// Faye's attach() takes over /bayeux and passes everything else to this handler.
const server = http.createServer((req, res) => {
  if (req.method === 'GET' && req.url === '/health') {
    res.writeHead(200, { 'Content-Type': 'text/plain' });
    return res.end('ok');
  }
  res.writeHead(404, { 'Content-Type': 'text/plain' });
  res.end('not found');
});
bayeux.attach(server);

server.listen(PORT, '127.0.0.1', () => {
  // check.sh reads the port from this line when FAYE_PORT=0.
  log('listening http://127.0.0.1:' + server.address().port + '/bayeux timeout=' + TIMEOUT + 's api=' + API);
});

// Held long-polls would keep a graceful close waiting for their timeout: a test server stops
// at once when the script that started it says so.
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => process.exit(0));
}
