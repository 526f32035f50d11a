#!/usr/bin/env bash
# Stop a daemon one of these scripts started (registry-up.sh --stop, second-engine.sh
# --stop): the process whose pid is in PIDFILE, if its command line still names MARK (a pid
# the system gave to another program since is left alone). SIGTERM, then SIGKILL after
# 30 s; returns once it is gone.
#
#   bash scripts/stop-daemon.sh PIDFILE MARK [NAME]
set -euo pipefail

PIDFILE="$1"
MARK="$2"
NAME="${3:-daemon}"
log() { printf 'stop-daemon: %s\n' "$*" >&2; }
# a live process (a zombie has an empty command line) whose command line holds MARK
ours() {
    local cmdline
    cmdline="$(tr '\0' ' ' < "/proc/$1/cmdline" 2>/dev/null)" || return 1
    [ -n "$cmdline" ] && [[ "$cmdline" == *"$MARK"* ]]
}

if [ ! -s "$PIDFILE" ]; then
    log "no $NAME to stop ($PIDFILE is missing)"
    exit 0
fi
pid="$(cat "$PIDFILE")"
if ! [[ "$pid" =~ ^[0-9]+$ ]] || ! ours "$pid"; then
    log "$NAME (pid $pid) is not running"
    rm -f "$PIDFILE"
    exit 0
fi
log "stopping $NAME (pid $pid)"
kill -TERM "$pid" 2>/dev/null || true
for _ in $(seq 1 120); do
    ours "$pid" || break
    sleep 0.25
done
if ours "$pid"; then
    log "$NAME (pid $pid) did not stop within 30 s: SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    for _ in $(seq 1 40); do
        ours "$pid" || break
        sleep 0.25
    done
fi
rm -f "$PIDFILE"
