#!/usr/bin/env bash
# End-to-end test: the real bridge between a real Synapse and the fake Gitter, driven by real
# Matrix users (matrix-nio) through the Python suite in tests/e2e/.
#
#   scripts/e2e-synapse.sh [extra pytest arguments]
#
# Steps: a virtualenv with Synapse, matrix-nio and pytest (reused when its pins match);
# `cargo build` of gitter-bridge and bridge-sim (debug, the profile the cargo tests build);
# a work dir with Synapse's config (loopback only), the bridge's config.toml and the
# registration `gitter-bridge generate-registration` writes; then Synapse, the fake Gitter and
# the bridge are started, each waited for, and the suite runs. Every process started here is
# stopped by its PID when the script ends, whatever the outcome; the exit code is the suite's.
#
# Environment (all optional):
#   E2E_VENV            virtualenv to create or reuse (default: .e2e/venv in the repo)
#   E2E_PYTHON          interpreter that creates it (default: python3; Synapse needs >= 3.10)
#   E2E_WORK_DIR        where configs, databases and logs go (default: a new dir under $TMPDIR)
#   E2E_KEEP_WORK=1     keep the work dir after a passing run (a failing run always keeps it)
#   E2E_SUITE_TIMEOUT   seconds the suite may take before it is stopped (default: 900)
#   E2E_BRIDGE_LOG_LEVEL  the bridge's logging.level (default: info)
#   E2E_PROFILE         debug (default) or release: the build of the bridge and the fakes;
#                       test_07_cpu's figure (bridge CPU per Synapse CPU) means something
#                       only for release
#   CARGO_TARGET_DIR    honoured, as by cargo itself
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

VENV="${E2E_VENV:-$ROOT/.e2e/venv}"
PYTHON="${E2E_PYTHON:-python3}"
REQUIREMENTS="$ROOT/tests/e2e/requirements.txt"
SERVER_NAME="localhost"
BOT_LOCALPART="gitterbot"
APPSERVICE_ID="gitter-e2e"

log() { printf 'e2e: %s\n' "$*" >&2; }

# ---------------------------------------------------------------------------------------------
# Processes: every PID started here is remembered and stopped on exit.

PIDS=()         # "name:pid" of the servers this script started
SUITE_PID=""
BRIDGE_PID_FILE=""
WORK=""

# True while $1 is a live process (a zombie counts as gone).
alive() {
    kill -0 "$1" 2>/dev/null || return 1
    local state
    state="$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null || true)"
    [[ "$state" != "Z" ]]
}

# stop NAME PID: SIGTERM, up to 15 s to exit, then SIGKILL.
stop() {
    local name="$1" pid="$2" i
    alive "$pid" || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 150; i++)); do
        alive "$pid" || break
        sleep 0.1
    done
    if alive "$pid"; then
        log "$name (pid $pid) ignored SIGTERM; killing it"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

# The bridge's current PID: the suite restarts the bridge and records the new PID in the file.
# Only a PID that still runs gitter-bridge is trusted (never kill a recycled PID).
bridge_pid() {
    [[ -n "$BRIDGE_PID_FILE" && -s "$BRIDGE_PID_FILE" ]] || return 1
    local pid
    pid="$(cat "$BRIDGE_PID_FILE")"
    [[ "$pid" =~ ^[0-9]+$ ]] && alive "$pid" || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q 'gitter-bridge' || return 1
    echo "$pid"
}

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    local pid entry
    if [[ -n "$SUITE_PID" ]]; then
        stop suite "$SUITE_PID"
    fi
    if pid="$(bridge_pid)"; then
        # The real bridge process after the suite's traffic: what an operator would see.
        log "gitter-bridge (pid $pid) memory: $(grep -E '^Vm(HWM|RSS)' "/proc/$pid/status" 2>/dev/null | tr -s ' \t\n' ' ')"
        stop gitter-bridge "$pid"
    fi
    # Newest first: the fake Gitter, then Synapse.
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        entry="${PIDS[$i]}"
        stop "${entry%%:*}" "${entry##*:}"
    done
    if [[ -n "$WORK" ]]; then
        if ((status != 0)); then
            log "FAILED (exit $status). Logs are in $WORK:"
            log "  bridge:      $WORK/bridge.log"
            log "  fake Gitter: $WORK/fake-gitter.log"
            log "  Faye:        $WORK/faye.log"
            log "  Synapse:     $WORK/synapse/homeserver.log (and $WORK/synapse.out)"
            log "  suite:       $WORK/suite.log"
            if [[ -s "$WORK/bridge.log" ]]; then
                log "last lines of the bridge's log:"
                tail -n 40 "$WORK/bridge.log" >&2 || true
            fi
        elif [[ "${E2E_KEEP_WORK:-0}" == 1 ]]; then
            log "work dir kept: $WORK"
        else
            rm -rf "$WORK"
        fi
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# wait_http NAME URL PID SECONDS: until URL answers 2xx, while PID lives, at most SECONDS.
wait_http() {
    local name="$1" url="$2" pid="$3" limit="$4" start=$SECONDS
    until curl -sf -o /dev/null --max-time 2 "$url"; do
        if ! alive "$pid"; then
            log "$name exited before it was ready"
            return 1
        fi
        if ((SECONDS - start >= limit)); then
            log "$name not ready after ${limit}s ($url)"
            return 1
        fi
        sleep 0.3
    done
    log "$name ready ($((SECONDS - start))s)"
}

