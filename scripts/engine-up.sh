#!/usr/bin/env bash
# Make sure a Docker engine answers, idempotently.
#
#  - engine already answering (local or DOCKER_HOST): do nothing
#  - no dockerd binary: install Debian's docker.io (needs root and apt)
#  - dockerd present but not answering: start it in the background, log to
#    /var/log/warpdrive-dockerd.log, and wait until `docker info` answers
#
# Safe to run any number of times; used by scripts/quickstart.sh, scripts/test.sh and .ci/run.
set -euo pipefail

log() { printf 'engine-up: %s\n' "$*" >&2; }

answers() { docker info --format '{{.ServerVersion}}' >/dev/null 2>&1; }

if command -v docker >/dev/null 2>&1 && answers; then
    log "engine answers ($(docker info --format '{{.ServerVersion}} {{.Driver}}'))"
    exit 0
fi

if [ -n "${DOCKER_HOST:-}" ]; then
    log "DOCKER_HOST=$DOCKER_HOST does not answer; start that engine (this script only starts a local one)"
    exit 1
fi

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

if ! command -v dockerd >/dev/null 2>&1 || ! command -v docker >/dev/null 2>&1; then
    log "installing Debian's docker.io"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq docker.io >/dev/null
fi

if ! answers; then
    if pgrep -x dockerd >/dev/null 2>&1; then
        log "dockerd is running but not answering yet; waiting"
    else
        log "starting dockerd (log: /var/log/warpdrive-dockerd.log)"
        # setsid: the daemon must not die with this shell or its process group.
        $SUDO setsid dockerd >/var/log/warpdrive-dockerd.log 2>&1 < /dev/null &
    fi
    for _ in $(seq 1 120); do
        if answers; then break; fi
        sleep 0.5
    done
fi

if ! answers; then
    log "the engine did not answer within 60 s; see /var/log/warpdrive-dockerd.log"
    tail -n 20 /var/log/warpdrive-dockerd.log >&2 || true
    exit 1
fi
log "engine answers ($(docker info --format '{{.ServerVersion}} {{.Driver}}'))"
