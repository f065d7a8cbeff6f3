#!/usr/bin/env bash
# Smoke test of server.js: a stub Gitter REST API + the Faye server, driven
# with plain curl long-polling POSTs. Exits non-zero on the first failure and
# always stops the processes it started.
set -euo pipefail

cd "$(dirname "$0")"
[ -d node_modules/faye ] || npm ci --no-audit --no-fund >/dev/null

WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

GOOD=$(printf 'a%.0s' {1..40})
SECRET="s3cret-$$-$RANDOM"
PASS=0

fail() { echo "FAIL: $*" >&2; echo "--- faye log" >&2; cat "$WORK/faye.log" >&2 || true; exit 1; }

# Wait for a "listening http://127.0.0.1:PORT" line in a log; print PORT.
port_of() {
  for _ in $(seq 100); do
    local p
    p=$(sed -n 's|.*listening http://127.0.0.1:\([0-9]*\).*|\1|p' "$1" | head -1)
    [ -n "$p" ] && { echo "$p"; return; }
    sleep 0.1
  done
  cat "$1" >&2; return 1
}

# expect DESCRIPTION JSON JS-EXPR: JS-EXPR is evaluated with r = parsed JSON.
expect() {
  if node -e 'const r = JSON.parse(process.argv[1]); if (!eval(process.argv[2])) process.exit(1)' "$2" "$3" 2>/dev/null; then
    PASS=$((PASS + 1)); echo "ok   - $1"
  else
    fail "$1: expected $3, got: $2"
  fi
}

# jsget JSON JS-EXPR: print a value from a JSON document.
jsget() { node -e 'const r = JSON.parse(process.argv[1]); process.stdout.write(String(eval(process.argv[2])))' "$1" "$2"; }

node stub-gitter.js >"$WORK/stub.log" 2>&1 & PIDS+=($!)
STUB_PORT=$(port_of "$WORK/stub.log")

FAYE_PORT=0 FAYE_TIMEOUT=3 GITTER_API_URL="http://127.0.0.1:$STUB_PORT" FAYE_SECRET="$SECRET" \
  node server.js >"$WORK/faye.log" 2>&1 & PIDS+=($!)
FAYE_PORT=$(port_of "$WORK/faye.log")
BASE="http://127.0.0.1:$FAYE_PORT"
for _ in $(seq 50); do curl -fsS "$BASE/health" >/dev/null 2>&1 && break; sleep 0.1; done
[ "$(curl -fsS "$BASE/health")" = ok ] || fail "health"
[ "$(curl -s -o /dev/null -w '%{http_code}' "$BASE/other")" = 404 ] || fail "non-Faye path is not 404"
echo "ok   - /health is 200 ok, other paths 404"; PASS=$((PASS + 1))

bx() { curl -sS --max-time 15 -H 'Content-Type: application/json' -d "$1" "$BASE/bayeux"; }
HS='"channel":"/meta/handshake","version":"1.0","supportedConnectionTypes":["long-polling"]'

R=$(bx "[{$HS,\"id\":\"1\"}]")
expect "handshake without token is refused, never retried" "$R" \
  'r[0].successful === false && r[0].error === "401::Access token required" && r[0].advice.reconnect === "none" && r[0].advice.interval === 864000000'

R=$(bx "[{$HS,\"id\":\"1\",\"ext\":{\"token\":\"$(printf 'b%.0s' {1..40})\"}}]")
expect "handshake with a bad token" "$R" \
  'r[0].successful === false && r[0].error === "401::Invalid access token" && r[0].advice.reconnect === "none"'

R=$(bx "[{$HS,\"id\":\"1\",\"ext\":{\"token\":\"$GOOD\"}}]")
expect "handshake with the good token gives ext.userId" "$R" \
  'r[0].successful === true && typeof r[0].clientId === "string" && r[0].ext.userId === "u1"'
CID=$(jsget "$R" 'r[0].clientId')

sub() { bx "[{\"channel\":\"/meta/subscribe\",\"clientId\":\"${2:-$CID}\",\"subscription\":\"$1\",\"id\":\"2\"}]"; }

expect "subscribe own room r1" "$(sub /api/v1/rooms/r1/chatMessages)" 'r[0].successful === true'
expect "subscribe own user rooms" "$(sub /api/v1/user/u1/rooms)" 'r[0].successful === true'
expect "subscribe own token" "$(sub /api/v1/token/$GOOD)" 'r[0].successful === true'
expect "subscribe ping" "$(sub /api/v1/ping)" 'r[0].successful === true'
expect "subscribe other room r2 is 403" "$(sub /api/v1/rooms/r2/chatMessages)" \
  'r[0].successful === false && r[0].error === "403::Authorisation denied."'
