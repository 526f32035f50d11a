#!/usr/bin/env bash
# Make sure a local Docker registry answers on 127.0.0.1 (for the registry tests and the
# fresh-runner bench), idempotently: Debian's `docker-registry` (distribution 2.x), plain
# HTTP on loopback (the engine treats loopback registries as insecure, so no TLS).
#
#   WARPDRIVE_REGISTRY_PORT   port (default 5000)
#   WARPDRIVE_REGISTRY_DIR    storage (default /var/lib/warpdrive-registry)
#
# Prints the registry's address (127.0.0.1:PORT) on stdout.
set -euo pipefail

PORT="${WARPDRIVE_REGISTRY_PORT:-5000}"
DIR="${WARPDRIVE_REGISTRY_DIR:-/var/lib/warpdrive-registry}"
LOG=/var/log/warpdrive-registry.log

log() { printf 'registry-up: %s\n' "$*" >&2; }
answers() {
    python3 - "$PORT" <<'PY' >/dev/null 2>&1
import sys, urllib.request
urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/v2/", timeout=2)
PY
}

if answers; then
    log "registry answers on 127.0.0.1:$PORT"
    echo "127.0.0.1:$PORT"
    exit 0
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
log "starting docker-registry on 127.0.0.1:$PORT (log: $LOG)"
setsid docker-registry serve "$config" >"$LOG" 2>&1 < /dev/null &
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