# ---------------------------------------------------------------------------------------------
# 1. The virtualenv (reused when it was made from the same requirements).

stamp="$VENV/.e2e-requirements"
if [[ -x "$VENV/bin/python" ]] && cmp -s "$REQUIREMENTS" "$stamp"; then
    log "reusing virtualenv $VENV"
else
    log "creating virtualenv $VENV (Synapse, matrix-nio, pytest)"
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$REQUIREMENTS"
    cp "$REQUIREMENTS" "$stamp"
fi
PY="$VENV/bin/python"

# The reference Faye server (tests/faye: the npm `faye` package with Gitter's rules as an
# extension), which the bridge reads Gitter's realtime API from. Installed from the lock file
# once; without Node.js the suite runs on the per-room HTTP streams and the realtime tests
# skip, saying why.
FAYE_DIR="$ROOT/tests/faye"
if [[ "${E2E_FAYE:-1}" == 1 ]] && command -v node >/dev/null && command -v npm >/dev/null; then
    if [[ ! -d "$FAYE_DIR/node_modules/faye" ]] || ! cmp -s "$FAYE_DIR/package-lock.json" "$FAYE_DIR/node_modules/.package-lock.json"; then
        log "installing the Faye test server (npm ci in tests/faye)"
        (cd "$FAYE_DIR" && npm ci --no-audit --no-fund --loglevel=error) >&2
    fi
    # Its own rules first (handshake, channel rules, publishes), against a stub Gitter.
    log "checking the Faye test server (tests/faye/check.sh)"
    bash "$FAYE_DIR/check.sh" >&2
    FAYE=1
else
    log "no Node.js (or E2E_FAYE=0): the bridge reads Gitter over HTTP streams; realtime tests skip"
    FAYE=0
fi

# ---------------------------------------------------------------------------------------------
# 2. The binaries (debug: the build `cargo test` already made).

PROFILE="${E2E_PROFILE:-debug}"
case "$PROFILE" in
    debug) PROFILE_FLAG=() ;;
    release) PROFILE_FLAG=(--release) ;;
    *) log "E2E_PROFILE must be debug or release, not '$PROFILE'"; exit 2 ;;
esac
log "cargo build ${PROFILE_FLAG[*]} --bin gitter-bridge --bin bridge-sim"
cargo build "${PROFILE_FLAG[@]}" --bin gitter-bridge --bin bridge-sim
TARGET_DIR="$(cargo metadata --format-version 1 --no-deps |
    "$PY" -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
BRIDGE_BIN="$TARGET_DIR/$PROFILE/gitter-bridge"
SIM_BIN="$TARGET_DIR/$PROFILE/bridge-sim"

# ---------------------------------------------------------------------------------------------
# 3. The work dir: ports, Synapse's config, the bridge's config and registration.

work="${E2E_WORK_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/gitter-e2e.XXXXXX")}"
mkdir -p "$work"
if [[ -n "$(ls -A "$work")" ]]; then
    log "work dir $work is not empty (every run needs fresh databases)"
    exit 2
fi
WORK="$(cd "$work" && pwd)"
log "work dir $WORK"

# Six free loopback ports (bound together so they differ, then released for the servers).
read -r HS_PORT GITTER_PORT STREAM_PORT AS_PORT WEB_PORT FAYE_PORT < <("$PY" - <<'EOF'
import socket
socks = [socket.socket() for _ in range(6)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))
for s in socks:
    s.close()
EOF
)
HS_URL="http://127.0.0.1:$HS_PORT"
GITTER_URL="http://127.0.0.1:$GITTER_PORT"
GITTER_STREAM_URL="http://127.0.0.1:$STREAM_PORT"
AS_URL="http://127.0.0.1:$AS_PORT"
WEB_URL="http://127.0.0.1:$WEB_PORT"
FAYE_URL="http://127.0.0.1:$FAYE_PORT/bayeux"
FAYE_SECRET="$("$PY" -c 'import secrets; print(secrets.token_hex(16))')"
if ((FAYE)); then
    FAYE_LINE="faye_url = \"$FAYE_URL\""
else
    FAYE_LINE=""
fi

CONFIG="$WORK/config.toml"
REGISTRATION="$WORK/registration.yaml"
cat >"$CONFIG" <<EOF
# Written by scripts/e2e-synapse.sh for one end-to-end run.
[homeserver]
url = "$HS_URL"
domain = "$SERVER_NAME"

[appservice]
id = "$APPSERVICE_ID"
bind = "127.0.0.1:$AS_PORT"
url = "$AS_URL"
as_token = "CHANGE_ME"
hs_token = "CHANGE_ME"
bot_localpart = "$BOT_LOCALPART"
ghost_template = "gitter_{username}"
ghost_displayname_template = "{displayName} (Gitter)"