expect "subscribe other user is 403" "$(sub /api/v1/user/u2/rooms)" \
  'r[0].successful === false && r[0].error === "403::Authorisation denied."'
expect "subscribe unknown channel is 404" "$(sub /api/v1/nope)" \
  'r[0].successful === false && r[0].error === "404::Unknown subscription /api/v1/nope"'
# server.js sets "401::Client <id> not authenticated", but for a clientId Faye
# itself does not know, Faye's own check runs after the extension and replaces
# it with "401:<id>:Unknown client" (as on Gitter, which also runs on Faye).
expect "subscribe from an unknown client is 401 + handshake advice" "$(sub /api/v1/ping nosuchclient)" \
  'r[0].successful === false && r[0].error === "401:nosuchclient:Unknown client" && r[0].advice.reconnect === "handshake" && r[0].advice.interval === 2000'
curl -fsS -X POST "http://127.0.0.1:$STUB_PORT/_stub/join/r2" >/dev/null
expect "room joined later becomes subscribable (no cache)" "$(sub /api/v1/rooms/r2/chatMessages)" 'r[0].successful === true'

R=$(bx "[{\"channel\":\"/api/v1/rooms/r1/chatMessages\",\"clientId\":\"$CID\",\"data\":{\"x\":1},\"id\":\"3\"}]")
expect "client publish without secret is refused" "$R" \
  'r[0].successful === false && r[0].error === "403::Push access denied"'
R=$(bx '[{"channel":"/api/v1/rooms/r1/chatMessages","data":{"x":1},"ext":{"secret":"wrong"}}]')
expect "server publish with a wrong secret is refused" "$R" \
  'r[0].successful === false && r[0].error === "403::Push access denied"'

# The fake Gitter's publish: no handshake, no clientId, just the secret.
pub() { bx "[{\"channel\":\"/api/v1/rooms/r1/chatMessages\",\"data\":{\"operation\":\"create\",\"model\":{\"id\":\"$1\",\"text\":\"hi\"}},\"ext\":{\"secret\":\"$SECRET\"}}]"; }
CONNECT="[{\"channel\":\"/meta/connect\",\"clientId\":\"$CID\",\"connectionType\":\"long-polling\",\"id\":\"4\"}]"

expect "server publish with the secret is accepted" "$(pub m1)" 'r[0].successful === true'
R=$(bx "$CONNECT")
expect "queued publish arrives in the next /meta/connect reply, secret stripped, ext.c=1" "$R" \
  'const m = r.find(x => x.channel === "/api/v1/rooms/r1/chatMessages"); r.find(x => x.channel === "/meta/connect").successful && m && m.data.operation === "create" && m.data.model.id === "m1" && m.ext.c === 1 && !("secret" in m.ext)'

# A held long-poll must be answered as soon as the publish comes in.
START=$(date +%s%N)
bx "$CONNECT" >"$WORK/poll.json" & POLL=$!
sleep 0.5
pub m2 >/dev/null
wait "$POLL"
MS=$(( ($(date +%s%N) - START) / 1000000 ))
expect "held /meta/connect is answered by a publish (${MS} ms), ext.c=2" "$(cat "$WORK/poll.json")" \
  'const m = r.find(x => x.channel === "/api/v1/rooms/r1/chatMessages"); m && m.data.model.id === "m2" && m.ext.c === 2'
[ "$MS" -lt 2500 ] || fail "held connect waited ${MS} ms, i.e. for the timeout, not the publish"

R=$(bx "[{\"channel\":\"/meta/connect\",\"clientId\":\"nosuchclient\",\"connectionType\":\"long-polling\",\"id\":\"5\"}]")
expect "connect from an unknown client is 401 + handshake advice" "$R" \
  'r[0].successful === false && r[0].error.startsWith("401:") && r[0].advice.reconnect === "handshake" && r[0].advice.interval === 2000'

if grep -q "$GOOD" "$WORK/faye.log"; then fail "the token appears in the server log"; fi
echo "ok   - the token never appears in the server log"; PASS=$((PASS + 1))

echo "--- faye log"; cat "$WORK/faye.log"
echo "check.sh: $PASS passed, 0 failed"
