#!/usr/bin/env bash
# A second, empty Docker engine on loopback TCP: a stand-in for a fresh CI runner and for
# a remote engine (DOCKER_HOST=tcp://...). Idempotent; prints its DOCKER_HOST on stdout.
#
#   WARPDRIVE_ENGINE2_PORT   TCP port (default 23750)
#   WARPDRIVE_ENGINE2_DIR    its data root etc. (default /var/lib/warpdrive-engine2)
#   WARPDRIVE_ENGINE2_BRIDGE its bridge (default wdbr2): a second such engine needs another
#   WARPDRIVE_ENGINE2_SUBNET the bridge's address (default 172.31.250.1/24)
#   WARPDRIVE_ENGINE2_LOG    dockerd's log (default /var/log/warpdrive-engine2.log)
#   $@                       images of the first engine to copy into it (docker save | load),
#                            as a registry would bring them; ones it has are skipped
#
# It never touches the first engine's network: a bridge of its own (wdbr2, made here;
# NOT --bridge=none, which makes dockerd delete docker0, the first engine's bridge), no
# iptables rules, its own exec root and pidfile. The script checks afterwards that the
# first engine still runs a container with networking.
set -euo pipefail

PORT="${WARPDRIVE_ENGINE2_PORT:-23750}"
DIR="${WARPDRIVE_ENGINE2_DIR:-/var/lib/warpdrive-engine2}"
HOST="tcp://127.0.0.1:$PORT"
LOG="${WARPDRIVE_ENGINE2_LOG:-/var/log/warpdrive-engine2.log}"
BRIDGE="${WARPDRIVE_ENGINE2_BRIDGE:-wdbr2}"
SUBNET="${WARPDRIVE_ENGINE2_SUBNET:-172.31.250.1/24}"

log() { printf 'second-engine: %s\n' "$*" >&2; }
answers() { DOCKER_HOST="$HOST" docker info --format '{{.ServerVersion}}' >/dev/null 2>&1; }

if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
    ip link add "$BRIDGE" type bridge
    ip addr add "$SUBNET" dev "$BRIDGE"
    ip link set "$BRIDGE" up
fi
if ! answers; then
    mkdir -p "$DIR/data" "$DIR/exec"
    log "starting a second dockerd on $HOST (log: $LOG)"
    setsid dockerd \
        --host "$HOST" \
        --data-root "$DIR/data" \
        --exec-root "$DIR/exec" \
        --pidfile "$DIR/dockerd.pid" \
        --bridge="$BRIDGE" \
        --iptables=false \
        --ip-masq=false \
        >"$LOG" 2>&1 < /dev/null &
    for _ in $(seq 1 120); do
        if answers; then break; fi
        sleep 0.5
    done
fi
if ! answers; then
    log "the second engine did not answer within 60 s; see $LOG"
    tail -n 20 "$LOG" >&2 || true
    exit 1
fi
for image in "$@"; do
    if DOCKER_HOST="$HOST" docker image inspect "$image" >/dev/null 2>&1; then
        continue
    fi
    log "copying $image into it"
    docker save "$image" | DOCKER_HOST="$HOST" docker load -q >/dev/null
done
if ! docker run --rm --network bridge "${1:-warpdrive/python:3.11-bookworm}" true >/dev/null 2>&1; then
    log "warning: the first engine cannot start a container on its bridge any more"
fi
echo "$HOST"
