#!/usr/bin/env bash
# A second, empty Docker engine on loopback TCP: a stand-in for a fresh CI runner and for
# a remote engine (DOCKER_HOST=tcp://...). Idempotent; prints its DOCKER_HOST on stdout.
#
#   WARPDRIVE_ENGINE2_PORT   TCP port (default 23750)
#   WARPDRIVE_ENGINE2_DIR    its data root etc. (default /var/lib/warpdrive-engine2)
#   WARPDRIVE_ENGINE2_BRIDGE its bridge (default wdbr2): a second such engine needs another
#   WARPDRIVE_ENGINE2_SUBNET the bridge's address (default 172.31.250.1/24)
#   WARPDRIVE_ENGINE2_LOG    dockerd's log (default /var/log/warpdrive-engine2.log)
#   WARPDRIVE_ENGINE2_EXEC_ROOT  its exec root (default DIR/exec; keep it short: containerd's
#                            sockets live there)
#   $@                       images of the first engine to copy into it (docker save | load),
#                            as a registry would bring them; ones it has are skipped
#
# `second-engine.sh --stop` (same variables) stops the dockerd it started (DIR/engine.pid)
# and removes its bridge. The tests start theirs on a free port, with a data root, bridge
# and subnet of their own, and stop them.
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
EXEC_ROOT="${WARPDRIVE_ENGINE2_EXEC_ROOT:-$DIR/exec}"

log() { printf 'second-engine: %s\n' "$*" >&2; }
answers() { DOCKER_HOST="$HOST" docker info --format '{{.ServerVersion}}' >/dev/null 2>&1; }

if [ "${1:-}" = "--stop" ]; then
    bash "$(dirname "$0")/stop-daemon.sh" "$DIR/engine.pid" "$DIR/dockerd.pid" "dockerd on $HOST"
    # what a stopped dockerd leaves mounted (its network namespace, under the exec root)
    awk -v a="$EXEC_ROOT/" -v b="$DIR/" 'index($2, a) == 1 || index($2, b) == 1 {print $2}' \
        /proc/self/mounts | sort -r | while read -r mounted; do umount "$mounted" || true; done
    if ip link show "$BRIDGE" >/dev/null 2>&1; then
        ip link del "$BRIDGE"
    fi
    exit 0
fi

if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
    ip link add "$BRIDGE" type bridge
    ip addr add "$SUBNET" dev "$BRIDGE"
    ip link set "$BRIDGE" up
fi
if ! answers; then
    mkdir -p "$DIR/data" "$EXEC_ROOT"
    log "starting a second dockerd on $HOST (log: $LOG)"
    setsid dockerd \
        --host "$HOST" \
        --data-root "$DIR/data" \
        --exec-root "$EXEC_ROOT" \
        --pidfile "$DIR/dockerd.pid" \
        --bridge="$BRIDGE" \
        --iptables=false \
        --ip-masq=false \
        >"$LOG" 2>&1 < /dev/null &
    echo $! > "$DIR/engine.pid"  # setsid execs it here (the script's jobs lead no process group)
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
