#!/usr/bin/env bash
# Podman serving the Docker API (rootful): Debian's podman (4.3.1 on bookworm), started as
# `podman system service` on a unix socket of its own, for the Podman integration tests
# and for trying the sessions against Podman (DOCKER_HOST=unix://SOCKET). Idempotent;
# prints its DOCKER_HOST on stdout.
#
#   WARPDRIVE_PODMAN_DIR   its socket, pid file and containers.conf (default /run/warpdrive-podman)
#   WARPDRIVE_PODMAN_LOG   the service's log (default /var/log/warpdrive-podman.log)
#   $@                     images of the Docker engine to copy into Podman's store (docker
#                          save | podman load); ones Podman has are skipped. Default: the
#                          test base images warpdrive/python{,-builder}:3.11-bookworm
#
# `podman-up.sh --stop` stops the service it started (DIR/podman.pid, through
# stop-daemon.sh); Podman's image store (/var/lib/containers/storage) is kept.
#
# Podman here is started with CONTAINERS_CONF naming a containers.conf whose
# default_ulimits are at or under this machine's hard limits: Podman's own defaults
# (nofile=1048576) are above them in a container or a CI runner, and every container
# it starts then fails with "setrlimit ... operation not permitted". It never touches
# dockerd (its own store, its own socket; its network is podman's CNI bridge, cni-podman0),
# and the script checks afterwards that `docker info` still answers.
set -euo pipefail

DIR="${WARPDRIVE_PODMAN_DIR:-/run/warpdrive-podman}"
SOCK="$DIR/podman.sock"
HOST="unix://$SOCK"
LOG="${WARPDRIVE_PODMAN_LOG:-/var/log/warpdrive-podman.log}"
CONF="$DIR/containers.conf"
export CONTAINERS_CONF="$CONF"

log() { printf 'podman-up: %s\n' "$*" >&2; }
answers() { curl -sf --unix-socket "$SOCK" http://d/_ping >/dev/null 2>&1; }

if [ "${1:-}" = "--stop" ]; then
    bash "$(dirname "$0")/stop-daemon.sh" "$DIR/podman.pid" "$SOCK" "podman service on $HOST"
    exit 0
fi

if ! command -v podman >/dev/null 2>&1; then
    log "installing podman (Debian's)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends podman >/dev/null
fi
if ! command -v curl >/dev/null 2>&1; then
    apt-get install -y -qq --no-install-recommends curl >/dev/null
fi

mkdir -p "$DIR"
# the hard limits of this machine, or the usual ones when lower
hard_nofile="$(ulimit -Hn)"
hard_nproc="$(ulimit -Hu)"
limit() {  # limit HARD WANTED: the lower of the two ("unlimited" counts as above)
    if [ "$1" = "unlimited" ] || [ "$1" -ge "$2" ]; then echo "$2"; else echo "$1"; fi
}
nofile="$(limit "$hard_nofile" 20000)"
nproc="$(limit "$hard_nproc" 32768)"
cat > "$CONF.tmp" <<EOF
# written by nox-warpdrive scripts/podman-up.sh: limits at or under the hard limits
[containers]
default_ulimits = [
  "nofile=$nofile:$nofile",
  "nproc=$nproc:$nproc",
]
EOF
mv "$CONF.tmp" "$CONF"

if ! answers; then
    rm -f "$SOCK"
    log "starting podman system service on $HOST (log: $LOG)"
    # from / : the service keeps its working directory, and conmon fails ("Failed to get working
    # directory") for every container once that directory is gone (a CI clone, a removed checkout)
    (cd / && exec setsid podman system service --time=0 "$HOST") >"$LOG" 2>&1 < /dev/null &
    echo $! > "$DIR/podman.pid"
    for _ in $(seq 1 120); do
        if answers; then break; fi
        sleep 0.5
    done
fi
if ! answers; then
    log "the podman service did not answer within 60 s; see $LOG"
    tail -n 20 "$LOG" >&2 || true
    exit 1
fi

if [ "$#" -eq 0 ]; then
    set -- warpdrive/python:3.11-bookworm warpdrive/python-builder:3.11-bookworm
fi
for image in "$@"; do
    if podman image exists "$image" 2>/dev/null; then
        continue
    fi
    log "copying $image into Podman's store"
    docker save "$image" | podman load -q >/dev/null
done
if ! docker info --format '{{.ServerVersion}}' >/dev/null 2>&1; then
    log "warning: the Docker engine does not answer any more"
fi
echo "$HOST"