[gitter]
api_url = "$GITTER_URL"
stream_url = "$GITTER_STREAM_URL"
$FAYE_LINE
oauth_authorize_url = "$GITTER_URL/login/oauth/authorize"
oauth_token_url = "$GITTER_URL/login/oauth/token"
client_id = "sim-client-id"
client_secret = "sim-client-secret"
# The fake Gitter's image files are on loopback.
media_allow_private_addresses = true

[web]
bind = "127.0.0.1:$WEB_PORT"
public_url = "$WEB_URL"

[store]
path = "gitter-bridge.redb"

[bridge]
allow_all = true
open_portals_on_login = true

[logging]
level = "${E2E_BRIDGE_LOG_LEVEL:-info}"
format = "pretty"
EOF

log "gitter-bridge generate-registration"
"$BRIDGE_BIN" generate-registration -c "$CONFIG" -o "$REGISTRATION" --write-tokens >/dev/null

mkdir -p "$WORK/synapse"
(cd "$WORK/synapse" && "$PY" -m synapse.app.homeserver --server-name "$SERVER_NAME" \
    --generate-config --report-stats=no \
    --config-path "$WORK/synapse/homeserver.yaml" --data-directory "$WORK/synapse") \
    >"$WORK/synapse.out" 2>&1
"$PY" "$ROOT/tests/e2e/configure_synapse.py" \
    "$WORK/synapse/homeserver.yaml" "$HS_PORT" "$REGISTRATION"

# ---------------------------------------------------------------------------------------------
# 4. The servers.

log "starting Synapse on $HS_URL"
(cd "$WORK/synapse" && exec "$PY" -m synapse.app.homeserver \
    --config-path "$WORK/synapse/homeserver.yaml") >>"$WORK/synapse.out" 2>&1 &
PIDS+=("synapse:$!")
SYNAPSE_PID=$!
wait_http Synapse "$HS_URL/_matrix/client/versions" "$!" 60

log "starting the fake Gitter on $GITTER_URL"
FAYE_ARGS=()
if ((FAYE)); then
    FAYE_ARGS=(--faye-publish "$FAYE_URL" --faye-secret "$FAYE_SECRET")
fi
"$SIM_BIN" fake-gitter --bind "127.0.0.1:$GITTER_PORT" --stream-bind "127.0.0.1:$STREAM_PORT" \
    --seed "$ROOT/fixtures/sim/gitter-seed.toml" --redirect-uri "$WEB_URL/oauth/callback" \
    "${FAYE_ARGS[@]}" >"$WORK/fake-gitter.log" 2>&1 &
PIDS+=("fake-gitter:$!")
wait_http "the fake Gitter" "$GITTER_URL/_sim/gitter/rooms/gitter-bridge%2Flobby/messages" "$!" 30

if ((FAYE)); then
    log "starting the Faye server on $FAYE_URL"
    FAYE_PORT="$FAYE_PORT" GITTER_API_URL="$GITTER_URL" FAYE_SECRET="$FAYE_SECRET" \
        node "$FAYE_DIR/server.js" >"$WORK/faye.log" 2>&1 &
    PIDS+=("faye:$!")
    wait_http "the Faye server" "http://127.0.0.1:$FAYE_PORT/health" "$!" 30
fi

export NO_COLOR=1 # plain log files
log "starting gitter-bridge"
BRIDGE_PID_FILE="$WORK/bridge.pid"
"$BRIDGE_BIN" run -c "$CONFIG" >>"$WORK/bridge.log" 2>&1 &
echo "$!" >"$BRIDGE_PID_FILE"
wait_http gitter-bridge "$WEB_URL/health" "$!" 60

# ---------------------------------------------------------------------------------------------
# 5. The suite (it restarts the bridge itself, through the E2E_BRIDGE_* variables).

export E2E_HS_URL="$HS_URL"
export E2E_SERVER_NAME="$SERVER_NAME"
export E2E_BOT_LOCALPART="$BOT_LOCALPART"
export E2E_GITTER_URL="$GITTER_URL"
export E2E_AS_URL="$AS_URL"
export E2E_WEB_URL="$WEB_URL"
export E2E_BRIDGE_BIN="$BRIDGE_BIN"
export E2E_BRIDGE_CONFIG="$CONFIG"
export E2E_BRIDGE_LOG="$WORK/bridge.log"
export E2E_BRIDGE_PID_FILE="$BRIDGE_PID_FILE"
export E2E_SYNAPSE_DB="$WORK/synapse/homeserver.db"
export E2E_SYNAPSE_PID="$SYNAPSE_PID"
export E2E_WORK_DIR="$WORK"
export E2E_APPSERVICE_ID="$APPSERVICE_ID"
export E2E_FAYE="$FAYE"

log "running the suite (tests/e2e)"
# In the background and waited for, so that a signal to this script stops it at once.
timeout --kill-after=10 "${E2E_SUITE_TIMEOUT:-900}" \
    "$PY" -m pytest -p no:cacheprovider -v "$ROOT/tests/e2e" "$@" \
    > >(tee "$WORK/suite.log") 2>&1 &
SUITE_PID=$!
wait "$SUITE_PID"
