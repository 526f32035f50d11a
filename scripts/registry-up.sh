#!/usr/bin/env bash
# Make sure a local Docker registry answers on 127.0.0.1 (for the registry tests and the
# fresh-runner bench), idempotently: Debian's `docker-registry` (distribution 2.x), plain
# HTTP on loopback (the engine treats loopback registries as insecure, so no TLS).
#
#   WARPDRIVE_REGISTRY_PORT      port (default 5000; 5001 with a password file)
#   WARPDRIVE_REGISTRY_DIR       storage (default /var/lib/warpdrive-registry, or
#                                /var/lib/warpdrive-registry-auth with a password file)
#   WARPDRIVE_REGISTRY_HTPASSWD  a password file (htpasswd format, bcrypt hashes: what
#                                distribution accepts): start a second instance, of its own
#                                port and storage, that requires basic auth. Its users go
#                                into DIR/htpasswd (a user already there is replaced, the
#                                others kept: test sessions with their own users share one
#                                instance), which the registry reads again when it changes.
#   WARPDRIVE_REGISTRY_LOG       its log (default /var/log/warpdrive-registry.log, or
#                                /var/log/warpdrive-registry-auth.log with a password file)
#
# Prints the registry's address (127.0.0.1:PORT) on stdout. The pid of a registry it
# starts goes into DIR/registry.pid; `registry-up.sh --stop` (same variables) stops it.
# The tests start theirs on a free port and storage of their own, and stop them.
set -euo pipefail

HTPASSWD="${WARPDRIVE_REGISTRY_HTPASSWD:-}"
if [ -n "$HTPASSWD" ]; then
    PORT="${WARPDRIVE_REGISTRY_PORT:-5001}"
    DIR="${WARPDRIVE_REGISTRY_DIR:-/var/lib/warpdrive-registry-auth}"
    LOG="${WARPDRIVE_REGISTRY_LOG:-/var/log/warpdrive-registry-auth.log}"
else
    PORT="${WARPDRIVE_REGISTRY_PORT:-5000}"
    DIR="${WARPDRIVE_REGISTRY_DIR:-/var/lib/warpdrive-registry}"
    LOG="${WARPDRIVE_REGISTRY_LOG:-/var/log/warpdrive-registry.log}"
fi
PIDFILE="$DIR/registry.pid"
if [ "${1:-}" = "--stop" ]; then
    exec bash "$(dirname "$0")/stop-daemon.sh" "$PIDFILE" "$DIR/config.yml" "docker-registry on 127.0.0.1:$PORT"
fi

log() { printf 'registry-up: %s\n' "$*" >&2; }
# 0: answers as wanted; 1: nothing answers; 2: answers, but without auth while auth is wanted
answers() {
    python3 - "$PORT" "${HTPASSWD:+auth}" <<'PY' 2>/dev/null
import sys, urllib.error, urllib.request
try:
    urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/v2/", timeout=2)
except urllib.error.HTTPError as exc:
    # a registry that requires auth answers /v2/ with 401 and a Basic challenge
    challenged = exc.code == 401 and "basic" in exc.headers.get("WWW-Authenticate", "").lower()
    sys.exit(0 if challenged and sys.argv[2] == "auth" else 1)
except Exception:
    sys.exit(1)
sys.exit(2 if sys.argv[2] == "auth" else 0)
PY
}

if [ -n "$HTPASSWD" ]; then
    if [ ! -s "$HTPASSWD" ]; then
        log "WARPDRIVE_REGISTRY_HTPASSWD=$HTPASSWD is not a readable, non-empty password file"
        exit 1
    fi
    mkdir -p "$DIR"
    # merge: this file's users replace theirs in DIR/htpasswd, the others stay
    python3 - "$HTPASSWD" "$DIR/htpasswd" <<'PY'
import os, sys
new, target = sys.argv[1], sys.argv[2]
def entries(path):
    try:
        lines = open(path).read().splitlines()
    except FileNotFoundError:
        return {}
    return {line.split(":", 1)[0]: line for line in lines if ":" in line}
merged = entries(target)
merged.update(entries(new))
tmp = f"{target}.{os.getpid()}"
with open(tmp, "w") as fh:
    fh.write("".join(line + "\n" for line in merged.values()))
os.chmod(tmp, 0o600)
os.replace(tmp, target)  # a new modification time: the running registry reads it again
PY
fi

status=0
answers || status=$?
if [ "$status" -eq 0 ]; then
    log "registry answers on 127.0.0.1:$PORT"
    echo "127.0.0.1:$PORT"
    exit 0
fi
if [ "$status" -eq 2 ]; then
    log "a registry without auth answers on 127.0.0.1:$PORT: choose another WARPDRIVE_REGISTRY_PORT"
    exit 1
fi
if ! command -v docker-registry >/dev/null 2>&1; then
    log "installing Debian's docker-registry"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq docker-registry >/dev/null
fi
mkdir -p "$DIR"
config="$DIR/config.yml"
cat > "$config" <<YML
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $DIR/data
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$PORT
YML
if [ -n "$HTPASSWD" ]; then
    cat >> "$config" <<YML
auth:
  htpasswd:
    realm: warpdrive-test
    path: $DIR/htpasswd
YML
fi
log "starting docker-registry on 127.0.0.1:$PORT${HTPASSWD:+ (basic auth)} (log: $LOG)"
setsid docker-registry serve "$config" >"$LOG" 2>&1 < /dev/null &
echo $! > "$PIDFILE"  # setsid execs it here (the script's jobs lead no process group)
for _ in $(seq 1 60); do
    if answers; then
        log "registry answers on 127.0.0.1:$PORT"
        echo "127.0.0.1:$PORT"
        exit 0
    fi
    sleep 0.5
done
log "the registry did not answer within 30 s; see $LOG"
tail -n 20 "$LOG" >&2 || true
exit 1
